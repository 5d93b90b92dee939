//! The daemon's Prometheus metrics: created once at start-up into one registry; hot paths
//! keep pre-resolved handles and only increment them. Label values come from closed sets
//! (outcomes, rejection codes, alert types, levels, stages) and the configured participant
//! registry and receivers, so cardinality is fixed; the per-partition lag series exist only
//! for owned partitions. Stage-latency quantiles come from hdrhistograms that the workers
//! merge into two rolling one-minute windows.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram as Hdr;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::decode::Reject;

pub struct Metrics {
    pub registry: Registry,
    pub events: IntCounterVec,
    pub rejected: IntCounterVec,
    pub alerts: IntCounterVec,
    pub dead_letters: IntCounter,
    /// People's actions by kind and outcome (accepted, applied, refused, forbidden, invalid,
    /// expired, unknown_incident, resolved, unknown_participant, unknown_silence,
    /// unknown_receiver).
    pub actions: IntCounterVec,
    pub produce_retries: IntCounterVec,
    pub partitions: IntGauge,
    /// Partitions of the subscribed events topics in the cluster (the broker probe's
    /// metadata): what a complete incident list covers.
    pub source_partitions: IntGauge,
    pub open_incidents: IntGauge,
    pub state_flushes: IntCounter,
    pub state_records: IntCounter,
    pub state_restored: IntCounter,
    /// State records a restore refused: no valid `regwatch.mac` (`kafka.record_key`).
    pub state_unauthenticated: IntCounter,
    /// State records written again, signed, after a restore (unsigned ones accepted once,
    /// authentic ones a refused record came after).
    pub state_resigned: IntCounter,
    /// Partitions whose state is being read back before their events are consumed.
    pub restoring: IntGauge,
    pub restore_failures: IntCounter,
    /// History records the desk read, by outcome (`folded`, `refused`: no valid MAC,
    /// `unreadable`), the incident stories it holds and those it let go at its bound.
    pub history_records: IntCounterVec,
    pub history_incidents: IntGauge,
    pub history_evicted: IntCounter,
    /// Partition workers that ended abnormally (panicked), or producers that hit a fatal
    /// error: the process exits non-zero after either.
    pub worker_failures: IntCounterVec,
    pub commits: IntCounterVec,
    pub webhook: WebhookMetrics,
    pub supervision: SupervisionMetrics,
    pub ops: OpsMetrics,
}

/// What supervisors watch: events per participant, open incidents by level and axis,
/// exemption status, alerts by level, telemetry gaps.
pub struct SupervisionMetrics {
    pub participant_events: IntCounterVec,
    pub open_by_level: IntGaugeVec,
    pub open_ineligible: IntGaugeVec,
    pub ineligible_total: IntCounterVec,
    pub alerts_by_level: IntCounterVec,
    pub reminders: IntCounter,
    pub gaps: IntCounterVec,
    pub silent: IntGauge,
    pub liveness_forgotten: IntCounter,
    /// Telemetry gaps and reminders an operator's silence held (`what`).
    pub silenced: IntCounterVec,
}

/// What operators watch: stage latency, lag, build and configuration, reloads, the broker.
pub struct OpsMetrics {
    pub stage_latency: HistogramVec,
    pub stage_quantiles: GaugeVec,
    pub lag_messages: IntGaugeVec,
    pub lag_seconds: GaugeVec,
    /// Wall time minus the partition's engine clock, per owned partition.
    pub clock_lag_seconds: GaugeVec,
    /// Record timestamps that ran backwards, lay in the future or were missing, by kind.
    pub record_time_anomalies: IntCounterVec,
    /// Days from now each market calendar in use still covers (0: this year is not).
    pub calendar_coverage_days: IntGaugeVec,
    /// Minutes a market calendar in use did not cover the current year.
    pub calendar_uncovered: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub config_info: IntGaugeVec,
    pub config_loaded_at: IntGauge,
    pub rules_reloads: IntCounterVec,
    /// HTTP requests or TLS handshakes refused for want of credentials, by reason.
    pub http_auth_failures: IntCounterVec,
    /// Re-reads of the HTTP endpoint's TLS and token files after they changed, by result.
    pub http_reloads: IntCounterVec,
    /// 1 per (participant, events partition) this instance hears the participant on.
    pub participant_partitions: IntGaugeVec,
    pub broker_up: IntGauge,
    /// Stage latencies of the last one to two minutes, merged from the workers (hdrhistogram),
    /// for the quantile gauges.
    pub windows: Mutex<LatencyWindows>,
}

/// The stages whose latency is measured: decode (bytes to event), score (the engine), and
/// hand-off (an alert produced until the broker acknowledged it).
pub const STAGES: [&str; 3] = ["decode", "score", "handoff"];

/// The quantiles exported from the hdrhistograms (1 is the maximum).
pub const QUANTILES: [(&str, f64); 4] =
    [("0.5", 0.5), ("0.99", 0.99), ("0.999", 0.999), ("1", 1.0)];

/// A new histogram of nanoseconds, 1 ns to 60 s at 2 significant digits (1 % precision,
/// about 20 KB; longer values are clamped to 60 s).
pub fn latency_histogram() -> Hdr<u64> {
    Hdr::new_with_bounds(1, 60_000_000_000, 2).expect("constant bounds are valid")
}

/// Two consecutive windows of stage latencies: quantiles cover the previous window and the
/// current one, so they always describe the last one to two minutes.
pub struct LatencyWindows {
    started: Instant,
    current: Vec<Hdr<u64>>,
    previous: Vec<Hdr<u64>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl LatencyWindows {
    fn new() -> LatencyWindows {
        LatencyWindows {
            started: Instant::now(),
            current: STAGES.iter().map(|_| latency_histogram()).collect(),
            previous: STAGES.iter().map(|_| latency_histogram()).collect(),
        }
    }

    /// Moves on to a new window every minute; after two minutes or more with no rotation
    /// (no scrape, no traffic), both windows are stale and start empty.
    fn rotate(&mut self) {
        let elapsed = self.started.elapsed();
        if elapsed < WINDOW {
            return;
        }
        let fresh = || {
            STAGES
                .iter()
                .map(|_| latency_histogram())
                .collect::<Vec<_>>()
        };
        if elapsed >= 2 * WINDOW {
            self.previous = fresh();
            self.current = fresh();
        } else {
            self.previous = std::mem::replace(&mut self.current, fresh());
        }
        self.started = Instant::now();
    }

    /// Adds a worker's recordings of stage `i` (and resets them).
    pub fn merge(&mut self, i: usize, local: &mut Hdr<u64>) {
        self.rotate();
        if let Some(h) = self.current.get_mut(i) {
            // Both have the same bounds, so adding cannot fail.
            let _ = h.add(&*local);
        }
        local.reset();
    }

    /// The exported quantiles of every stage, in seconds: `[stage][quantile]`.
    pub fn quantiles(&mut self) -> Vec<[f64; 4]> {
        self.rotate();
        self.current
            .iter()
            .zip(&self.previous)
            .map(|(c, p)| {
                let mut h = c.clone();
                let _ = h.add(p);
                QUANTILES.map(|(_, q)| {
                    if h.is_empty() {
                        0.0
                    } else {
                        h.value_at_quantile(q) as f64 / 1e9
                    }
                })
            })
            .collect()
    }
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
    /// Alerts a lane gave up because its partition was revoked (the new owner delivers them).
    pub revoked: IntCounterVec,
    pub pending: IntGaugeVec,
    pub circuit: IntGaugeVec,
    /// From the alert's record timestamp to the receiver's 2xx, retries included.
    pub latency: HistogramVec,
    /// One HTTP request.
    pub request: HistogramVec,
}

/// Axes of `regwatch_open_incidents_by_level`, in the engine census's order.
pub const AXES: [&str; 3] = ["investor_loss", "market_order", "overall"];
/// Levels exported (an open incident below `general` is not counted).
pub const LEVELS: [&str; 4] = ["general", "larger", "major", "extraordinary"];
/// Outcomes of accepted events, the `outcome` label of `regwatch_participant_events_total`.
pub const PARTICIPANT_OUTCOMES: [&str; 4] =
    ["graded", "heartbeat", "duplicate", "after_resolution"];

/// Event outcomes, the label values of `regwatch_events_total`.
pub const OUTCOMES: [&str; 5] = [
    "graded",
    "heartbeat",
    "duplicate",
    "after_resolution",
    "rejected",
];

/// Registers `metric` (built from constant names, so a failure is a build defect that the
/// test suite catches, never an input problem) and returns its handle.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    name: &str,
    metric: prometheus::Result<M>,
) -> M {
    let m = metric.unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(m.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    m
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        registry,
        name,
        IntCounterVec::new(Opts::new(name, help), labels),
    )
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, name, IntCounter::new(name, help))
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(
        registry,
        name,
        IntGaugeVec::new(Opts::new(name, help), labels),
    )
}

fn float_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    registered(registry, name, GaugeVec::new(Opts::new(name, help), labels))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, name, IntGauge::new(name, help))
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    registered(registry, name, HistogramVec::new(opts, labels))
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
                "Alerts dead-lettered for a receiver, by reason (http_status, retry_age, skipped, malformed_alert, untrusted).",
                &["receiver", "reason"],
            ),
            skipped: counter_vec(
                registry,
                "regwatch_webhook_not_routed_total",
                "Alerts read by a receiver's outbox that no route sends to it.",
                r,
            ),
            revoked: counter_vec(
                registry,
                "regwatch_webhook_revoked_total",
                "Alerts a receiver's lane gave up, undelivered and unstored, because its partition was revoked (the new owner delivers them).",
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
            &self.revoked,
        ] {
            v.with_label_values(&[receiver]);
        }
        for c in crate::delivery::Cause::ALL {
            self.failures.with_label_values(&[receiver, c.as_str()]);
        }
        for r in ["http_status", "retry_age", "skipped", "malformed_alert"] {
            self.dead_letters.with_label_values(&[receiver, r]);
        }
        self.pending.with_label_values(&[receiver]);
        self.circuit.with_label_values(&[receiver]);
        self.latency.with_label_values(&[receiver]);
        self.request.with_label_values(&[receiver]);
    }
}

impl SupervisionMetrics {
    fn new(r: &Registry) -> SupervisionMetrics {
        SupervisionMetrics {
            participant_events: counter_vec(
                r,
                "regwatch_participant_events_total",
                "Accepted events by participant, kind (infosec, trading, heartbeat) and outcome.",
                &["participant", "kind", "outcome"],
            ),
            open_by_level: gauge_vec(
                r,
                "regwatch_open_incidents_by_level",
                "Open incidents by axis (investor_loss, market_order, overall) and level.",
                &["axis", "level"],
            ),
            open_ineligible: gauge_vec(
                r,
                "regwatch_open_ineligible_incidents",
                "Open incidents that lost exemption eligibility, by participant.",
                &["participant"],
            ),
            ineligible_total: counter_vec(
                r,
                "regwatch_ineligible_incidents_total",
                "Incidents that lost exemption eligibility, by participant.",
                &["participant"],
            ),
            alerts_by_level: counter_vec(
                r,
                "regwatch_alerts_by_level_total",
                "Alerts emitted, by type and level.",
                &["type", "level"],
            ),
            reminders: counter(
                r,
                "regwatch_reminders_total",
                "Reminders of unresolved incidents written to the reminders topic.",
            ),
            gaps: counter_vec(
                r,
                "regwatch_telemetry_gaps_total",
                "Telemetry gaps (a participant silent longer than engine.telemetry_gap).",
                &["participant"],
            ),
            silent: gauge(
                r,
                "regwatch_silent_participants",
                "Participants silent now (a telemetry gap is firing).",
            ),
            liveness_forgotten: counter(
                r,
                "regwatch_liveness_forgotten_total",
                "Silent participants a partition stopped watching after engine.liveness_retention.",
            ),
            silenced: {
                let v = counter_vec(
                    r,
                    "regwatch_silenced_total",
                    "Telemetry gaps and reminders held by an operator's silence (regwatch act silence), by what.",
                    &["what"],
                );
                for what in ["telemetry_gap", "reminder"] {
                    v.with_label_values(&[what]);
                }
                v
            },
        }
    }
}

impl OpsMetrics {
    fn new(r: &Registry) -> OpsMetrics {
        let ops = OpsMetrics {
            stage_latency: histogram_vec(
                r,
                "regwatch_stage_latency_seconds",
                "Latency per stage: decode (bytes to event), score (the engine), handoff (alert produced to broker ack).",
                &["stage"],
                &[
                    0.000_000_5, 0.000_001, 0.000_002_5, 0.000_005, 0.000_01, 0.000_025, 0.000_05,
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5,
                ],
            ),
            stage_quantiles: float_gauge_vec(
                r,
                "regwatch_stage_latency_quantile_seconds",
                "Stage latency quantiles over the last one to two minutes (hdrhistogram; quantile 1 is the maximum).",
                &["stage", "quantile"],
            ),
            lag_messages: gauge_vec(
                r,
                "regwatch_consumer_lag_messages",
                "Messages behind the high watermark, per owned partition.",
                &["topic", "partition"],
            ),
            lag_seconds: float_gauge_vec(
                r,
                "regwatch_consumer_lag_seconds",
                "Age of the last message read while behind (0 when caught up), per owned partition.",
                &["topic", "partition"],
            ),
            clock_lag_seconds: float_gauge_vec(
                r,
                "regwatch_partition_clock_lag_seconds",
                "Wall time minus the partition's event-time clock (how far behind the instant its incidents are graded at is), per owned partition.",
                &["topic", "partition"],
            ),
            calendar_coverage_days: gauge_vec(
                r,
                "regwatch_calendar_coverage_days",
                "Days from now each market calendar in use covers with known closed dates (0: the current year is not covered and every weekday counts as trading).",
                &["calendar"],
            ),
            calendar_uncovered: counter_vec(
                r,
                "regwatch_calendar_uncovered_total",
                "Checks (one a minute) that found a market calendar in use not covering the current year.",
                &["calendar"],
            ),
            record_time_anomalies: counter_vec(
                r,
                "regwatch_record_timestamp_anomalies_total",
                "Record timestamps that ran backwards (clock kept), lay more than 10 s in the future or were missing (wall time used).",
                &["kind"],
            ),
            build_info: gauge_vec(
                r,
                "regwatch_build_info",
                "Always 1: the version and commit of this build.",
                &["version", "commit"],
            ),
            config_info: gauge_vec(
                r,
                "regwatch_config_info",
                "Always 1: SHA-256 prefixes of the loaded configuration and rules.",
                &["config_sha256", "rules_sha256"],
            ),
            config_loaded_at: gauge(
                r,
                "regwatch_config_last_reload_timestamp_seconds",
                "When the configuration was loaded or the rules last reloaded, Unix seconds.",
            ),
            rules_reloads: counter_vec(
                r,
                "regwatch_rules_reloads_total",
                "Rules reloads (SIGHUP), by result (ok, error).",
                &["result"],
            ),
            http_auth_failures: counter_vec(
                r,
                "regwatch_http_auth_failures_total",
                "HTTP requests refused: no token (missing_token), an unknown token (bad_token), a token without the route's role (wrong_role), no client certificate where one is required (missing_client_certificate); TLS handshakes that failed (tls_handshake, e.g. no or an untrusted client certificate).",
                &["reason"],
            ),
            participant_partitions: gauge_vec(
                r,
                "regwatch_participant_partitions",
                "1 for each events partition this instance hears a participant on (its home). Summed over the fleet, more than 1 for one participant means its events are split over partitions (RegwatchParticipantSplit).",
                &["participant", "topic", "partition"],
            ),
            http_reloads: counter_vec(
                r,
                "regwatch_http_reloads_total",
                "Re-reads of the HTTP endpoint's TLS certificate and token files after they changed, by result (ok, error: the previous ones stay in force).",
                &["result"],
            ),
            broker_up: gauge(
                r,
                "regwatch_broker_up",
                "1 when the broker answered a metadata request within the last 15 s.",
            ),
            windows: Mutex::new(LatencyWindows::new()),
        };
        ops.build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("REGWATCH_COMMIT").unwrap_or("unknown"),
            ])
            .set(1);
        for result in ["ok", "error"] {
            ops.rules_reloads.with_label_values(&[result]);
            ops.http_reloads.with_label_values(&[result]);
        }
        for reason in [
            "missing_token",
            "bad_token",
            "wrong_role",
            "missing_client_certificate",
            "tls_handshake",
        ] {
            ops.http_auth_failures.with_label_values(&[reason]);
        }
        for stage in STAGES {
            ops.stage_latency.with_label_values(&[stage]);
            for (q, _) in QUANTILES {
                ops.stage_quantiles.with_label_values(&[stage, q]);
            }
        }
        ops
    }

    /// Shows which configuration and rules run, and since when.
    pub fn set_config(&self, config_sha256: &str, rules_sha256: &str) {
        self.config_info.reset();
        let short = |s: &str| s.get(..12).unwrap_or(s).to_string();
        self.config_info
            .with_label_values(&[&short(config_sha256), &short(rules_sha256)])
            .set(1);
        self.config_loaded_at
            .set(crate::time::wall_now().millis().div_euclid(1000));
    }

    /// Refreshes the quantile gauges from the latency windows (at each scrape).
    pub fn refresh_quantiles(&self) {
        let q = self
            .windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .quantiles();
        for (stage, values) in STAGES.iter().zip(q) {
            for ((label, _), v) in QUANTILES.iter().zip(values) {
                self.stage_quantiles
                    .with_label_values(&[stage, label])
                    .set(v);
            }
        }
    }
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
            actions: counter_vec(
                &registry,
                "regwatch_actions_total",
                "People's actions by action (ack, annotate, close, silence, unsilence, skip) and outcome: accepted by the API, applied or refused by the owning partition, or refused by the API (forbidden, invalid, expired, unknown_incident, resolved, unknown_participant, unknown_silence, unknown_receiver).",
                &["action", "outcome"],
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
            source_partitions: gauge(
                &registry,
                "regwatch_source_partitions",
                "Partitions of the subscribed events topics in the cluster (broker metadata, every 5 s).",
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
            state_unauthenticated: counter(
                &registry,
                "regwatch_state_records_unauthenticated_total",
                "State records a restore refused because they carry no valid regwatch.mac (kafka.record_key): not written by regwatch.",
            ),
            state_resigned: counter(
                &registry,
                "regwatch_state_records_resigned_total",
                "State records written again with a MAC after a restore: legacy unsigned ones (written before the partition's first signed record) and authentic ones a refused record had come after.",
            ),
            history_records: counter_vec(
                &registry,
                "regwatch_history_records_total",
                "History-topic records this instance's desk read, by outcome: folded, refused (no valid regwatch.mac: not written by regwatch), unreadable.",
                &["outcome"],
            ),
            history_incidents: gauge(
                &registry,
                "regwatch_history_incidents",
                "Incident stories this instance's desk holds (open and resolved, every partition).",
            ),
            history_evicted: counter(
                &registry,
                "regwatch_history_evicted_total",
                "Incident stories the desk let go at history.max_incidents (resolved ones changed longest ago first); still in the history topic.",
            ),
            restoring: gauge(
                &registry,
                "regwatch_partitions_restoring",
                "Owned partitions whose state is being restored (not ready while above 0).",
            ),
            restore_failures: counter(
                &registry,
                "regwatch_state_restore_failures_total",
                "State restores that failed and are retried (broker unreachable, timeout, bad topic).",
            ),
            worker_failures: counter_vec(
                &registry,
                "regwatch_worker_failures_total",
                "Partition workers that panicked or were fenced by a newer owner, and fatal producer errors, by cause.",
                &["cause"],
            ),
            commits: counter_vec(
                &registry,
                "regwatch_offset_commits_total",
                "Offset commits, by result.",
                &["result"],
            ),
            webhook: WebhookMetrics::new(&registry),
            supervision: SupervisionMetrics::new(&registry),
            ops: OpsMetrics::new(&registry),
            registry,
        };
        // Pre-create every label value so dashboards see zeros, not gaps.
        for kind in ["backwards", "future", "missing"] {
            m.ops.record_time_anomalies.with_label_values(&[kind]);
        }
        for o in OUTCOMES {
            m.events.with_label_values(&[o]);
        }
        for r in Reject::CODES {
            m.rejected.with_label_values(&[r]);
        }
        for c in [
            "panic",
            "producer_fatal",
            "fenced",
            "partition_count_changed",
        ] {
            m.worker_failures.with_label_values(&[c]);
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

    /// Pre-creates the series of every registered participant and level, so dashboards see
    /// zeros, not gaps.
    pub fn touch_participants(&self, registry: &crate::registry::Registry) {
        let s = &self.supervision;
        for (_, p) in registry.iter() {
            let id: &str = &p.id;
            s.open_ineligible.with_label_values(&[id]);
            s.ineligible_total.with_label_values(&[id]);
            s.gaps.with_label_values(&[id]);
            for kind in ["infosec", "trading", "heartbeat"] {
                for outcome in PARTICIPANT_OUTCOMES {
                    s.participant_events.with_label_values(&[id, kind, outcome]);
                }
            }
        }
        for axis in AXES {
            for level in LEVELS {
                s.open_by_level.with_label_values(&[axis, level]);
            }
        }
        for t in ["incident", "telemetry_gap"] {
            for level in LEVELS {
                s.alerts_by_level.with_label_values(&[t, level]);
            }
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.ops.refresh_quantiles();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(values_ns: &[u64]) -> Hdr<u64> {
        let mut h = latency_histogram();
        for v in values_ns {
            h.record(*v).unwrap();
        }
        h
    }

    #[test]
    fn quantiles_cover_the_last_one_to_two_minutes() {
        let mut w = LatencyWindows::new();
        let mut local = recorded(&[1_000, 2_000, 3_000, 1_000_000]);
        w.merge(0, &mut local);
        assert!(local.is_empty(), "the worker's histogram is reset");
        let q = w.quantiles();
        assert!((q[0][0] - 2e-6).abs() < 1e-7, "p50 {}", q[0][0]);
        assert!((q[0][3] - 1e-3).abs() < 2e-5, "max {}", q[0][3]);
        assert_eq!(q[1], [0.0; 4], "a stage with no data reads 0");
        // A minute on: the data is in the previous window, still reported.
        w.started = Instant::now() - Duration::from_secs(70);
        assert!(w.quantiles()[0][3] > 0.0);
        // Another minute: gone.
        w.started = Instant::now() - Duration::from_secs(70);
        assert_eq!(w.quantiles()[0], [0.0; 4]);
        // A long silence clears both windows at once.
        w.merge(0, &mut recorded(&[5_000]));
        w.started = Instant::now() - Duration::from_secs(600);
        assert_eq!(w.quantiles()[0], [0.0; 4]);
    }

    #[test]
    fn every_metric_registers_and_renders() {
        let m = Metrics::new();
        let text = m.render();
        for name in [
            "regwatch_build_info",
            "regwatch_stage_latency_quantile_seconds",
            "regwatch_rules_reloads_total",
        ] {
            assert!(text.contains(name), "{name}");
        }
    }
}
