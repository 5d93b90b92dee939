//! The daemon's Prometheus metrics: created once at start-up into one registry; hot paths
//! keep pre-resolved handles and only increment them. Label values come from closed sets
//! (outcomes, rejection codes, alert types) so cardinality is fixed.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

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
    pub webhook: WebhookMetrics,
}

/// Webhook delivery, per receiver (label values come from the configured receiver names).
pub struct WebhookMetrics {
    pub attempts: IntCounterVec,
    pub delivered: IntCounterVec,
    pub reminders: IntCounterVec,
    pub failures: IntCounterVec,
    pub retries: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub skipped: IntCounterVec,
    pub pending: IntGaugeVec,
    pub circuit: IntGaugeVec,
    /// From the alert's record timestamp to the receiver's 2xx, retries included.
    pub latency: HistogramVec,
    /// One HTTP request.
    pub request: HistogramVec,
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

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(v.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    v
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let v = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(v.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    v
}

impl WebhookMetrics {
    fn new(registry: &Registry) -> WebhookMetrics {
        let r = &["receiver"];
        WebhookMetrics {
            attempts: counter_vec(
                registry,
                "regwatch_webhook_attempts_total",
                "HTTP requests made to a receiver.",
                r,
            ),
            delivered: counter_vec(
                registry,
                "regwatch_webhook_delivered_total",
                "Alerts (and reminders) a receiver acknowledged with 2xx.",
                r,
            ),
            reminders: counter_vec(
                registry,
                "regwatch_webhook_reminders_delivered_total",
                "Reminders a receiver acknowledged with 2xx.",
                r,
            ),
            failures: counter_vec(
                registry,
                "regwatch_webhook_failures_total",
                "Failed requests, by cause (timeout, connect, http_5xx, http_429, http_4xx, other).",
                &["receiver", "cause"],
            ),
            retries: counter_vec(
                registry,
                "regwatch_webhook_retries_total",
                "Requests made again after a transient failure.",
                r,
            ),
            dead_letters: counter_vec(
                registry,
                "regwatch_webhook_dead_letters_total",
                "Alerts dead-lettered for a receiver, by reason (http_status, malformed_alert).",
                &["receiver", "reason"],
            ),
            skipped: counter_vec(
                registry,
                "regwatch_webhook_not_routed_total",
                "Alerts read by a receiver's outbox that no route sends to it.",
                r,
            ),
            pending: gauge_vec(
                registry,
                "regwatch_webhook_pending",
                "Alerts read and not yet delivered or dead-lettered, per receiver.",
                r,
            ),
            circuit: gauge_vec(
                registry,
                "regwatch_webhook_circuit_state",
                "Circuit breaker state per receiver: 0 closed, 1 open, 2 half-open.",
                r,
            ),
            latency: histogram_vec(
                registry,
                "regwatch_webhook_delivery_seconds",
                "From an alert's record timestamp to its 2xx acknowledgement, retries included.",
                r,
                &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0],
            ),
            request: histogram_vec(
                registry,
                "regwatch_webhook_request_seconds",
                "Duration of one HTTP request to a receiver.",
                r,
                &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            ),
        }
    }

    /// Creates every series of `receiver` so dashboards see zeros, not gaps.
    pub fn touch(&self, receiver: &str) {
        for v in [
            &self.attempts,
            &self.delivered,
            &self.reminders,
            &self.retries,
            &self.skipped,
        ] {
            v.with_label_values(&[receiver]);
        }
        for c in crate::delivery::Cause::ALL {
            self.failures.with_label_values(&[receiver, c.as_str()]);
        }
        for r in ["http_status", "malformed_alert"] {
            self.dead_letters.with_label_values(&[receiver, r]);
        }
        self.pending.with_label_values(&[receiver]);
        self.circuit.with_label_values(&[receiver]);
        self.latency.with_label_values(&[receiver]);
        self.request.with_label_values(&[receiver]);
    }
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
            webhook: WebhookMetrics::new(&registry),
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
