//! The state topic on a real broker: compacted for real while the daemon runs (superseded
//! records are gone once the log cleaner has acted), a restart restores exactly the live
//! state, and the state of a participant removed from the registry, or silent past the
//! liveness retention, is deleted (tombstones).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use regwatch::config::Config;
use serde_json::{json, Value};

use crate::broker::{produce, Broker};
use crate::kafka::{config_text, event};

/// Every record of the state topic's partitions, in offset order: (key, value present).
fn state_log(broker: &Broker, topic: &str, partitions: i32) -> Vec<(String, bool)> {
    crate::state_auth::state_entries(broker, topic, partitions)
        .into_iter()
        .map(|e| (e.key, e.value.is_some()))
        .collect()
}

/// The incidents the daemon's API shows (participant, incident, levels, figures), once it
/// says the list is complete (after a start or a restart that trails the incidents by the
/// new owner's first flush).
pub(crate) async fn incidents(addr: std::net::SocketAddr) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let bytes = reqwest::get(format!("http://{addr}/incidents"))
            .await
            .expect("incident API answers")
            .bytes()
            .await
            .expect("a body");
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        if body["complete"] == true {
            return body["incidents"].as_array().cloned().unwrap_or_default();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the incident list never said it was complete: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_topic_is_compacted_and_a_restart_restores_the_live_state() {
    let broker = Broker::start();
    let name = "compact";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 1);
    // No replication factor: the cluster's default (1 on this one broker).
    let text = config_text(&broker, name, 1)
        .replace("replication_factor = 1\n", "")
        .replace(
            "commit_interval = \"200ms\"",
            "commit_interval = \"200ms\"\nstate_topic_config = [\"segment.ms=300\", \"min.cleanable.dirty.ratio=0.01\", \"max.compaction.lag.ms=1000\"]",
        );
    // More replicas than brokers: a start-up error naming the key, no topic created.
    let three = text.replace("[kafka]\n", "[kafka]\nreplication_factor = 3\n");
    let err = match regwatch::app::spawn(Config::from_toml(&three, None, false).unwrap()).await {
        Ok(_) => panic!("3 replicas on one broker must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("kafka.replication_factor is 3"), "{err}");
    // An existing state topic that is not compacted is refused, naming the fix.
    broker.create_topic_with("deleting.state", 1, 1, &[("cleanup.policy", "delete")]);
    let deleting = text.replace(
        &format!("state_topic = \"{name}.state\""),
        "state_topic = \"deleting.state\"",
    );
    assert_ne!(deleting, text);
    let err = match regwatch::app::spawn(Config::from_toml(&deleting, None, false).unwrap()).await {
        Ok(_) => panic!("a state topic that is not compacted must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("cleanup.policy=delete") && err.contains("must be compacted"),
        "{err}"
    );
    let cfg = Config::from_toml(&text, None, false).expect("config");
    assert_eq!(cfg.kafka.replication_factor, None);
    let state_topic = cfg.kafka.state_topic.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("daemon starts");
    assert_eq!(broker.replicas(&state_topic, 0), 1);
    let addr = daemon.running.http.expect("HTTP endpoint");
    // Owned and restored before the first update, so that each update has a flush of its
    // own.
    let m = daemon.running.metrics.clone();
    crate::support::eventually(
        "the partition owned and restored",
        Duration::from_secs(60),
        || m.partitions.get() == 1 && m.restoring.get() == 0,
    )
    .await;
    let producer = broker.producer();
    let mut seq = 0;
    // Two incidents whose figures grow report after report: every flush supersedes their
    // state records.
    let updates = 40;
    for i in 1..=updates {
        let status = if i == 1 { "open" } else { "update" };
        let batch = vec![
            event(
                json!({"participant_id": "P1", "kind": "infosec", "incident_id": "LEAK",
                       "category": "data_leak", "status": status, "records_exposed": 5000 * i}),
                &mut seq,
            ),
            event(
                json!({"participant_id": "P2", "kind": "infosec", "incident_id": "DOWN",
                       "category": "degradation", "system": "trading", "status": status,
                       "affected_investors": 5 * i}),
                &mut seq,
            ),
        ];
        produce(&producer, &topic, &batch).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let written = daemon.running.metrics.state_records.get();
    let leak_key = |log: &[(String, bool)]| {
        log.iter()
            .filter(|(k, _)| k.ends_with("|i|2|P1|LEAK"))
            .count()
    };
    let parts = cfg_partitions(&text);
    assert!(
        leak_key(&state_log(&broker, &state_topic, parts)) > 0,
        "the incident's state is on the topic"
    );
    assert!(
        written >= updates as u64,
        "every flush wrote the changed incidents: {written} records"
    );
    // The cleaner acts while the daemon lives (it keeps writing liveness, which rolls the
    // 300 ms segments).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut versions;
    loop {
        let log = state_log(&broker, &state_topic, parts);
        versions = leak_key(&log);
        if versions <= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the log cleaner never compacted the state topic: {versions} versions of one incident left of {updates} written"
        );
        let more = event(
            json!({"participant_id": "P3", "kind": "heartbeat"}),
            &mut seq,
        );
        produce(&producer, &topic, &[more]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let before = incidents(addr).await;
    assert_eq!(before.len(), 2, "{before:?}");
    daemon.stop().await.expect("clean stop");

    // A restart restores exactly the live state.
    let again = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("daemon restarts");
    let addr = again.running.http.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while again.running.metrics.restoring.get() != 0 || again.running.metrics.partitions.get() == 0
    {
        assert!(Instant::now() < deadline, "restore never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = incidents(addr).await;
    assert_eq!(
        strip(&after),
        strip(&before),
        "the restored incidents are the live ones"
    );
    again.stop().await.expect("clean stop");

    // P2 leaves the registry: its state is deleted, not kept for ever.
    let without_p2 = text.replace(
        "[[participants]]\nid = \"P2\"\nkind = \"broker\"\neffective_customers = 2500000\ncalendar = \"always\"\n",
        "",
    );
    assert_ne!(without_p2, text, "P2 removed from the registry");
    let third = regwatch::app::spawn(Config::from_toml(&without_p2, None, false).unwrap())
        .await
        .expect("daemon restarts");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = state_log(&broker, &state_topic, parts);
        let p2: Vec<_> = latest(&log)
            .into_iter()
            .filter(|(k, _)| k.contains("|P2"))
            .collect();
        assert!(!p2.is_empty(), "P2 had state");
        if p2.iter().all(|(_, live)| !*live) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "P2's state records were never deleted: {p2:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let third_addr = third.running.http.unwrap();
    let left = incidents(third_addr).await;
    assert_eq!(left.len(), 1, "only P1's incident is restored: {left:?}");
    third.stop().await.expect("clean stop");
    eprintln!(
        "compaction: {written} state records written, {versions} versions of one incident left after cleaning"
    );
}

fn cfg_partitions(text: &str) -> i32 {
    Config::from_toml(text, None, false)
        .unwrap()
        .kafka
        .topic_partitions
}

/// The incidents without what depends on the instant asked: the duration, the summary
/// that states it, the engine time the view was taken at, and the minutes observed by a time-driven reason with the axis score
/// that follows them.
fn strip(incidents: &[Value]) -> Vec<Value> {
    incidents
        .iter()
        .map(|i| {
            let mut i = i.clone();
            if let Some(o) = i.as_object_mut() {
                o.remove("summary");
                o.remove("as_of");
                o.remove("duration_minutes");
                o.remove("trading_minutes");
                for axis in ["investor_loss", "market_order"] {
                    o[axis]["score"] = Value::Null;
                    for r in o[axis]["reasons"].as_array_mut().into_iter().flatten() {
                        if r["metric"] == "minutes" || r["metric"] == "trading_minutes" {
                            r["observed"] = Value::Null;
                        }
                    }
                }
            }
            i
        })
        .collect()
}

/// The latest value of each key of the state topic: true while live, false once deleted.
fn latest(log: &[(String, bool)]) -> BTreeMap<&str, bool> {
    log.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_silent_past_the_liveness_retention_is_deleted_from_the_state() {
    let broker = Broker::start();
    let name = "forget";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 1);
    let text = config_text(&broker, name, 1).replace(
        "telemetry_gap = \"off\"",
        "telemetry_gap = \"1s\"\nliveness_retention = \"4s\"",
    );
    let cfg = Config::from_toml(&text, None, false).expect("config");
    let state_topic = cfg.kafka.state_topic.clone();
    let parts = cfg.kafka.topic_partitions;
    let daemon = regwatch::app::spawn(cfg).await.expect("daemon starts");
    let addr = daemon.running.http.expect("HTTP endpoint");
    let producer = broker.producer();
    let mut seq = 0;
    let beat = event(
        json!({"participant_id": "P1", "kind": "heartbeat"}),
        &mut seq,
    );
    produce(&producer, &topic, &[beat]).await;
    let key = "|p|P1";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_live = false;
    loop {
        let log = state_log(&broker, &state_topic, parts);
        let p1: Vec<bool> = latest(&log)
            .iter()
            .filter(|(k, _)| k.ends_with(key))
            .map(|(_, v)| *v)
            .collect();
        seen_live |= p1 == [true];
        if seen_live && p1 == [false] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "P1's liveness was never deleted (live seen: {seen_live}): {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("regwatch_liveness_forgotten_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("regwatch_silent_participants 0\n"),
        "the forgotten participant is no longer counted silent"
    );
    // The gap fired once, before the participant was forgotten; nothing resolved it.
    assert!(
        metrics.contains("regwatch_telemetry_gaps_total{participant=\"P1\"} 1\n"),
        "{metrics}"
    );
    daemon.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_partition_count_stops_the_daemon_instead_of_splitting_participants() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    let broker = Broker::start();
    let name = "repart";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 1);
    let text = config_text(&broker, name, 1);
    let daemon = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("daemon starts");
    let mut seq = 0;
    let open = event(
        json!({"participant_id": "P1", "kind": "infosec", "incident_id": "LEAK",
               "category": "data_leak", "records_exposed": 5000}),
        &mut seq,
    );
    produce(&broker.producer(), &topic, &[open]).await;
    let state_topic = Config::from_toml(&text, None, false)
        .unwrap()
        .kafka
        .state_topic;
    let parts = cfg_partitions(&text);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !state_log(&broker, &state_topic, parts)
        .iter()
        .any(|(k, live)| k.ends_with("|t") && *live)
    {
        assert!(Instant::now() < deadline, "the partition count is recorded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop().await.expect("clean stop");

    // The operator adds a partition: P1's key may now hash to the new one.
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        broker.config().create().expect("admin");
    let added = admin
        .create_partitions(
            &[NewPartitions::new(&topic, 2)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        )
        .await
        .expect("create_partitions");
    assert!(added.iter().all(|r| r.is_ok()), "{added:?}");

    let again = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("daemon starts");
    let m = again.running.metrics.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while m
        .worker_failures
        .with_label_values(&["partition_count_changed"])
        .get()
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the changed partition count is noticed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let err = again
        .stop()
        .await
        .expect_err("the daemon stops with the failure");
    let err = format!("{err:#}");
    assert!(
        err.contains("has 2 partitions") && err.contains("when it had 1"),
        "{err}"
    );
}
