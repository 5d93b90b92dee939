//! Fault injection with librdkafka's in-process mock cluster: failed produce requests and a
//! broker outage lose no alert and duplicate none.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use regwatch::config::Config;
use regwatch::ingest::{mock::MockBroker, output, tail};
use regwatch::time::wall_now;
use serde_json::{json, Value};

const REGISTRY: &str = r#"
[[participants]]
id = "P1"
kind = "fund_manager"
[[participants]]
id = "P2"
kind = "broker"
effective_customers = 2500000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_produces_and_a_broker_outage_lose_and_duplicate_nothing() {
    let broker = MockBroker::start(1).expect("mock cluster");
    for topic in ["f.events", "f.alerts", "f.dlq", "f.state"] {
        broker.create_topic(topic, 2).unwrap();
    }
    let text = format!(
        r#"
[engine]
telemetry_gap = "off"
[kafka]
brokers = "{}"
group_id = "faults"
topics = ["f.events"]
alerts_topic = "f.alerts"
dead_letter_topic = "f.dlq"
state_topic = "f.state"
create_topics = false
commit_interval = "200ms"
[daemon]
tick = "100ms"
shutdown_grace = "20s"
[http]
listen = "off"
{REGISTRY}"#,
        broker.bootstrap()
    );
    let cfg = Config::from_toml(&text, None, false).unwrap();
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("daemon starts");

    let producer: rdkafka::producer::FutureProducer =
        regwatch::ingest::client::producer(&kafka).create().unwrap();
    let mut expected = 0;
    let mut deliveries = Vec::new();
    for i in 0..40 {
        if i == 10 {
            broker.fail_next_produces(8);
        }
        if i == 25 {
            broker.set_broker_up(1, false).unwrap();
        }
        if i == 30 {
            // Events 25..29 wait in the producers' queues while the broker is down.
            tokio::time::sleep(Duration::from_secs(2)).await;
            broker.set_broker_up(1, true).unwrap();
        }
        let pid = if i % 2 == 0 { "P1" } else { "P2" };
        // Every event opens a new incident: one `opened` alert each.
        let event = json!({"schema": "regwatch.event.v1", "event_id": format!("f-{i}"),
            "participant_id": pid, "kind": "infosec", "occurred_at": wall_now().to_string(),
            "incident_id": format!("I-{i}"), "category": "malware"});
        let bytes = serde_json::to_vec(&event).unwrap();
        let record = output::Record {
            topic: "f.events",
            partition: None,
            key: pid.as_bytes(),
            payload: Some(&bytes),
            headers: rdkafka::message::OwnedHeaders::new(),
        };
        deliveries.push(output::send(&producer, &record).await.unwrap());
        expected += 1;
    }
    for d in deliveries {
        assert!(
            matches!(d.await, Ok(Ok(_))),
            "every test event reaches the broker"
        );
    }

    let follower = tail::follower(&kafka, "f.alerts", "fault-check").unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    // Per participant, the incident numbers in the order their alerts are on the topic.
    let mut order: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < expected && Instant::now() < deadline {
        if let Some(m) = tail::next(&follower, Duration::from_millis(500)).await {
            let a: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            let incident = a["incident_id"].as_str().unwrap().to_string();
            let n = incident.trim_start_matches("I-").parse().unwrap();
            order
                .entry(a["participant_id"].as_str().unwrap().to_string())
                .or_default()
                .push(n);
            *seen.entry(incident).or_default() += 1;
        }
    }
    for (pid, numbers) in &order {
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{pid}'s alerts are on the topic in the order they were raised: {numbers:?}"
        );
    }
    // Wait a little for any duplicate to show up.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        if let Some(m) = tail::next(&follower, Duration::from_millis(200)).await {
            let a: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            *seen
                .entry(a["incident_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(seen.len(), expected, "every incident alerted: {seen:?}");
    assert!(seen.values().all(|n| *n == 1), "no duplicate: {seen:?}");
    daemon.stop().await.expect("clean drain");
}
