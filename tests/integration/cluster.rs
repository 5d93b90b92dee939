//! Cluster faults on a real three-node Apache Kafka (KRaft, every node controller and
//! broker), topics at replication 3 with `min.insync.replicas=2`: the leaders of the events
//! and alerts partitions are SIGKILLed mid-stream and restarted, one of two daemon
//! instances is SIGKILLed and restarted meanwhile, then the whole cluster goes down for 30 s.
//! The alerts topic and a webhook receiver must end up with exactly the alert ids an
//! uninterrupted run gives (duplicates only under the same id, with the same verdict), and
//! every event offset committed.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use regwatch::config::Config;
use regwatch::time::wall_now;
use serde_json::Value;

use crate::broker::{produce, tempdir, Broker};
use crate::kafka::{
    assert_all_committed, collect, config_text, ids, oracle, run_binary, unsafe_kill, workload,
    Reaped,
};
use crate::webhook::{free_port, Hook};

/// `/readyz` of the daemon listening on `port`: Some(status), None if it does not answer.
async fn ready(port: u16) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn wait_ready(port: u16, want: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = ready(port).await;
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz on {port} never answered {want} (last: {got:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn write_config(dir: &Path, name: &str, text: &str, http: u16, hook: &Hook) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = text
        .replace("replication_factor = 1", "replication_factor = 3")
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{http}\""),
        );
    std::fs::write(
        &path,
        format!(
            "{text}\n[[delivery.receivers]]\nname = \"oncall\"\nurl = \"{}\"\nretry_initial = \"100ms\"\nretry_max = \"1s\"\nbreaker_cooldown = \"1s\"\nsigning_keys = [{{ id = \"k1\", secret = \"cluster-test-signing-key\" }}]\n",
            hook.url()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kills_a_daemon_kill_and_a_cluster_outage_lose_no_alert() {
    let broker = Broker::cluster(3);
    let name = "cluster";
    let topic = format!("{name}.events");
    broker.create_topic_with(&topic, 3, 3, &[("min.insync.replicas", "2")]);
    let hook = Hook::up().await;
    let dir = tempdir("cluster");
    std::fs::create_dir_all(&dir).unwrap();
    let text = config_text(&broker, name, 3);
    let (port_a, port_b) = (free_port(), free_port());
    let cfg_a = write_config(&dir, "a", &text, port_a, &hook);
    let cfg_b = write_config(&dir, "b", &text, port_b, &hook);
    let cfg = Config::load(&cfg_a).unwrap();
    assert_eq!(cfg.kafka.replication_factor, Some(3));
    assert_eq!(cfg.kafka.min_insync_replicas, Some(2));
    let kafka = cfg.kafka.clone();
    let started = Instant::now();

    let mut a = run_binary(&cfg_a, &dir.join("a1.log"));
    let b = run_binary(&cfg_b, &dir.join("b.log"));
    wait_ready(port_a, 200, Duration::from_secs(60)).await;
    wait_ready(port_b, 200, Duration::from_secs(60)).await;
    // regwatch created its topics at replication 3.
    assert_eq!(broker.replicas(&kafka.alerts_topic, 0), 3);
    assert_eq!(broker.replicas(&kafka.state_topic, 0), 3);

    let producer = broker.producer();
    let mut seq = 0;
    let mut events = workload(&mut seq, 1);
    produce(&producer, &topic, &events).await;
    collect(
        &kafka,
        &kafka.alerts_topic,
        "cl-1",
        Duration::from_secs(60),
        |a| a.len() >= 6,
    )
    .await;

    // The leader of an events partition dies mid-stream; events keep coming.
    let events_leader = broker.leader(&topic, 0);
    broker.kill(events_leader);
    let phase = workload(&mut seq, 2);
    produce(&producer, &topic, &phase).await;
    events.extend(phase);
    // One daemon dies too, with no chance to flush or commit.
    unsafe_kill(&mut a.0);
    broker.restart(events_leader);
    // Then the leader of an alerts partition dies, while the daemon comes back.
    let alerts_leader = broker.leader(&kafka.alerts_topic, 0);
    broker.kill(alerts_leader);
    let a = run_binary(&cfg_a, &dir.join("a2.log"));
    let phase = workload(&mut seq, 3);
    produce(&producer, &topic, &phase).await;
    events.extend(phase);
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.restart(alerts_leader);

    let expected = oracle(&cfg, &events, wall_now());
    collect(
        &kafka,
        &kafka.alerts_topic,
        "cl-2",
        Duration::from_secs(120),
        |got| ids(got).is_superset(&expected),
    )
    .await;
    let faults = started.elapsed();

    // The whole cluster down for 30 s: the daemons keep running and say they are not ready.
    let down = Instant::now();
    broker.kill_all();
    wait_ready(port_b, 503, Duration::from_secs(30)).await;
    let left = Duration::from_secs(30).saturating_sub(down.elapsed());
    tokio::time::sleep(left).await;
    assert!(
        ready(port_a).await.is_some() && ready(port_b).await.is_some(),
        "both daemons still run after 30 s without a cluster"
    );
    broker.restart_all();
    wait_ready(port_a, 200, Duration::from_secs(120)).await;
    wait_ready(port_b, 200, Duration::from_secs(120)).await;
    let phase = workload(&mut seq, 4);
    produce(&producer, &topic, &phase).await;
    events.extend(phase);

    let expected = oracle(&cfg, &events, wall_now());
    let all = collect(
        &kafka,
        &kafka.alerts_topic,
        "cl-3",
        Duration::from_secs(120),
        |got| ids(got).is_superset(&expected),
    )
    .await;
    assert_eq!(
        ids(&all),
        expected,
        "exactly the alert ids of an uninterrupted run"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !hook.delivered().is_superset(&expected) {
        assert!(
            Instant::now() < deadline,
            "the receiver misses {:?}",
            expected.difference(&hook.delivered()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        hook.delivered(),
        expected,
        "the receiver got no other alert"
    );
    // A duplicate is the same alert: the same id and the same verdict. An event graded again
    // after the SIGKILL (its snapshot was not committed yet) gives the same alert at a later
    // wall-clock instant, so only the instant and the duration counted up to it (in wall and
    // in trading minutes) may differ.
    let mut bodies: HashMap<String, Value> = HashMap::new();
    for g in hook.got().iter().filter(|g| g.status == 200) {
        let key = g.header("idempotency-key").to_string();
        let mut body: Value = serde_json::from_slice(&g.body).expect("a JSON alert");
        for instant in ["at", "duration_minutes", "trading_minutes"] {
            body.as_object_mut().map(|o| o.remove(instant));
        }
        let first = bodies.entry(key.clone()).or_insert_with(|| body.clone());
        assert_eq!(
            *first, body,
            "a duplicate of {key} carries the same verdict"
        );
    }

    for d in [a, b] {
        Reaped::terminate(d);
    }
    assert_all_committed(&broker.bootstrap(), name, &topic, 3);
    eprintln!(
        "cluster faults: {} events, {} alert ids, leader and daemon kills {:.0?}, whole test {:.0?}",
        events.len(),
        expected.len(),
        faults,
        started.elapsed()
    );
}
