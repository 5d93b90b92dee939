//! Fixtures shared by the fuzz targets: the example configuration's registry, an engine to
//! feed what a target produced, and the invariants several targets check.
//!
//! Every target calls a real entry point of regwatch on arbitrary bytes. libFuzzer reports a
//! panic (including a failed invariant below and, with debug assertions on, an arithmetic
//! overflow), a stack overflow, a timeout or an allocation beyond its limit as a crash.

use std::sync::{Arc, OnceLock};

use regwatch::alert::Alert;
use regwatch::config::Config;
use regwatch::delivery::payload;
use regwatch::registry::Registry;
use regwatch::score::{ClockMode, Engine, EngineSettings, Rules};

/// The shipped example configuration (eight participants, one of each kind).
pub const EXAMPLE_CONFIG: &str = include_str!("../../config/regwatch.toml");

/// The shipped example events (a trading day of the example sandbox).
pub const EXAMPLE_EVENTS: &str = include_str!("../../config/example-events.jsonl");

/// The example configuration, validated once per process.
pub fn example_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::from_toml(EXAMPLE_CONFIG, None, false).expect("config/regwatch.toml is valid")
    })
}

/// The example configuration's participant registry.
pub fn registry() -> Arc<Registry> {
    static REGISTRY: OnceLock<Arc<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| Arc::new(example_config().registry.clone()))
        .clone()
}

/// The built-in grid, compiled once.
pub fn default_rules() -> Arc<Rules> {
    static RULES: OnceLock<Arc<Rules>> = OnceLock::new();
    RULES
        .get_or_init(|| Arc::new(Rules::default_grid()))
        .clone()
}

/// A daemon-like engine over the example registry: external clock, changes tracked,
/// reminders and liveness on; small tables so that building one per input is cheap.
pub fn engine(rules: Arc<Rules>) -> Engine {
    let settings = EngineSettings {
        clock: ClockMode::External,
        dedup_window: 64,
        max_incidents: 64,
        max_open_per_participant: 16,
        track_changes: true,
        reminder_interval_ms: 60 * 60_000,
        liveness_retention_ms: 7 * 24 * 60 * 60_000,
        watch_all_from_start: false,
        ..EngineSettings::default()
    };
    Engine::new(registry(), rules, settings)
}

/// The incident events of the example day (heartbeats left out), in file order.
pub fn example_incident_events() -> &'static [&'static str] {
    static EVENTS: OnceLock<Vec<&'static str>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        EXAMPLE_EVENTS
            .lines()
            .filter(|l| !l.contains("\"heartbeat\""))
            .collect()
    })
}

/// What the engine writes to the alerts (or reminders) topic must be readable by the
/// outbox, with the same routing fields, and render as Alertmanager JSON.
pub fn check_alert_readable(alert: &Alert) {
    let json = alert.to_json();
    let parsed = payload::parse(json.as_bytes())
        .unwrap_or_else(|e| panic!("an engine alert does not read back: {e}: {json}"));
    assert_eq!(parsed.alert_id, alert.alert_id);
    assert_eq!(parsed.participant_id, alert.participant_id);
    assert_eq!(parsed.alert_type, alert.alert_type);
    assert_eq!(parsed.status, alert.status);
    assert_eq!(parsed.level, alert.level);
    assert_eq!(parsed.exemption, alert.exemption);
    assert_eq!(parsed.reminder, alert.reminder.map(u64::from));
    check_alertmanager(&parsed);
}

/// The Alertmanager body of a parsed alert is JSON with one alert of the same status.
pub fn check_alertmanager(parsed: &payload::Parsed) {
    for external_url in ["", "https://regwatch.example/"] {
        let body = payload::alertmanager(parsed, "oncall", external_url);
        let v: serde_json::Value =
            serde_json::from_slice(&body).expect("the alertmanager body is JSON");
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], parsed.status.as_str());
        assert_eq!(v["alerts"].as_array().map(Vec::len), Some(1));
    }
}
