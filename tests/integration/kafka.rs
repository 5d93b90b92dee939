//! The daemon against a real broker (Apache Kafka): alerts and dead letters end to end, restart
//! and crash without forgetting, and a rebalance between two instances.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use regwatch::app::Spawned;
use regwatch::config::Config;
use regwatch::ingest::tail;
use regwatch::score::{ClockMode, Engine, EngineSettings};
use regwatch::time::{wall_now, Timestamp};
use serde_json::{json, Value};

use crate::broker::{produce, Broker};

/// Every test participant trades on `tests/data/always.toml`'s calendar (sessions around the
/// clock): the daemon's wall clock escalates them whatever the hour the tests run at.
const PARTICIPANTS: &str = r#"
[[participants]]
id = "P1"
kind = "fund_manager"
effective_customers = 800000
calendar = "always"
[[participants]]
id = "P2"
kind = "broker"
effective_customers = 2500000
calendar = "always"
[[participants]]
id = "P3"
kind = "exchange"
calendar = "always"
[[participants]]
id = "P4"
kind = "futures_exchange"
calendar = "always"
[[participants]]
id = "P5"
kind = "broker"
effective_customers = 50000
calendar = "always"
[[participants]]
id = "P6"
kind = "futures_broker"
effective_customers = 150000
calendar = "always"
"#;

/// The around-the-clock test calendar.
pub(crate) const ALWAYS_CALENDAR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/always.toml");

pub(crate) fn config_text(b: &Broker, name: &str, partitions: u32) -> String {
    format!(
        r#"
[engine]
telemetry_gap = "off"
[rules]
calendars = "{}"
[kafka]
brokers = "{}"
group_id = "{name}"
topics = ["{name}.events"]
alerts_topic = "{name}.alerts"
dead_letter_topic = "{name}.dlq"
state_topic = "{name}.state"
topic_partitions = {partitions}
replication_factor = 1
commit_interval = "200ms"
session_timeout = "6s"
[daemon]
tick = "100ms"
shutdown_grace = "15s"
[http]
listen = "127.0.0.1:0"
{PARTICIPANTS}
"#,
        ALWAYS_CALENDAR,
        b.bootstrap()
    )
}

fn config(b: &Broker, name: &str, partitions: u32) -> Config {
    Config::from_toml(&config_text(b, name, partitions), None, false).expect("test config")
}

struct Daemon(Spawned);

async fn start(cfg: Config) -> Daemon {
    Daemon(regwatch::app::spawn(cfg).await.expect("the daemon starts"))
}

impl Daemon {
    async fn stop(self) {
        self.0
            .stop()
            .await
            .expect("the daemon drains and stops cleanly");
    }

    fn counter(&self, name: &str, label: &str) -> u64 {
        let m = &self.0.running.metrics;
        match name {
            "events" => m.events.with_label_values(&[label]).get(),
            "rejected" => m.rejected.with_label_values(&[label]).get(),
            _ => 0,
        }
    }

    fn partitions(&self) -> i64 {
        self.0.running.metrics.partitions.get()
    }

    /// Waits until this instance owns `n` partitions and none is restoring.
    async fn wait_ready(&self, n: i64) {
        let m = &self.0.running.metrics;
        crate::support::eventually(
            "partitions assigned and restored",
            Duration::from_secs(60),
            || m.partitions.get() == n && m.restoring.get() == 0,
        )
        .await;
    }
}

/// An event as a participant sends it, with a fresh id, at wall time.
pub(crate) fn event(mut v: Value, seq: &mut u32) -> (String, Vec<u8>) {
    *seq += 1;
    let key = v["participant_id"].as_str().unwrap_or_default().to_string();
    v["schema"] = json!("regwatch.event.v1");
    v["event_id"] = json!(format!("t-{seq}"));
    if v.get("occurred_at").is_none() {
        v["occurred_at"] = json!(wall_now().to_string());
    }
    (key, serde_json::to_vec(&v).unwrap())
}

pub(crate) fn ago(minutes: f64) -> String {
    wall_now()
        .plus_millis(-(minutes * 60_000.0) as i64)
        .to_string()
}

/// Reads `topic` until `done` says so (or panics after `timeout`).
pub(crate) async fn collect(
    k: &regwatch::config::KafkaSettings,
    topic: &str,
    group: &str,
    timeout: Duration,
    done: impl Fn(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let follower = tail::follower(k, topic, group).expect("follower");
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while !done(&seen) {
        assert!(
            Instant::now() < deadline,
            "timed out on {topic}: {} messages: {:?}",
            seen.len(),
            seen.iter().map(summary).collect::<Vec<_>>()
        );
        if let Some(m) = tail::next(&follower, Duration::from_millis(500)).await {
            seen.push(m);
        }
    }
    seen
}

pub(crate) fn payload(m: &OwnedMessage) -> Value {
    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(Value::Null)
}

fn summary(m: &OwnedMessage) -> String {
    let a = payload(m);
    format!(
        "{} {} {} {}",
        a["incident_id"], a["trigger"], a["level"], a["status"]
    )
}

fn triples(alerts: &[OwnedMessage]) -> BTreeSet<(String, String, String)> {
    alerts
        .iter()
        .map(|m| {
            let a = payload(m);
            (
                a["incident_id"].as_str().unwrap_or("").to_string(),
                a["trigger"].as_str().unwrap_or("").to_string(),
                a["level"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub(crate) fn ids(alerts: &[OwnedMessage]) -> BTreeSet<String> {
    alerts
        .iter()
        .map(|m| payload(m)["alert_id"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The alert ids an uninterrupted run gives: the same events through one engine in event
/// time, then the clock moved on to `until`.
pub(crate) fn oracle(
    cfg: &Config,
    events: &[(String, Vec<u8>)],
    until: Timestamp,
) -> BTreeSet<String> {
    let settings = EngineSettings {
        clock: ClockMode::EventTime,
        watch_all_from_start: false,
        ..cfg.engine.clone()
    };
    let mut engine = Engine::new(
        Arc::new(cfg.registry.clone()),
        Arc::new(cfg.rules.clone()),
        settings,
    );
    let mut out = Vec::new();
    for (_, value) in events {
        let _ = engine.process(value, &mut out);
    }
    engine.advance_to(until, &mut out);
    out.into_iter().map(|a| a.alert_id).collect()
}

/// The end of each partition: its high watermark (Apache Kafka's is exact).
fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "end-offsets")
        .create()
        .expect("end-offset reader");
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .collect()
}

/// Committed offsets of `group` are the end of every partition of `topic`: every event was
/// handled and everything it caused acknowledged.
pub(crate) fn assert_all_committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) {
    if let Err(why) = all_committed(bootstrap, group, topic, partitions) {
        panic!("{why}");
    }
}

/// Whether the committed offsets of `group` are the end of every partition of `topic`.
pub(crate) fn all_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), String> {
    let c: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("offset checker");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    for (p, end) in end_offsets(bootstrap, topic, partitions)
        .into_iter()
        .enumerate()
    {
        let got = committed
            .find_partition(topic, p as i32)
            .map(|e| e.offset())
            .unwrap_or(Offset::Invalid);
        let ok = match got {
            Offset::Offset(o) => o == end,
            _ => end == 0,
        };
        if !ok {
            return Err(format!("partition {p}: committed {got:?}, end {end}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_become_alerts_and_rejects_become_dead_letters() {
    let broker = Broker::start();
    let name = "e2e";
    broker.create_topic(&format!("{name}.events"), 3);
    let cfg = config(&broker, name, 3);
    let kafka = cfg.kafka.clone();
    let daemon = start(cfg).await;
    // The outage below is 10 s short of its 5-minute threshold: produce once the partitions
    // are owned and restored, so the margin is not spent on joining the group.
    daemon.wait_ready(3).await;
    let mut seq = 0;
    let bad = vec![
        (
            "P1".to_string(),
            b"{\"schema\":\"regwatch.event.v1\",".to_vec(),
        ),
        event(
            json!({"participant_id": "XX-UNKNOWN", "kind": "heartbeat"}),
            &mut seq,
        ),
        // Key P2, payload P1: one participant must not report as another.
        (
            "P2".to_string(),
            event(
                json!({"participant_id": "P1", "kind": "heartbeat"}),
                &mut seq,
            )
            .1,
        ),
    ];
    let good = [
        event(
            json!({"participant_id": "P1", "kind": "heartbeat"}),
            &mut seq,
        ),
        event(
            json!({"participant_id": "P1", "kind": "infosec", "incident_id": "L1",
            "category": "data_leak", "records_exposed": 200000}),
            &mut seq,
        ),
        event(
            json!({"participant_id": "P2", "kind": "infosec", "incident_id": "O2",
            "category": "outage", "system": "trading", "scope": "full",
            "started_at": ago(4.0 + 50.0 / 60.0)}),
            &mut seq,
        ),
        event(
            json!({"participant_id": "P1", "kind": "infosec", "incident_id": "L1",
            "category": "data_leak", "status": "resolved"}),
            &mut seq,
        ),
    ];
    let producer = broker.producer();
    produce(&producer, &format!("{name}.events"), &good[..2]).await;
    produce(&producer, &format!("{name}.events"), &bad).await;
    produce(&producer, &format!("{name}.events"), &good[2..]).await;

    let alerts = collect(
        &kafka,
        &kafka.alerts_topic,
        "check-alerts",
        Duration::from_secs(40),
        |a| a.len() >= 4,
    )
    .await;
    let expected: BTreeSet<(String, String, String)> = [
        ("L1", "opened", "major"),
        ("L1", "resolved", "major"),
        ("O2", "opened", "general"),
        ("O2", "clock", "larger"),
    ]
    .iter()
    .map(|(i, t, l)| (i.to_string(), t.to_string(), l.to_string()))
    .collect();
    assert_eq!(triples(&alerts), expected);
    for m in &alerts {
        let a = payload(m);
        assert_eq!(m.key(), a["participant_id"].as_str().map(str::as_bytes));
        assert_eq!(
            tail::header(m, "regwatch.alert_id").as_deref(),
            a["alert_id"].as_str()
        );
        if a["incident_id"] == "L1" {
            assert_eq!(a["exemption"], "ineligible");
        }
    }
    let o2_clock = alerts
        .iter()
        .map(payload)
        .find(|a| a["trigger"] == "clock")
        .unwrap();
    assert_eq!(
        o2_clock["duration_minutes"], 5.0,
        "escalated exactly at 5 minutes"
    );

    let dead = collect(
        &kafka,
        &kafka.dead_letter_topic,
        "check-dlq",
        Duration::from_secs(20),
        |d| d.len() >= 3,
    )
    .await;
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|m| tail::header(m, "regwatch.reason").unwrap_or_default())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["key_mismatch", "not_json", "unregistered_participant"]
    );
    for m in &dead {
        assert_eq!(
            tail::header(m, "regwatch.source_topic").as_deref(),
            Some("e2e.events")
        );
        assert!(tail::header(m, "regwatch.source_offset").is_some_and(|o| o.parse::<i64>().is_ok()));
        assert!(tail::header(m, "regwatch.reason_text").is_some());
        let original = bad.iter().find(|(_, v)| Some(v.as_slice()) == m.payload());
        assert!(
            original.is_some(),
            "the dead letter carries the original bytes"
        );
    }
    // Nothing more arrives: each transition was alerted exactly once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = collect(
        &kafka,
        &kafka.alerts_topic,
        "check-alerts-2",
        Duration::from_secs(20),
        |a| a.len() >= 4,
    )
    .await;
    assert_eq!(
        again.len(),
        4,
        "{:?}",
        again.iter().map(summary).collect::<Vec<_>>()
    );
    assert_eq!(daemon.counter("rejected", "key_mismatch"), 1);
    assert_eq!(daemon.counter("events", "rejected"), 3);
    // The running daemon's commits are confirmed by the broker, and once they are, an idle
    // partition has nothing more to flush or commit.
    let m = &daemon.0.running.metrics;
    assert!(m.commits.with_label_values(&["ok"]).get() > 0);
    assert_eq!(m.commits.with_label_values(&["error"]).get(), 0);
    let (flushes, commits) = (
        m.state_flushes.get(),
        m.commits.with_label_values(&["ok"]).get(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        (
            m.state_flushes.get(),
            m.commits.with_label_values(&["ok"]).get()
        ),
        (flushes, commits),
        "five idle commit intervals flush and commit nothing"
    );
    daemon.stop().await;
    assert_all_committed(&broker.bootstrap(), name, &format!("{name}.events"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_resumes_open_incidents_and_escalates_on_time() {
    let broker = Broker::start();
    let name = "restart";
    broker.create_topic(&format!("{name}.events"), 2);
    let mut seq = 0;
    let first = start(config(&broker, name, 2)).await;
    // 8 s short of the 5-minute deadline: produced once the partitions are owned and
    // restored, so the margin is not spent on joining the group.
    first.wait_ready(2).await;
    let started_at = wall_now().plus_millis(-(4 * 60_000 + 52_000));
    let outage = event(
        json!({"participant_id": "P2", "kind": "infosec", "incident_id": "O1",
        "category": "outage", "system": "trading", "scope": "full",
        "started_at": started_at.to_string()}),
        &mut seq,
    );
    produce(&broker.producer(), &format!("{name}.events"), &[outage]).await;
    let kafka = config(&broker, name, 2).kafka;
    let opened = collect(
        &kafka,
        &kafka.alerts_topic,
        "r-1",
        Duration::from_secs(60),
        |a| !a.is_empty(),
    )
    .await;
    assert_eq!(
        triples(&opened).into_iter().next().map(|t| t.1),
        Some("opened".to_string())
    );
    first.stop().await;
    // The deadline (5 minutes after the start) passes while nobody owns the partition.
    let second = start(config(&broker, name, 2)).await;
    let alerts = collect(
        &kafka,
        &kafka.alerts_topic,
        "r-2",
        Duration::from_secs(30),
        |a| a.len() >= 2,
    )
    .await;
    let clock: Vec<Value> = alerts
        .iter()
        .map(payload)
        .filter(|a| a["trigger"] == "clock")
        .collect();
    assert_eq!(
        clock.len(),
        1,
        "{:?}",
        alerts.iter().map(summary).collect::<Vec<_>>()
    );
    assert_eq!(clock[0]["level"], "larger");
    assert_eq!(
        clock[0]["at"].as_str(),
        Some(started_at.plus_millis(5 * 60_000).to_string().as_str()),
        "at the deadline itself"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = collect(
        &kafka,
        &kafka.alerts_topic,
        "r-3",
        Duration::from_secs(20),
        |a| a.len() >= 2,
    )
    .await;
    assert_eq!(
        all.len(),
        2,
        "opened once, escalated once: {:?}",
        all.iter().map(summary).collect::<Vec<_>>()
    );
    second.stop().await;
}

pub(crate) fn workload(seq: &mut u32, phase: u32) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for p in ["P1", "P2", "P3", "P4", "P5", "P6"] {
        v.push(event(
            json!({"participant_id": p, "kind": "heartbeat"}),
            seq,
        ));
        v.push(event(json!({"participant_id": p, "kind": "infosec", "incident_id": format!("{p}-leak-{phase}"),
            "category": "data_leak", "records_exposed": 3000 * phase}), seq));
        v.push(event(
            json!({"participant_id": p, "kind": "trading", "incident_id": format!("{p}-algo"),
            "category": "runaway_algo", "status": if phase == 1 { "open" } else { "update" },
            "peak_orders_per_sec": 150 * phase, "cancel_ratio": 0.3 * f64::from(phase)}),
            seq,
        ));
        v.push(event(json!({"participant_id": p, "kind": "infosec", "incident_id": format!("{p}-leak-{phase}"),
            "category": "data_leak", "status": "update", "records_exposed": 60000 * phase}), seq));
    }
    v
}

pub(crate) fn regwatch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_regwatch"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_stream_restarts_without_losing_or_renaming_alerts() {
    let broker = Broker::start();
    let name = "crash";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 3);
    let dir = std::env::temp_dir().join(format!("regwatch-crash-{}", broker.port));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_path = dir.join("regwatch.toml");
    std::fs::write(&cfg_path, config_text(&broker, name, 3)).unwrap();
    let cfg = Config::load(&cfg_path).unwrap();
    let kafka = cfg.kafka.clone();
    let spawn = |log: &str| run_binary(&cfg_path, &dir.join(log));

    let mut seq = 0;
    let outage_start = wall_now().plus_millis(-(4 * 60_000 + 45_000));
    let mut events = workload(&mut seq, 1);
    events.push(event(
        json!({"participant_id": "P6", "kind": "infosec", "incident_id": "P6-outage",
        "category": "outage", "system": "trading", "scope": "full",
        "started_at": outage_start.to_string()}),
        &mut seq,
    ));
    let mut first = spawn("first.log");
    let producer = broker.producer();
    produce(&producer, &topic, &events).await;
    // Let it work, then kill it with no chance to flush or commit.
    collect(
        &kafka,
        &kafka.alerts_topic,
        "c-1",
        Duration::from_secs(30),
        |a| a.len() >= 6,
    )
    .await;
    unsafe_kill(&mut first.0);

    let phase2 = workload(&mut seq, 2);
    produce(&producer, &topic, &phase2).await;
    events.extend(phase2);
    let second = spawn("second.log");
    // Past the outage's 5-minute deadline.
    let until = outage_start.plus_millis(5 * 60_000 + 3_000);
    while wall_now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected = oracle(&cfg, &events, wall_now());
    let got = collect(
        &kafka,
        &kafka.alerts_topic,
        "c-2",
        Duration::from_secs(40),
        |a| ids(a).is_superset(&expected),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = collect(
        &kafka,
        &kafka.alerts_topic,
        "c-3",
        Duration::from_secs(30),
        |a| a.len() >= got.len(),
    )
    .await;
    assert_eq!(
        ids(&all),
        expected,
        "the same alert ids as an uninterrupted run, none new"
    );
    let clock: Vec<Value> = all
        .iter()
        .map(payload)
        .filter(|a| a["trigger"] == "clock")
        .collect();
    assert!(!clock.is_empty());
    assert!(clock.iter().all(
        |a| a["at"].as_str() == Some(outage_start.plus_millis(5 * 60_000).to_string().as_str())
    ));

    // SIGTERM: drain, commit, exit 0.
    second.terminate();
    assert_all_committed(&broker.bootstrap(), name, &topic, 3);
}

/// A daemon process, killed if the test fails before it ends it.
pub(crate) struct Reaped(pub std::process::Child);

impl Reaped {
    /// Sends `signal` (`"TERM"`, `"HUP"`, ...) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGTERM, then asserts a graceful exit (drain, commit, exit 0).
    pub(crate) fn terminate(mut self) {
        self.signal("TERM");
        let exit = self.0.wait().unwrap();
        assert!(exit.success(), "graceful exit: {exit:?}");
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `regwatch run --config <cfg>` as a process, logging to `log`.
pub(crate) fn run_binary(cfg: &std::path::Path, log: &std::path::Path) -> Reaped {
    Reaped(
        std::process::Command::new(regwatch_bin())
            .args(["run", "--config"])
            .arg(cfg)
            .env("REGWATCH_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("daemon binary starts"),
    )
}

/// SIGKILL: the process gets no chance to flush or commit.
pub(crate) fn unsafe_kill(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_and_one_leaving_loses_nothing() {
    let broker = Broker::start();
    let name = "rebalance";
    let topic = format!("{name}.events");
    broker.create_topic(&topic, 4);
    let cfg = config(&broker, name, 4);
    let kafka = cfg.kafka.clone();
    let a = start(config(&broker, name, 4)).await;
    let b = start(config(&broker, name, 4)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.partitions() + b.partitions() != 4 || a.partitions() == 0 || b.partitions() == 0 {
        assert!(
            Instant::now() < deadline,
            "partitions split between the two: {} + {}",
            a.partitions(),
            b.partitions()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut seq = 0;
    let mut events = workload(&mut seq, 1);
    let producer = broker.producer();
    produce(&producer, &topic, &events).await;
    let first = oracle(&cfg, &events, wall_now());
    collect(
        &kafka,
        &kafka.alerts_topic,
        "b-1",
        Duration::from_secs(30),
        |m| ids(m).is_superset(&first),
    )
    .await;
    // One instance leaves mid-stream; the other takes its partitions with their state.
    a.stop().await;
    let phase2 = workload(&mut seq, 2);
    produce(&producer, &topic, &phase2).await;
    events.extend(phase2);
    let expected = oracle(&cfg, &events, wall_now());
    let got = collect(
        &kafka,
        &kafka.alerts_topic,
        "b-2",
        Duration::from_secs(40),
        |m| ids(m).is_superset(&expected),
    )
    .await;
    assert_eq!(ids(&got), expected, "nothing lost, nothing renamed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.partitions() != 4 {
        assert!(
            Instant::now() < deadline,
            "the remaining instance owns every partition"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counts: HashMap<&str, u64> = ["graded", "heartbeat"]
        .iter()
        .map(|o| (*o, b.counter("events", o)))
        .collect();
    assert!(counts["graded"] > 0);
    b.stop().await;
    assert_all_committed(&broker.bootstrap(), name, &topic, 4);
}

/// A participant writing with an exactly-once (transactional) producer leaves a commit
/// marker after its last record: no message is ever read at that offset, yet the partition
/// has caught up, so its clock follows wall time and a telemetry gap fires on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_ending_in_a_transaction_marker_is_caught_up() {
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
    let broker = Broker::start();
    let name = "eos";
    broker.create_topic(&format!("{name}.events"), 1);
    let text =
        config_text(&broker, name, 1).replace("telemetry_gap = \"off\"", "telemetry_gap = \"2s\"");
    let cfg = Config::from_toml(&text, None, false).expect("test config");
    let kafka = cfg.kafka.clone();
    let daemon = start(cfg).await;
    let producer: FutureProducer = broker
        .config()
        .set("transactional.id", "eos-participant")
        .create()
        .expect("transactional producer");
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    let mut seq = 0;
    let (key, value) = event(
        json!({"participant_id": "P1", "kind": "heartbeat"}),
        &mut seq,
    );
    producer
        .send(
            FutureRecord::to(&format!("{name}.events"))
                .key(&key)
                .payload(&value),
            Duration::from_secs(10),
        )
        .await
        .expect("sent");
    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    let alerts = collect(
        &kafka,
        &kafka.alerts_topic,
        "eos-alerts",
        Duration::from_secs(30),
        |seen| seen.iter().any(|m| payload(m)["type"] == "telemetry_gap"),
    )
    .await;
    let gap = alerts
        .iter()
        .map(payload)
        .find(|a| a["type"] == "telemetry_gap")
        .unwrap();
    assert_eq!(gap["participant_id"], "P1");
    assert_eq!(gap["status"], "firing");
    daemon.stop().await;
}
