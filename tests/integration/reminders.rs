//! Reminders through the daemon and a real broker (Apache Kafka): they go to the reminders topic with
//! the alert headers plus `regwatch.reminder`, never to the alerts topic, and are not counted
//! as alerts.

use std::time::Duration;

use rdkafka::Message;
use regwatch::config::Config;
use regwatch::ingest::tail;
use regwatch::time::wall_now;
use serde_json::json;

use crate::broker::{produce, Broker};
use crate::kafka::{collect, config_text, payload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_go_to_their_own_topic_and_never_to_the_alerts_topic() {
    let broker = Broker::start();
    let name = "remind";
    broker.create_topic(&format!("{name}.events"), 2);
    let text = config_text(&broker, name, 2);
    let mut cfg = Config::from_toml(&text, None, false).expect("test config");
    assert_eq!(cfg.engine.reminder_interval_ms, 3_600_000, "the default");
    // Below the configuration's 1m minimum, so that the test is short.
    cfg.engine.reminder_interval_ms = 2_000;
    let kafka = cfg.kafka.clone();
    let daemon = regwatch::app::spawn(cfg).await.expect("the daemon starts");

    // A full trading outage 31 minutes old: major at once (a broker's 30-minute rule).
    let event = json!({"schema": "regwatch.event.v1", "event_id": "r-1",
        "participant_id": "P2", "kind": "infosec", "occurred_at": wall_now().to_string(),
        "incident_id": "O1", "category": "outage", "system": "trading", "scope": "full",
        "started_at": wall_now().plus_millis(-31 * 60_000).to_string()});
    let producer = broker.producer();
    produce(
        &producer,
        &format!("{name}.events"),
        &[("P2".to_string(), serde_json::to_vec(&event).unwrap())],
    )
    .await;

    let reminders = collect(
        &kafka,
        &kafka.reminders_topic,
        "check-reminders",
        Duration::from_secs(40),
        |r| r.len() >= 2,
    )
    .await;
    let alerts = collect(
        &kafka,
        &kafka.alerts_topic,
        "check-alerts",
        Duration::from_secs(20),
        |a| !a.is_empty(),
    )
    .await;
    let opened = payload(&alerts[0]);
    assert_eq!(
        (&opened["trigger"], &opened["level"]),
        (&json!("opened"), &json!("major"))
    );
    for (i, m) in reminders.iter().take(2).enumerate() {
        let r = payload(m);
        let k = i as u64 + 1;
        assert_eq!(r["trigger"], "reminder");
        assert_eq!(r["reminder"], k);
        assert_eq!(r["reminder_of"], opened["alert_id"]);
        assert_eq!(m.key(), Some("P2".as_bytes()));
        assert_eq!(tail::header(m, "regwatch.reminder"), Some(k.to_string()));
        assert_eq!(
            tail::header(m, "regwatch.alert_id").as_deref(),
            r["alert_id"].as_str()
        );
        assert_eq!(
            tail::header(m, "regwatch.type").as_deref(),
            Some("incident")
        );
        assert_eq!(
            tail::header(m, "regwatch.status").as_deref(),
            Some("firing")
        );
        assert_eq!(tail::header(m, "regwatch.level").as_deref(), Some("major"));
    }

    // Reminders kept coming, and the alerts topic still holds the one alert.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = collect(
        &kafka,
        &kafka.alerts_topic,
        "check-alerts-2",
        Duration::from_secs(20),
        |a| !a.is_empty(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        again.len(),
        1,
        "{:?}",
        again.iter().map(payload).collect::<Vec<_>>()
    );
    let counted = daemon
        .running
        .metrics
        .alerts
        .with_label_values(&["incident", "firing"])
        .get();
    assert_eq!(counted, 1, "reminders are not counted as alerts");
    daemon
        .stop()
        .await
        .expect("the daemon drains and stops cleanly");
}
