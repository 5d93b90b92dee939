//! The daemon's Prometheus metrics: created once at start-up into one registry; hot paths
//! keep pre-resolved handles and only increment them. Label values come from closed sets
//! (outcomes, rejection codes, alert types) so cardinality is fixed.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::decode::Reject;

pub struct Metrics {
    pub registry: Registry,
    pub events: IntCounterVec,
    pub rejected: IntCounterVec,
    pub alerts: IntCounterVec,
    pub dead_letters: IntCounter,
    pub produce_retries: IntCounterVec,
    pub partitions: IntGauge,
    pub open_incidents: IntGauge,
    pub state_flushes: IntCounter,
    pub state_records: IntCounter,
    pub state_restored: IntCounter,
    pub commits: IntCounterVec,
}

/// Event outcomes, the label values of `regwatch_events_total`.
pub const OUTCOMES: [&str; 5] = [
    "graded",
    "heartbeat",
    "duplicate",
    "after_resolution",
    "rejected",
];

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(v.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    v
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

impl Metrics {
    /// Builds and registers every metric. Names are constants: a failure here is a build
    /// defect, caught by the test suite, never an input problem.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let m = Metrics {
            events: counter_vec(
                &registry,
                "regwatch_events_total",
                "Events consumed, by outcome.",
                &["outcome"],
            ),
            rejected: counter_vec(
                &registry,
                "regwatch_rejected_events_total",
                "Events rejected and dead-lettered, by reason.",
                &["reason"],
            ),
            alerts: counter_vec(
                &registry,
                "regwatch_alerts_total",
                "Alerts emitted, by type and status.",
                &["type", "status"],
            ),
            dead_letters: counter(
                &registry,
                "regwatch_dead_letters_total",
                "Records written to the dead-letter topic.",
            ),
            produce_retries: counter_vec(
                &registry,
                "regwatch_produce_retries_total",
                "Records produced again after a failed delivery, by stream.",
                &["stream"],
            ),
            partitions: gauge(
                &registry,
                "regwatch_assigned_partitions",
                "Event partitions this instance owns.",
            ),
            open_incidents: gauge(
                &registry,
                "regwatch_open_incidents",
                "Open incidents held by this instance.",
            ),
            state_flushes: counter(
                &registry,
                "regwatch_state_flushes_total",
                "State flushes completed (state records acknowledged, offsets committed).",
            ),
            state_records: counter(
                &registry,
                "regwatch_state_records_total",
                "Records written to the state topic.",
            ),
            state_restored: counter(
                &registry,
                "regwatch_state_records_restored_total",
                "State records loaded when taking over a partition.",
            ),
            commits: counter_vec(
                &registry,
                "regwatch_offset_commits_total",
                "Offset commits, by result.",
                &["result"],
            ),
            registry,
        };
        // Pre-create every label value so dashboards see zeros, not gaps.
        for o in OUTCOMES {
            m.events.with_label_values(&[o]);
        }
        for r in Reject::CODES {
            m.rejected.with_label_values(&[r]);
        }
        for t in ["incident", "telemetry_gap"] {
            for s in ["firing", "resolved"] {
                m.alerts.with_label_values(&[t, s]);
            }
        }
        for s in ["alerts", "dead_letters", "state"] {
            m.produce_retries.with_label_values(&[s]);
        }
        for r in ["ok", "error"] {
            m.commits.with_label_values(&[r]);
        }
        m
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = encoder.encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
