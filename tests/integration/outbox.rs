//! Delivery that cannot wedge, on a real broker: a poison alert the receiver keeps refusing
//! with 5xx is dead-lettered after `max_retry_age` and its lane goes on; a receiver added to
//! a running deployment starts with the alerts raised from then on (one that asks to
//! `catch_up` gets the old ones too); a partition revoked mid-delivery stops its lane at once,
//! so each alert is acknowledged once, by its new owner; an operator skips a poison alert by
//! an audited action, and the lane goes on at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use regwatch::config::Config;
use regwatch::ingest::tail;
use serde_json::json;

use crate::broker::{produce, Broker};
use crate::kafka::{collect, config_text, event, payload};
use crate::webhook::{Hook, NEW_KEY};

fn receiver(name: &str, hook: &Hook, extra: &str) -> String {
    format!(
        "[[delivery.receivers]]\nname = \"{name}\"\nurl = \"{}\"\nsigning_keys = [{{ id = \"t1\", secret = \"{NEW_KEY}\" }}]\n{extra}",
        hook.url()
    )
}

fn leak(participant: &str, incident: &str, seq: &mut u32) -> (String, Vec<u8>) {
    event(
        json!({"participant_id": participant, "kind": "infosec", "incident_id": incident,
               "category": "data_leak", "records_exposed": 200_000}),
        seq,
    )
}

/// The incident ids a receiver acknowledged with 2xx.
fn acked(hook: &Hook) -> Vec<String> {
    hook.got()
        .iter()
        .filter(|g| (200..300).contains(&g.status))
        .map(|g| g.json()["incident_id"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn spawn(text: &str) -> regwatch::app::Spawned {
    let cfg = Config::from_toml(text, None, false).expect("test config");
    regwatch::app::spawn(cfg).await.expect("the daemon starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_alert_is_dead_lettered_after_max_retry_age_and_its_lane_goes_on() {
    let broker = Broker::start();
    let name = "poison";
    // One partition: the poison alert and the next one share a lane.
    broker.create_topic(&format!("{name}.events"), 1);
    let hook = Hook::up().await;
    hook.refuse("POISON", 500);
    let text = format!(
        "{}\n[delivery]\ndead_letter_topic = \"{name}.alert-dlq\"\n{}",
        config_text(&broker, name, 1),
        receiver(
            "r",
            &hook,
            "retry_initial = \"100ms\"\nretry_max = \"400ms\"\nbreaker_failures = 1000\nmax_retry_age = \"3s\"\n"
        )
    );
    let kafka = Config::from_toml(&text, None, false).unwrap().kafka;
    let daemon = spawn(&text).await;
    let mut seq = 0;
    let events = [leak("P1", "POISON", &mut seq), leak("P1", "NEXT", &mut seq)];
    produce(&broker.producer(), &format!("{name}.events"), &events).await;
    hook.wait_for("the next alert", Duration::from_secs(60), |got| {
        got.iter()
            .any(|g| g.status == 200 && g.json()["incident_id"] == "NEXT")
    })
    .await;
    let got = hook.got();
    let poison: Vec<_> = got
        .iter()
        .filter(|g| g.json()["incident_id"] == "POISON")
        .collect();
    assert!(poison.len() >= 3, "retried while refused: {}", poison.len());
    assert!(poison.iter().all(|g| g.status == 500));
    let span = poison.last().unwrap().at - poison[0].at;
    assert!(
        span >= Duration::from_millis(2900),
        "refused for max_retry_age before giving up, not sooner: {span:?}"
    );
    let next = got
        .iter()
        .find(|g| g.json()["incident_id"] == "NEXT")
        .unwrap();
    assert!(
        next.at > poison.last().unwrap().at,
        "the lane waited, in order"
    );

    let dead: Vec<OwnedMessage> = collect(
        &kafka,
        &format!("{name}.alert-dlq"),
        "poison-dlq",
        Duration::from_secs(20),
        |d| !d.is_empty(),
    )
    .await;
    let header = |m: &OwnedMessage, h: &str| tail::header(m, h).unwrap_or_default();
    assert_eq!(header(&dead[0], "regwatch.reason"), "retry_age");
    assert_eq!(header(&dead[0], "regwatch.http_status"), "500");
    assert_eq!(header(&dead[0], "regwatch.receiver"), "r");
    assert!(header(&dead[0], "regwatch.reason_text").contains("max_retry_age"));
    assert_eq!(payload(&dead[0])["incident_id"], "POISON");
    let m = &daemon.running.metrics.webhook;
    assert_eq!(
        m.dead_letters.with_label_values(&["r", "retry_age"]).get(),
        1
    );
    daemon.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_added_later_starts_now_unless_it_asks_to_catch_up() {
    let broker = Broker::start();
    let name = "added";
    broker.create_topic(&format!("{name}.events"), 2);
    let (old, new, archive) = (Hook::up().await, Hook::up().await, Hook::up().await);
    let base = config_text(&broker, name, 2);
    let mut seq = 0;

    // Running with one receiver: the first incident pages it.
    let daemon = spawn(&format!("{base}\n{}", receiver("old", &old, ""))).await;
    produce(
        &broker.producer(),
        &format!("{name}.events"),
        &[leak("P1", "BEFORE", &mut seq)],
    )
    .await;
    old.wait_for("BEFORE", Duration::from_secs(60), |_| {
        acked(&old).contains(&"BEFORE".to_string())
    })
    .await;
    daemon.stop().await.expect("clean stop");

    // Two receivers added: `new` from now on, `archive` catching up. The next incident is
    // raised at once, before their groups have even joined.
    let text = format!(
        "{base}\n{}{}{}",
        receiver("old", &old, ""),
        receiver("new", &new, ""),
        receiver("archive", &archive, "catch_up = true\n")
    );
    let daemon = spawn(&text).await;
    produce(
        &broker.producer(),
        &format!("{name}.events"),
        &[leak("P2", "AFTER", &mut seq)],
    )
    .await;
    for (hook, what) in [(&new, "new"), (&archive, "archive"), (&old, "old")] {
        hook.wait_for(what, Duration::from_secs(60), |_| {
            acked(hook).contains(&"AFTER".to_string())
        })
        .await;
    }
    archive
        .wait_for("archive catches up", Duration::from_secs(30), |_| {
            acked(&archive).contains(&"BEFORE".to_string())
        })
        .await;
    // Give a wrong start every chance to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        acked(&new),
        ["AFTER"],
        "the new receiver is not paged for old incidents"
    );
    assert_eq!(
        acked(&old),
        ["BEFORE", "AFTER"],
        "the old one resumes where it was"
    );
    // The starts were committed: a restart of the new receiver resumes, it does not skip.
    daemon.stop().await.expect("clean stop");
    let daemon = spawn(&text).await;
    produce(
        &broker.producer(),
        &format!("{name}.events"),
        &[leak("P3", "LATER", &mut seq)],
    )
    .await;
    new.wait_for("LATER", Duration::from_secs(60), |_| {
        acked(&new).contains(&"LATER".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(acked(&new), ["AFTER", "LATER"]);
    daemon.stop().await.expect("clean stop");
}

/// A member of a receiver's group that takes its share of the alerts topic and delivers
/// nothing, until dropped: it revokes partitions from the daemon at a moment of the test's
/// choosing.
struct Squatter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    assigned: std::sync::mpsc::Receiver<Vec<i32>>,
}

impl Squatter {
    fn join(broker: &Broker, group: &str, topic: &str) -> Squatter {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = broker
            .config()
            .set("group.id", group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("squatter");
        c.subscribe(&[topic]).expect("subscribe");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, assigned) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut told = false;
            while !flag.load(std::sync::atomic::Ordering::Acquire) {
                let _ = c.poll(Duration::from_millis(100));
                if !told {
                    let mine: Vec<i32> = c
                        .assignment()
                        .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                        .unwrap_or_default();
                    if !mine.is_empty() {
                        let _ = tx.send(mine);
                        told = true;
                    }
                }
            }
            c.unsubscribe();
        });
        Squatter {
            stop,
            thread: Some(thread),
            assigned,
        }
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_revoked_mid_delivery_stops_its_lane_at_once() {
    let broker = Broker::start();
    let name = "revoke";
    broker.create_topic(&format!("{name}.events"), 4);
    let hook = Hook::up().await;
    // Every alert is refused for now: the lanes hold them, retrying.
    hook.refuse("alert_id", 503);
    let text = format!(
        "{}\n{}",
        config_text(&broker, name, 2),
        receiver(
            "r",
            &hook,
            "retry_initial = \"100ms\"\nretry_max = \"300ms\"\nbreaker_failures = 1000\n"
        )
    );
    let kafka = Config::from_toml(&text, None, false).unwrap().kafka;
    let daemon = spawn(&text).await;
    let mut seq = 0;
    let events: Vec<_> = ["P1", "P2", "P3", "P4", "P5", "P6"]
        .iter()
        .map(|p| leak(p, &format!("INC-{p}"), &mut seq))
        .collect();
    produce(&broker.producer(), &format!("{name}.events"), &events).await;
    let m = &daemon.running.metrics.webhook;
    let pending = m.pending.with_label_values(&["r"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending.get() < events.len() as i64 {
        assert!(
            Instant::now() < deadline,
            "every alert held: {}",
            pending.get()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let alerts = collect(
        &kafka,
        &kafka.alerts_topic,
        "revoke-check",
        Duration::from_secs(30),
        |s| s.len() >= events.len(),
    )
    .await;

    // Another member takes a share of the alerts topic: the daemon's lanes for it stop.
    let squatter = Squatter::join(&broker, &format!("{name}.outbox.r"), &kafka.alerts_topic);
    let taken =
        tokio::task::block_in_place(|| squatter.assigned.recv_timeout(Duration::from_secs(60)))
            .expect("the other member gets a partition");
    let moved: std::collections::BTreeSet<String> = alerts
        .iter()
        .filter(|a| taken.contains(&a.partition()))
        .map(|a| payload(a)["alert_id"].as_str().unwrap().to_string())
        .collect();
    assert!(!moved.is_empty(), "alerts in the partition that moved");
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.revoked.with_label_values(&["r"]).get() == 0 {
        assert!(Instant::now() < deadline, "the revoked lane stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The receiver recovers: the daemon delivers what it still owns, nothing of what moved.
    let revoked_at = Instant::now();
    hook.accept();
    let kept = events.len() - moved.len();
    hook.wait_for(
        "the alerts the daemon kept",
        Duration::from_secs(60),
        |_| hook.delivered().len() >= kept,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent_after: Vec<String> = hook
        .got()
        .iter()
        .filter(|g| g.at > revoked_at)
        .map(|g| g.header("idempotency-key").to_string())
        .filter(|k| moved.contains(k))
        .collect();
    assert!(
        sent_after.is_empty(),
        "the old owner sent what moved: {sent_after:?}"
    );
    assert_eq!(hook.delivered().len(), kept);

    // The partition comes back: a fresh lane delivers it from the committed offset, once.
    drop(squatter);
    hook.wait_for("every alert", Duration::from_secs(60), |_| {
        hook.delivered().len() == events.len()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut oks: BTreeMap<String, usize> = BTreeMap::new();
    for g in hook.got().iter().filter(|g| g.status == 200) {
        *oks.entry(g.header("idempotency-key").to_string())
            .or_default() += 1;
    }
    assert!(
        oks.values().all(|&n| n == 1),
        "acknowledged once each: {oks:?}"
    );
    assert_eq!(
        m.delivered.with_label_values(&["r"]).get(),
        events.len() as u64
    );
    daemon.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_skips_a_poison_alert_by_an_audited_action() {
    use crate::actions::{post, tokens};
    let broker = Broker::start();
    let name = "skip";
    broker.create_topic(&format!("{name}.events"), 1);
    let hook = Hook::up().await;
    hook.refuse("POISON", 503);
    let dir = crate::broker::tempdir("skip");
    std::fs::create_dir_all(&dir).unwrap();
    // Retried for an hour unless someone steps in.
    let text = format!(
        "{}\n[delivery]\ndead_letter_topic = \"{name}.alert-dlq\"\n{}\n{}",
        config_text(&broker, name, 1).replacen(
            "[kafka]\n",
            &format!("[kafka]\naudit_topic = \"{name}.audit\"\n"),
            1
        ),
        receiver(
            "r",
            &hook,
            "retry_initial = \"200ms\"\nretry_max = \"1s\"\nbreaker_failures = 1000\nmax_retry_age = \"1h\"\n"
        ),
        tokens(&dir)
    );
    let kafka = Config::from_toml(&text, None, false).unwrap().kafka;
    let daemon = spawn(&text).await;
    let addr = daemon.running.http.unwrap();
    let mut seq = 0;
    let events = [leak("P1", "POISON", &mut seq), leak("P1", "NEXT", &mut seq)];
    produce(&broker.producer(), &format!("{name}.events"), &events).await;
    hook.wait_for("the poison alert refused", Duration::from_secs(60), |got| {
        got.iter()
            .filter(|g| g.json()["incident_id"] == "POISON")
            .count()
            >= 2
    })
    .await;
    let poison_id = hook
        .got()
        .iter()
        .find(|g| g.json()["incident_id"] == "POISON")
        .map(|g| g.json()["alert_id"].as_str().unwrap().to_string())
        .unwrap();
    assert!(
        acked(&hook).is_empty(),
        "the lane is held by the poison alert"
    );

    // Refused: a receiver that is not configured; no operator role.
    let op = Some("operator-token-0123456789");
    let body = |receiver: &str| {
        json!({"action": "skip", "receiver": receiver, "alert_id": poison_id,
               "participant_id": "P1", "actor": "carol",
               "reason": "receiver cannot parse it; vendor ticket 77"})
    };
    let (status, said) = post(addr, op, body("nobody")).await;
    assert_eq!(status, 404, "{said}");
    assert!(said.contains("no receiver"), "{said}");
    assert_eq!(post(addr, None, body("r")).await.0, 401);
    let m = daemon.running.metrics.clone();
    assert_eq!(
        m.actions
            .with_label_values(&["skip", "unknown_receiver"])
            .get(),
        1
    );

    // Skipped: dead-lettered with who and why, and the lane goes on at once.
    let (status, said) = post(addr, op, body("r")).await;
    assert_eq!(status, 202, "{said}");
    hook.wait_for("the next alert", Duration::from_secs(30), |got| {
        got.iter()
            .any(|g| g.status == 200 && g.json()["incident_id"] == "NEXT")
    })
    .await;
    let dead = collect(
        &kafka,
        &format!("{name}.alert-dlq"),
        "skip-dlq",
        Duration::from_secs(20),
        |d| !d.is_empty(),
    )
    .await;
    let header = |m: &OwnedMessage, h: &str| tail::header(m, h).unwrap_or_default();
    assert_eq!(dead.len(), 1);
    assert_eq!(header(&dead[0], "regwatch.reason"), "skipped");
    assert_eq!(header(&dead[0], "regwatch.receiver"), "r");
    let why = header(&dead[0], "regwatch.reason_text");
    assert!(
        why.contains("carol") && why.contains("vendor ticket 77"),
        "{why}"
    );
    assert_eq!(payload(&dead[0])["alert_id"], poison_id.as_str());
    assert_eq!(
        m.webhook
            .dead_letters
            .with_label_values(&["r", "skipped"])
            .get(),
        1
    );
    let audit = collect(
        &kafka,
        &format!("{name}.audit"),
        "skip-audit",
        Duration::from_secs(20),
        |a| !a.is_empty(),
    )
    .await;
    let record = payload(&audit[0]);
    assert_eq!(record["action"], "skip");
    assert_eq!(record["receiver"], "r");
    assert_eq!(record["alert_id"], poison_id.as_str());
    assert!(record["actor"].as_str().unwrap().starts_with("carol"));
    daemon.stop().await.expect("clean stop");
}
