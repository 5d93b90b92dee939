//! `regwatch demo`: the whole daemon on an embedded Kafka (librdkafka's mock cluster), fed by
//! a synthetic sandbox with scripted episodes modelled on real incidents, its alerts printed
//! as they fire and its metrics served. Nothing to install.
//!
//! The episodes report outages that started a few minutes before the demo, so the clock
//! crosses the grid's thresholds within the first minute: escalation with no new report is
//! visible without waiting. The example participants trade on an around-the-clock demo
//! calendar, so that this holds at any hour the demo is run; one more broker, SH-BRK-0003, on
//! `cn-stock`, had its trading fully down over the lunch break of the latest trading day
//! (11:20-13:15 Beijing). Its two reports are on the events topic before the daemon starts,
//! with their record timestamps of that day: read as a backlog, they are graded as they
//! happened, at 115 wall-clock minutes but 25 of trading (`larger`, eligible).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use serde_json::{json, Value};

use crate::config::Config;
use crate::ingest::{mock::MockBroker, tail};
use crate::simulate::{Generator, Mix};
use crate::time::{wall_now, Timestamp};

/// The demo's sandbox: the example configuration's participants and engine settings.
const DEMO_CONFIG: &str = include_str!("../config/regwatch.toml");

/// The demo's calendars: the built-in ones and one that trades around the clock.
const ALWAYS_CALENDAR: &str = r#"
[closures.demo-none]
years = [2026, 2027, 2028, 2029, 2030]
dates = []

[[calendar]]
name = "demo-always"
utc_offset = "+08:00"
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
sessions = ["00:00-24:00"]
closures = "demo-none"
"#;

/// The broker whose lunch-break outage is read as a backlog.
const LUNCH_BROKER: &str = r#"
[[participants]]
id = "SH-BRK-0003"
name = "Lunch Example Securities"
kind = "broker"
effective_customers = 1800000
calendar = "cn-stock"
"#;

/// The configuration text of the demo: every example participant on `demo-always`, the
/// lunch broker on `cn-stock`, the calendars read from `calendars`.
fn demo_config(calendars: &std::path::Path) -> String {
    let own: String = DEMO_CONFIG
        .lines()
        .filter(|l| !l.trim_start().starts_with("calendar ="))
        .map(|l| format!("{l}\n"))
        .collect();
    own.replace(
        "[[participants]]\n",
        "[[participants]]\ncalendar = \"demo-always\"\n",
    )
    .replacen(
        "[rules]\n",
        &format!(
            "[rules]\ncalendars = {:?}\n",
            calendars.display().to_string()
        ),
        1,
    ) + LUNCH_BROKER
}

/// 11:20 Beijing (UTC+8) of the latest cn-stock trading day whose afternoon session has
/// begun by `now` (at most two weeks back).
fn latest_lunch(now: Timestamp) -> Timestamp {
    let calendars = crate::calendar::Calendars::shared_builtin();
    let stock = calendars.get(
        calendars
            .id("cn-stock")
            .unwrap_or(crate::calendar::CalendarId(0)),
    );
    const DAY: i64 = 86_400_000;
    // 11:20 Beijing is 03:20 UTC.
    let today = now.millis().div_euclid(DAY) * DAY + (3 * 60 + 20) * 60_000;
    (0..15)
        .map(|d| Timestamp(today - d * DAY))
        .find(|t| stock.in_session(*t) && t.plus_millis(115 * 60_000) < now)
        .unwrap_or(Timestamp(today - DAY))
}

/// The lunch broker's two reports, its heartbeats every 15 s of the lunch break (the demo's
/// telemetry gap is 20 s) and one of now, with their record timestamps, in order.
fn lunch_backlog(now: Timestamp) -> Vec<(i64, Value)> {
    let start = latest_lunch(now);
    let at = |minutes: i64| start.plus_millis(minutes * 60_000);
    let report = |minutes: i64, status: &str, extra: Value| {
        let mut v = json!({"schema": "regwatch.event.v1", "participant_id": "SH-BRK-0003",
            "event_id": format!("lunch-{minutes}"), "kind": "infosec", "incident_id": "LUNCH-OUTAGE",
            "category": "outage", "system": "trading", "scope": "full", "status": status,
            "occurred_at": at(minutes).to_string()});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        (at(minutes).millis(), v)
    };
    let heartbeat = |t: Timestamp, id: String| {
        (
            t.millis(),
            json!({"schema": "regwatch.event.v1", "participant_id": "SH-BRK-0003",
                "event_id": id, "kind": "heartbeat", "occurred_at": t.to_string()}),
        )
    };
    let mut events: Vec<(i64, Value)> = (0..=115 * 4)
        .map(|i| heartbeat(start.plus_millis(i * 15_000), format!("lunch-hb-{i}")))
        .collect();
    events.push(report(
        2,
        "open",
        json!({"started_at": start.to_string(), "affected_investors": 6400}),
    ));
    events.push(report(115, "resolved", json!({})));
    events.sort_by_key(|(t, _)| *t);
    events.push(heartbeat(now, "lunch-live".into()));
    events
}

pub struct Options {
    pub duration: Option<Duration>,
    pub http_port: u16,
    /// Background events per second besides the episodes.
    pub rate: f64,
}

/// One scripted report: when (seconds into the demo), key, and the event's fields.
struct Step {
    at_s: u64,
    event: Value,
}

fn minutes_ago(now: Timestamp, minutes: f64) -> String {
    now.plus_millis(-(minutes * 60_000.0) as i64).to_string()
}

/// Episodes modelled on shared/DOMAIN.md's real incidents, relative to `t0`.
fn episodes(t0: Timestamp) -> Vec<Step> {
    let e = |at_s: u64, v: Value| Step { at_s, event: v };
    vec![
        // Record-volume day at an exchange (SSE 2024-09-27): order confirmations delayed for
        // 35% of units since 9.5 minutes ago -> larger now, major at 10 min, extraordinary at 20.
        e(
            3,
            json!({"participant_id": "SZ-EXC-01", "kind": "infosec", "incident_id": "CONFIRM-DELAY",
            "category": "degradation", "system": "trading", "scope": "partial", "affected_units_pct": 35,
            "started_at": minutes_ago(t0, 9.5)}),
        ),
        // UPS failure at a broker (CITIC Securities 2023-06-19): full trading outage since 4.7
        // minutes ago -> larger at 5 minutes by the clock; resolved a minute later.
        e(
            5,
            json!({"participant_id": "GZ-BRK-0001", "kind": "infosec", "incident_id": "UPS-FAILURE",
            "category": "outage", "system": "trading", "scope": "full", "affected_investors": 3200,
            "started_at": minutes_ago(t0, 4.7)}),
        ),
        e(
            70,
            json!({"participant_id": "GZ-BRK-0001", "kind": "infosec", "incident_id": "UPS-FAILURE",
            "category": "outage", "status": "resolved", "affected_investors": 8100, "orders_delayed": 412}),
        ),
        // Credential leak at a fund manager (cf. Robinhood 2021): 40 records, then 1.2 million.
        e(
            10,
            json!({"participant_id": "SZ-FND-0001", "kind": "infosec", "incident_id": "LEAK-7",
            "category": "data_leak", "record_type": "credentials", "records_exposed": 40}),
        ),
        e(
            25,
            json!({"participant_id": "SZ-FND-0001", "kind": "infosec", "incident_id": "LEAK-7",
            "status": "update", "category": "data_leak", "record_type": "credentials",
            "records_exposed": 1_200_000, "affected_investors": 1_200_000}),
        ),
        // Runaway arbitrage algorithm (Everbright 2013-08-16).
        e(
            15,
            json!({"participant_id": "GZ-BRK-0002", "kind": "trading", "incident_id": "ETF-ARB-1",
            "category": "runaway_algo", "instrument": "510050.SH", "venue": "SSE", "orders": 26082,
            "peak_orders_per_sec": 13041}),
        ),
        e(
            18,
            json!({"participant_id": "GZ-BRK-0002", "kind": "trading", "incident_id": "ETF-ARB-1",
            "status": "update", "category": "runaway_algo", "orders": 26082, "peak_orders_per_sec": 13041,
            "order_notional_cny": 2.34e10, "executed_notional_cny": 7.27e9, "index_move_pct": 5.96,
            "price_move_pct": 10.0}),
        ),
        // Futures exchange permissions closed (SHFE 2018-11-29): larger at 3 minutes.
        e(
            20,
            json!({"participant_id": "SH-FEX-01", "kind": "infosec", "incident_id": "PERM-CLOSED",
            "category": "outage", "system": "trading", "scope": "full", "started_at": minutes_ago(t0, 2.6)}),
        ),
        // Malformed and misaddressed messages: dead-lettered with their reasons.
        e(
            8,
            json!({"participant_id": "XX-UNREGISTERED", "kind": "heartbeat"}),
        ),
        e(
            9,
            json!({"participant_id": "SH-FUT-0001", "kind": "infosec", "category": "outage"}),
        ),
    ]
}

fn stamp(mut v: Value, seq: usize, now: Timestamp) -> (String, Vec<u8>) {
    let key = v["participant_id"].as_str().unwrap_or_default().to_string();
    v["schema"] = json!("regwatch.event.v1");
    v["event_id"] = json!(format!("demo-{seq}"));
    v["occurred_at"] = json!(now.to_string());
    (key, serde_json::to_vec(&v).unwrap_or_default())
}

/// Runs the demo until `opts.duration` passes or Ctrl-C.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let broker = MockBroker::start(1)?;
    let hook = DemoHook::start().await?;
    let calendars = std::env::temp_dir().join(format!(
        "regwatch-demo-calendars-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &calendars,
        format!("{}\n{ALWAYS_CALENDAR}", crate::calendar::DEFAULT_CALENDARS),
    )?;
    let mut cfg = Config::from_toml(
        &format!("{}\n{}", demo_config(&calendars), hook.config()),
        None,
        false,
    )?;
    cfg.kafka.brokers = broker.bootstrap();
    cfg.kafka.group_id = "regwatch-demo".into();
    cfg.kafka.topic_partitions = 3;
    cfg.kafka.replication_factor = Some(1);
    cfg.engine.telemetry_gap_ms = 20_000;
    // Supervisors' view: incidents are alerted from `larger` up.
    cfg.engine.min_alert_level = crate::score::Level::Larger;
    cfg.http.listen = Some(([127, 0, 0, 1], opts.http_port).into());
    let topic = match &cfg.kafka.topics {
        crate::config::TopicSelection::List(l) => l.first().cloned().unwrap_or_default(),
        crate::config::TopicSelection::Pattern(_) => "sandbox.events".into(),
    };
    // The mock cluster has no admin API: create every topic up front.
    for t in [
        topic.as_str(),
        cfg.kafka.alerts_topic.as_str(),
        cfg.kafka.dead_letter_topic.as_str(),
        cfg.kafka.state_topic.as_str(),
        cfg.kafka.reminders_topic.as_str(),
        cfg.delivery.dead_letter_topic.as_str(),
        cfg.history.topic.as_str(),
    ] {
        broker.create_topic(t, 3)?;
    }
    cfg.kafka.create_topics = false;
    let kafka = cfg.kafka.clone();
    let registry = Arc::new(cfg.registry.clone());

    println!(
        "regwatch demo: an embedded Kafka at {}, {} participants, topic {topic}",
        kafka.brokers,
        registry.len()
    );
    // Yesterday's lunch break (or the latest trading day's), on the topic before the daemon
    // reads it: a backlog.
    let backlog =
        crate::ingest::client::producer(&kafka).create::<rdkafka::producer::FutureProducer>()?;
    let values: Vec<(i64, Vec<u8>)> = lunch_backlog(wall_now())
        .into_iter()
        .map(|(ts, v)| (ts, serde_json::to_vec(&v).unwrap_or_default()))
        .collect();
    // Queued at once (one key, so in order), then awaited together.
    let sends: Vec<_> = values
        .iter()
        .map(|(ts, value)| {
            backlog.send(
                rdkafka::producer::FutureRecord::to(&topic)
                    .key("SH-BRK-0003")
                    .payload(value)
                    .timestamp(*ts),
                Duration::from_secs(10),
            )
        })
        .collect();
    for sent in futures_util::future::join_all(sends).await {
        sent.map_err(|(e, _)| e)?;
    }
    // Closed while the cluster is up: a client outliving the mock cluster waits for it.
    drop(values);
    drop(backlog);
    let daemon = crate::app::spawn(cfg).await?;
    if let Some(addr) = daemon.running.http {
        println!("metrics: http://{addr}/metrics   incident board: http://{addr}/board   incidents: http://{addr}/incidents   (Ctrl-C to stop)");
    }
    println!(
        "on-call webhook (major and above, signed): {}\n",
        hook.url()
    );

    let printer = tokio::spawn(print_alerts(kafka.clone()));
    let t0 = wall_now();
    let traffic = tokio::spawn(traffic(kafka.clone(), registry, topic, t0, opts.rate));
    match opts.duration {
        Some(d) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    traffic.abort();
    println!("\nstopping: draining partitions, committing offsets");
    let metrics = daemon.running.metrics.clone();
    let result = daemon.stop().await;
    printer.abort();
    // Their clients are closed while the embedded cluster still answers: a consumer
    // closed after it leaves its group's coordinator for gone, which takes ~45 s.
    let _ = traffic.await;
    let _ = printer.await;
    let m = &metrics;
    let w = &m.webhook;
    println!(
        "webhooks: {} delivered to {}, {} attempts, signatures verified by the receiver: {}",
        w.delivered.with_label_values(&[DEMO_RECEIVER]).get(),
        DEMO_RECEIVER,
        w.attempts.with_label_values(&[DEMO_RECEIVER]).get(),
        hook.verified.load(std::sync::atomic::Ordering::Relaxed),
    );
    println!(
        "demo done: {} events graded, {} heartbeats, {} rejected (dead-lettered), {} alerts",
        m.events.with_label_values(&["graded"]).get(),
        m.events.with_label_values(&["heartbeat"]).get(),
        m.events.with_label_values(&["rejected"]).get(),
        m.alerts.with_label_values(&["incident", "firing"]).get()
            + m.alerts.with_label_values(&["incident", "resolved"]).get()
            + m.alerts
                .with_label_values(&["telemetry_gap", "firing"])
                .get()
            + m.alerts
                .with_label_values(&["telemetry_gap", "resolved"])
                .get(),
    );
    drop(broker);
    let _ = std::fs::remove_file(&calendars);
    result
}

/// Heartbeats from everyone but one participant (which falls silent), background traffic,
/// and the scripted episodes on time.
async fn traffic(
    kafka: crate::config::KafkaSettings,
    registry: Arc<crate::registry::Registry>,
    topic: String,
    t0: Timestamp,
    rate: f64,
) {
    let mut steps = episodes(t0);
    steps.sort_by_key(|s| s.at_s);
    let producer = match crate::ingest::client::producer(&kafka)
        .create::<rdkafka::producer::FutureProducer>()
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "demo producer");
            return;
        }
    };
    // Background traffic from everyone but the participant that will fall silent.
    let others = crate::registry::Registry::new(
        registry
            .iter()
            .filter(|(_, p)| &*p.id != "BJ-SVC-0001")
            .map(|(_, p)| p.clone())
            .collect(),
    )
    .unwrap_or_default();
    let mut gen = Generator::new(
        &others,
        7,
        Mix {
            bad: 0.0,
            ..Mix::default()
        },
    );
    let mut seq = 0usize;
    let mut next_step = 0;
    let mut second = 0u64;
    loop {
        let now = wall_now();
        // Heartbeats every 5 s; BJ-SVC-0001 goes silent after 10 s and is back at 60 s.
        if second.is_multiple_of(5) {
            for (_, p) in registry.iter() {
                if &*p.id == "BJ-SVC-0001" && (10..60).contains(&second) {
                    continue;
                }
                seq += 1;
                let (key, value) = stamp(
                    json!({"participant_id": &*p.id, "kind": "heartbeat"}),
                    seq,
                    now,
                );
                send(&producer, &topic, &key, &value).await;
            }
        }
        while next_step < steps.len() && steps[next_step].at_s <= second {
            seq += 1;
            let (key, mut value) = stamp(steps[next_step].event.clone(), seq, now);
            if steps[next_step].at_s == 8 {
                // A key that does not match the payload's participant.
                value = serde_json::to_vec(&json!({"schema": "regwatch.event.v1", "event_id": "demo-spoof",
                    "participant_id": "GZ-BRK-0001", "kind": "heartbeat", "occurred_at": now.to_string()}))
                .unwrap_or_default();
                send(&producer, &topic, "GZ-BRK-0002", &value).await;
            }
            send(&producer, &topic, &key, &value).await;
            next_step += 1;
        }
        for _ in 0..rate as u64 {
            let m = gen.next(wall_now());
            let (key, value) = (m.key.to_string(), m.value.to_vec());
            send(&producer, &topic, &key, &value).await;
        }
        second += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn send(producer: &rdkafka::producer::FutureProducer, topic: &str, key: &str, value: &[u8]) {
    let record = crate::ingest::output::Record {
        topic,
        partition: None,
        key: key.as_bytes(),
        payload: Some(value),
        headers: rdkafka::message::OwnedHeaders::new(),
    };
    if let Err(e) = crate::ingest::output::send(producer, &record).await {
        tracing::warn!(error = %e, "demo event not sent");
    }
}

const DEMO_RECEIVER: &str = "demo-oncall";
const DEMO_KEY_ID: &str = "demo-2026-11";
const DEMO_KEY: &str = "demo-signing-key-not-a-secret";

/// An on-call receiver inside the demo: it verifies each request's signature as a real
/// receiver would and prints what it got.
struct DemoHook {
    addr: std::net::SocketAddr,
    verified: Arc<std::sync::atomic::AtomicU64>,
}

impl DemoHook {
    async fn start() -> anyhow::Result<DemoHook> {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        let verified = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = verified.clone();
        let handler = move |headers: HeaderMap, body: Bytes| {
            let count = count.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let ts: i64 = h(crate::delivery::sign::TIMESTAMP_HEADER)
                    .parse()
                    .unwrap_or(0);
                let ok = crate::delivery::sign::verify_v2(
                    &[(DEMO_KEY_ID, DEMO_KEY.as_bytes())],
                    ts,
                    &h("idempotency-key"),
                    &h(crate::delivery::sign::SIGNATURE_V2_HEADER),
                    &body,
                    wall_now().millis() / 1000,
                    300,
                );
                let alert: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                match ok {
                    Ok(()) => {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        println!(
                            "          -> webhook {DEMO_RECEIVER}: {} {} {} (signature ok, Idempotency-Key {})",
                            alert["participant_id"].as_str().unwrap_or("-"),
                            alert["incident_id"].as_str().unwrap_or("-"),
                            alert["trigger"].as_str().unwrap_or("-"),
                            h("idempotency-key"),
                        );
                        StatusCode::OK
                    }
                    Err(e) => {
                        println!("          -> webhook {DEMO_RECEIVER}: REFUSED ({e})");
                        StatusCode::UNAUTHORIZED
                    }
                }
            }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(DemoHook { addr, verified })
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn config(&self) -> String {
        format!(
            "[[delivery.receivers]]\nname = \"{DEMO_RECEIVER}\"\nurl = \"{}\"\nsigning_keys = [{{ id = \"{DEMO_KEY_ID}\", secret = \"{DEMO_KEY}\" }}]\n[[delivery.routes]]\nreceivers = [\"{DEMO_RECEIVER}\"]\nmin_level = \"major\"\ntypes = [\"incident\"]\n",
            self.url()
        )
    }
}

/// Prints every alert from the alerts topic as one readable line.
async fn print_alerts(kafka: crate::config::KafkaSettings) {
    let follower = match tail::follower(&kafka, &kafka.alerts_topic, "regwatch-demo-printer") {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "demo alert printer");
            return;
        }
    };
    loop {
        let Some(m) = tail::next(&follower, Duration::from_secs(3600)).await else {
            continue;
        };
        let Some(alert) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<Value>(p).ok())
        else {
            continue;
        };
        println!("{}", describe(&alert));
    }
}

fn describe(a: &Value) -> String {
    let s = |k: &str| a[k].as_str().unwrap_or("-").to_string();
    let at = s("at");
    let time = at.get(11..19).unwrap_or(&at);
    if a["type"] == "telemetry_gap" {
        return format!(
            "{time}  GAP   {:<8} {:<12} {}",
            s("status"),
            s("participant_id"),
            s("summary")
        );
    }
    let minutes = |k: &str| a[k].as_f64().map_or("-".to_string(), |m| format!("{m:.0}"));
    format!(
        "{time}  {:<5} {:<8} {:<12} {:<14} {:<13} {:<10} market {} / investors {}, {} min ({} of trading)  [{}]",
        if s("exemption") == "ineligible" {
            "INELIG"
        } else {
            ""
        },
        s("status"),
        s("participant_id"),
        s("incident_id"),
        s("level"),
        s("trigger"),
        a["market_order"]["level"].as_str().unwrap_or("-"),
        a["investor_loss"]["level"].as_str().unwrap_or("-"),
        minutes("duration_minutes"),
        minutes("trading_minutes"),
        a["market_order"]["reasons"]
            .as_array()
            .into_iter()
            .chain(a["investor_loss"]["reasons"].as_array())
            .flatten()
            .filter(|r| r["rule"] != "contract.floor")
            .map(|r| format!(
                "{}: {} {} {} {}{}",
                r["rule"].as_str().unwrap_or(""),
                r["metric"].as_str().unwrap_or(""),
                r["observed"].as_f64().unwrap_or_default(),
                r["op"].as_str().unwrap_or(""),
                r["threshold"].as_f64().unwrap_or_default(),
                r["basis"]
                    .as_str()
                    .map_or(String::new(), |b| format!(" ({b})"))
            ))
            .collect::<Vec<_>>()
            .join("; "),
    )
}
