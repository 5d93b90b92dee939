//! Participants bound to their topics (CONTRACT.md section 1, v1.1), on the real broker: with a
//! topic-regex subscription, each bound participant's topic is created by regwatch and carries
//! its events only; an event for another participant on it, or for a bound participant on the
//! shared topic, is rejected `topic_mismatch`, dead-lettered, counted, and is not hearing.
//! A participant whose events arrive on two partitions (mixed partitioners) keeps its first
//! partition as home; the other's events are refused `partition_conflict`.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::Message;
use regwatch::config::Config;
use regwatch::ingest::tail;
use serde_json::json;

use crate::broker::{produce, Broker};
use crate::kafka::{collect, config_text, event, payload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_participants_speak_only_on_their_topics() {
    let broker = Broker::start();
    let name = "bind";
    // The shared topic exists; the bound ones are regwatch's to create.
    broker.create_topic("bind.events", 1);
    let text = config_text(&broker, name, 1)
        .replace(
            "topics = [\"bind.events\"]",
            "topic_pattern = \"^bind\\\\.events(\\\\..+)?$\"",
        )
        .replace(
            "id = \"P1\"\n",
            "id = \"P1\"\ntopics = [\"bind.events.P1\"]\n",
        )
        .replace(
            "id = \"P2\"\n",
            "id = \"P2\"\ntopics = [\"bind.events.P2\"]\n",
        );
    assert!(text.contains("topic_pattern") && text.contains("bind.events.P2"));
    let cfg = Config::from_toml(&text, None, false).expect("config");
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("daemon starts");
    let m = daemon.running.metrics.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while m.partitions.get() < 3 || m.restoring.get() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the shared and both bound topics are consumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let producer = broker.producer();
    let mut seq = 0;
    let leak = |pid: &str, incident: &str, seq: &mut u32| {
        event(
            json!({"participant_id": pid, "kind": "infosec", "incident_id": incident,
                   "category": "data_leak", "records_exposed": 200_000}),
            seq,
        )
    };
    // Accepted: P1 on its topic, P3 (unbound) on the shared one.
    produce(&producer, "bind.events.P1", &[leak("P1", "OWN", &mut seq)]).await;
    produce(&producer, "bind.events", &[leak("P3", "SHARED", &mut seq)]).await;
    // Rejected: P2's event on P1's topic (a forged competitor report), P1 on the shared
    // topic, P3 (unbound) on P2's topic.
    produce(
        &producer,
        "bind.events.P1",
        &[leak("P2", "FORGED", &mut seq)],
    )
    .await;
    produce(&producer, "bind.events", &[leak("P1", "AROUND", &mut seq)]).await;
    produce(&producer, "bind.events.P2", &[leak("P3", "INTO", &mut seq)]).await;

    let alerts = collect(
        &kafka,
        &kafka.alerts_topic,
        "bind-alerts",
        Duration::from_secs(30),
        |a| a.len() >= 2,
    )
    .await;
    let alerted: BTreeSet<String> = alerts
        .iter()
        .map(|a| payload(a)["incident_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        alerted,
        ["OWN", "SHARED"].iter().map(|s| s.to_string()).collect()
    );
    let dead = collect(
        &kafka,
        &kafka.dead_letter_topic,
        "bind-dlq",
        Duration::from_secs(30),
        |d| d.len() >= 3,
    )
    .await;
    let reasons: BTreeSet<(String, String)> = dead
        .iter()
        .map(|d| {
            (
                tail::header(d, "regwatch.source_topic").unwrap_or_default(),
                tail::header(d, "regwatch.reason").unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("bind.events.P1", "topic_mismatch"),
            ("bind.events", "topic_mismatch"),
            ("bind.events.P2", "topic_mismatch"),
        ]
        .iter()
        .map(|(t, r)| (t.to_string(), r.to_string()))
        .collect()
    );
    assert_eq!(
        m.rejected.with_label_values(&["topic_mismatch"]).get(),
        3,
        "counted"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = collect(
        &kafka,
        &kafka.alerts_topic,
        "bind-alerts-2",
        Duration::from_secs(30),
        |a| a.len() >= 2,
    )
    .await;
    assert_eq!(again.len(), 2, "nothing else was alerted");
    daemon.stop().await.expect("clean stop");
}

/// Produces `(key, value)` to one partition, as a producer with its own partitioner would.
async fn produce_to(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    partition: i32,
    (key, value): &(String, Vec<u8>),
) {
    let record = rdkafka::producer::FutureRecord::to(topic)
        .key(key.as_bytes())
        .payload(value.as_slice())
        .partition(partition);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_split_over_two_partitions_is_graded_on_one_only() {
    let broker = Broker::start();
    let name = "split";
    broker.create_topic("split.events", 3);
    let cfg = Config::from_toml(&config_text(&broker, name, 3), None, false).expect("config");
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("daemon starts");
    let m = daemon.running.metrics.clone();
    let producer = broker.producer();
    let mut seq = 0;
    let report = |records: u64, seq: &mut u32| {
        event(
            json!({"participant_id": "P1", "kind": "infosec", "incident_id": "LEAK",
                   "category": "data_leak", "records_exposed": records}),
            seq,
        )
    };
    // One producer (one partitioner) puts P1 on partition 0...
    produce_to(&producer, "split.events", 0, &report(200_000, &mut seq)).await;
    let first = collect(
        &kafka,
        &kafka.alerts_topic,
        "split-alerts",
        Duration::from_secs(30),
        |a| !a.is_empty(),
    )
    .await;
    assert_eq!(payload(&first[0])["incident_id"], "LEAK");
    // ...another, with a different partitioner, on partition 2: the same incident, worse.
    produce_to(&producer, "split.events", 2, &report(5_000_000, &mut seq)).await;
    let hb = event(
        json!({"participant_id": "P1", "kind": "heartbeat"}),
        &mut seq,
    );
    produce_to(&producer, "split.events", 2, &hb).await;
    let dead = collect(
        &kafka,
        &kafka.dead_letter_topic,
        "split-dlq",
        Duration::from_secs(30),
        |d| d.len() >= 2,
    )
    .await;
    for d in &dead {
        assert_eq!(
            tail::header(d, "regwatch.reason").as_deref(),
            Some("partition_conflict")
        );
        assert_eq!(
            tail::header(d, "regwatch.source_partition").as_deref(),
            Some("2")
        );
    }
    assert_eq!(
        m.rejected.with_label_values(&["partition_conflict"]).get(),
        2
    );
    // One home, one copy: no second incident was opened on partition 2, and the series
    // that lets Prometheus sum homes over the fleet shows partition 0 only.
    let text = m.render();
    let homes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("regwatch_participant_partitions{") && l.contains("\"P1\""))
        .collect();
    assert_eq!(homes.len(), 1, "{homes:?}");
    assert!(homes[0].contains("partition=\"0\""), "{homes:?}");
    // The same report through the home partition is graded: the only other alert.
    produce_to(&producer, "split.events", 0, &report(5_000_000, &mut seq)).await;
    let all = collect(
        &kafka,
        &kafka.alerts_topic,
        "split-alerts-2",
        Duration::from_secs(30),
        |a| a.iter().any(|a| payload(a)["trigger"] != "opened"),
    )
    .await;
    assert_eq!(all.len(), 2, "one incident, graded on partition 0 only");
    assert!(all.iter().all(|a| a.partition() == first[0].partition()));
    daemon.stop().await.expect("clean stop");
}
