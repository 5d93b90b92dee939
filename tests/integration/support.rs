//! Test support: a sandbox around one engine, event builders and the engine clock in minutes.

use std::sync::Arc;

use regwatch::alert::Alert;
use regwatch::decode::Reject;
use regwatch::registry::{Participant, ParticipantKind, Registry};
use regwatch::score::{ClockMode, Engine, EngineSettings, Level, Outcome, Rules};
use regwatch::time::Timestamp;
use serde_json::{json, Map, Value};

/// 2026-03-02T09:30:00+08:00, the opening of a trading day, in milliseconds.
pub const BASE_MS: i64 = 1_772_415_000_000;

/// The instant `minutes` after [`BASE_MS`].
pub fn at(minutes: f64) -> Timestamp {
    Timestamp(BASE_MS + (minutes * 60_000.0).round() as i64)
}

pub fn ts(minutes: f64) -> String {
    at(minutes).to_string()
}

pub fn participant(id: &str, kind: ParticipantKind, effective_customers: u64) -> Participant {
    Participant {
        id: id.into(),
        name: format!("{id} name").into(),
        kind,
        effective_customers,
        calendar: kind.default_calendar().into(),
        topics: Vec::new(),
    }
}

pub struct Sandbox {
    pub engine: Engine,
    pub alerts: Vec<Alert>,
    next_id: u64,
}

impl Sandbox {
    pub fn with(participants: Vec<Participant>, settings: EngineSettings, rules: Rules) -> Sandbox {
        let registry = Registry::new(participants).expect("valid registry");
        Sandbox {
            engine: Engine::new(Arc::new(registry), Arc::new(rules), settings),
            alerts: Vec::new(),
            next_id: 0,
        }
    }

    /// One participant `P` of `kind`, with `settings`.
    pub fn one(kind: ParticipantKind, customers: u64, settings: EngineSettings) -> Sandbox {
        Sandbox::with(
            vec![participant("P", kind, customers)],
            settings,
            default_rules(),
        )
    }

    /// One broker `P` with many customers, default settings, telemetry gaps off.
    pub fn broker() -> Sandbox {
        Sandbox::with(
            vec![participant("P", ParticipantKind::Broker, 2_500_000)],
            quiet(),
            default_rules(),
        )
    }

    /// Sends an event; `schema` and a fresh `event_id` are filled in unless given.
    pub fn send(&mut self, event: Value) -> Result<Outcome, Reject> {
        let mut obj: Map<String, Value> = match event {
            Value::Object(m) => m,
            other => panic!("test event must be an object, got {other}"),
        };
        obj.entry("schema").or_insert(json!("regwatch.event.v1"));
        if !obj.contains_key("event_id") {
            self.next_id += 1;
            obj.insert("event_id".into(), json!(format!("ev-{}", self.next_id)));
        }
        let bytes = serde_json::to_vec(&Value::Object(obj)).expect("serialisable");
        self.engine.process(&bytes, &mut self.alerts)
    }

    pub fn advance(&mut self, minutes: f64) {
        self.engine.advance_to(at(minutes), &mut self.alerts);
    }

    /// The alerts emitted since the last call.
    pub fn take(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.alerts)
    }
}

/// Default settings with telemetry gaps off, so tests see only incident alerts.
pub fn quiet() -> EngineSettings {
    EngineSettings {
        telemetry_gap_ms: 0,
        clock: ClockMode::EventTime,
        ..EngineSettings::default()
    }
}

/// An infosec report of participant `P`, incident `I`, at `minutes`, with extra fields.
pub fn infosec(minutes: f64, category: &str, extra: Value) -> Value {
    merge(
        json!({"participant_id": "P", "kind": "infosec", "occurred_at": ts(minutes),
               "incident_id": "I", "category": category}),
        extra,
    )
}

/// A trading-anomaly report of participant `P`, incident `I`, at `minutes`.
pub fn trading(minutes: f64, category: &str, extra: Value) -> Value {
    merge(
        json!({"participant_id": "P", "kind": "trading", "occurred_at": ts(minutes),
               "incident_id": "I", "category": category}),
        extra,
    )
}

pub fn heartbeat(pid: &str, minutes: f64) -> Value {
    json!({"participant_id": pid, "kind": "heartbeat", "occurred_at": ts(minutes)})
}

pub fn merge(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    base
}

/// (investor_loss, market_order) of an alert.
pub fn levels(a: &Alert) -> (Level, Level) {
    (a.investor_loss.level, a.market_order.level)
}

/// The built-in grid, compiled once for the whole test binary.
pub fn default_rules() -> Rules {
    static RULES: std::sync::OnceLock<Rules> = std::sync::OnceLock::new();
    RULES.get_or_init(Rules::default_grid).clone()
}

/// Polls `done` every 100 ms until it holds; fails naming `what` after `within`. For what
/// the daemon does a moment after what a test waited for (a counter moved once the
/// receiver's answer is read, a record read by another consumer group).
pub async fn eventually(what: &str, within: std::time::Duration, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
