//! A partition worker's share of the metrics, kept so the hot path touches nothing shared
//! but pre-resolved atomic counters.
//!
//! - Events per participant, kind and outcome: counters resolved once, indexed by
//!   participant, kind and outcome.
//! - Stage latency: recorded per event into worker-local histograms (a Prometheus
//!   `LocalHistogram` and an hdrhistogram per stage, no atomics, no lock), merged into the
//!   shared ones on the clock tick.
//! - The engine's census (open incidents by axis and level, ineligible incidents, gaps,
//!   silent participants): published on the tick as the difference from what this worker
//!   published before, so gauges shared by all workers add up; withdrawn when the worker
//!   stops, so a revoked partition leaves nothing behind.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram as Hdr;
use prometheus::local::LocalHistogram;
use prometheus::{IntCounter, IntGauge};

use crate::alert::AlertType;
use crate::decode::EventKind;
use crate::registry::{ParticipantIdx, Registry};
use crate::score::{Census, Engine, Level, Outcome, ParticipantCensus};
use crate::telemetry::metrics::{latency_histogram, AXES, LEVELS, STAGES};
use crate::telemetry::Metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Decode = 0,
    Score = 1,
    Handoff = 2,
}

fn kind_index(kind: EventKind) -> usize {
    match kind {
        EventKind::Infosec => 0,
        EventKind::Trading => 1,
        EventKind::Heartbeat => 2,
    }
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Graded => 0,
        Outcome::Heartbeat => 1,
        Outcome::Duplicate => 2,
        Outcome::AfterResolution => 3,
    }
}

struct ParticipantGauges {
    ineligible_open: IntGauge,
    lost: IntCounter,
    gaps: IntCounter,
}

pub struct Telemetry {
    metrics: Arc<Metrics>,
    /// `[participant][kind][outcome]`, flattened.
    events: Vec<IntCounter>,
    local: Vec<LocalHistogram>,
    hdr: Vec<Hdr<u64>>,
    /// `[axis][level]` gauges, level from `general`.
    by_level: Vec<Vec<IntGauge>>,
    participants: Vec<ParticipantGauges>,
    /// What this worker has published so far.
    published: Census,
    published_participants: Vec<ParticipantCensus>,
    /// The engine's `liveness_forgotten` already counted.
    published_forgotten: u64,
    /// The engine's `gaps_silenced` and `reminders_silenced` already counted.
    published_silenced: [u64; 2],
    /// `(type, level)` alert counters, incident then telemetry_gap, by level rank.
    alerts: Vec<IntCounter>,
    reminders: IntCounter,
    /// Whether this worker has written lag series (looked up on every tick, not cached: a
    /// previous owner of the partition may remove them when it stops late).
    lag_written: bool,
}

impl Telemetry {
    pub fn new(metrics: &Arc<Metrics>, registry: &Registry) -> Telemetry {
        let s = &metrics.supervision;
        let o = &metrics.ops;
        let mut events = Vec::with_capacity(registry.len() * 12);
        let mut participants = Vec::with_capacity(registry.len());
        for (_, p) in registry.iter() {
            let id: &str = &p.id;
            for kind in ["infosec", "trading", "heartbeat"] {
                for outcome in crate::telemetry::metrics::PARTICIPANT_OUTCOMES {
                    events.push(s.participant_events.with_label_values(&[id, kind, outcome]));
                }
            }
            participants.push(ParticipantGauges {
                ineligible_open: s.open_ineligible.with_label_values(&[id]),
                lost: s.ineligible_total.with_label_values(&[id]),
                gaps: s.gaps.with_label_values(&[id]),
            });
        }
        let alerts = ["incident", "telemetry_gap"]
            .iter()
            .flat_map(|t| {
                Level::ALL
                    .iter()
                    .map(move |l| s.alerts_by_level.with_label_values(&[t, l.as_str()]))
            })
            .collect();
        Telemetry {
            events,
            local: STAGES
                .iter()
                .map(|st| o.stage_latency.with_label_values(&[st]).local())
                .collect(),
            hdr: STAGES.iter().map(|_| latency_histogram()).collect(),
            by_level: AXES
                .iter()
                .map(|axis| {
                    LEVELS
                        .iter()
                        .map(|level| s.open_by_level.with_label_values(&[axis, level]))
                        .collect()
                })
                .collect(),
            published_participants: vec![ParticipantCensus::default(); participants.len()],
            published_forgotten: 0,
            published_silenced: [0; 2],
            participants,
            published: Census::default(),
            alerts,
            reminders: s.reminders.clone(),
            lag_written: false,
            metrics: metrics.clone(),
        }
    }

    /// One accepted event.
    #[inline]
    pub fn event(&self, p: ParticipantIdx, kind: EventKind, outcome: Outcome) {
        let i = p.get() * 12 + kind_index(kind) * 4 + outcome_index(outcome);
        if let Some(c) = self.events.get(i) {
            c.inc();
        }
    }

    /// One stage's latency (worker-local until the next publish).
    #[inline]
    pub fn record(&mut self, stage: Stage, d: Duration) {
        let i = stage as usize;
        self.local[i].observe(d.as_secs_f64());
        // Values beyond the histogram's 60 s bound are clamped, not lost.
        self.hdr[i].saturating_record(d.as_nanos().clamp(1, u64::MAX as u128) as u64);
    }

    pub fn alert(&self, kind: AlertType, level: Level) {
        let t = usize::from(kind == AlertType::TelemetryGap);
        if let Some(c) = self
            .alerts
            .get(t * Level::ALL.len() + level.rank() as usize)
        {
            c.inc();
        }
    }

    pub fn reminder(&self) {
        self.reminders.inc();
    }

    /// Merges the local latencies and publishes the census (on the clock tick).
    pub fn publish(&mut self, engine: &Engine) {
        for l in &self.local {
            l.flush();
        }
        {
            let mut w = self
                .metrics
                .ops
                .windows
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for (i, h) in self.hdr.iter_mut().enumerate() {
                if !h.is_empty() {
                    w.merge(i, h);
                }
            }
        }
        let census = engine.census();
        for (axis, gauges) in self.by_level.iter().enumerate() {
            for (j, g) in gauges.iter().enumerate() {
                // Level ranks: 0 none (not exported), 1 general ...
                let now = i64::from(census.open_by_level[axis][j + 1]);
                let before = i64::from(self.published.open_by_level[axis][j + 1]);
                if now != before {
                    g.add(now - before);
                }
            }
        }
        let silent = i64::from(census.silent) - i64::from(self.published.silent);
        if silent != 0 {
            self.metrics.supervision.silent.add(silent);
        }
        self.published = census.clone();
        let forgotten = engine.stats().liveness_forgotten;
        self.metrics
            .supervision
            .liveness_forgotten
            .inc_by(forgotten.saturating_sub(self.published_forgotten));
        self.published_forgotten = forgotten;
        let stats = engine.stats();
        for (i, (what, now)) in [
            ("telemetry_gap", stats.gaps_silenced),
            ("reminder", stats.reminders_silenced),
        ]
        .into_iter()
        .enumerate()
        {
            if now > self.published_silenced[i] {
                self.metrics
                    .supervision
                    .silenced
                    .with_label_values(&[what])
                    .inc_by(now - self.published_silenced[i]);
                self.published_silenced[i] = now;
            }
        }
        for (i, g) in self.participants.iter().enumerate() {
            let now = engine.participant_census(ParticipantIdx(i as u32));
            let before = &mut self.published_participants[i];
            if now == *before {
                continue;
            }
            g.ineligible_open
                .add(i64::from(now.ineligible_open) - i64::from(before.ineligible_open));
            g.lost
                .inc_by(now.lost_exemption.saturating_sub(before.lost_exemption));
            g.gaps.inc_by(now.gaps.saturating_sub(before.gaps));
            *before = now;
        }
    }

    /// This partition's lag.
    pub fn lag(
        &mut self,
        topic: &str,
        partition: i32,
        messages: i64,
        seconds: f64,
        clock_lag: f64,
    ) {
        let p = partition.to_string();
        let o = &self.metrics.ops;
        o.lag_messages.with_label_values(&[topic, &p]).set(messages);
        o.lag_seconds.with_label_values(&[topic, &p]).set(seconds);
        o.clock_lag_seconds
            .with_label_values(&[topic, &p])
            .set(clock_lag);
        self.lag_written = true;
    }

    /// Takes this worker's share out of the shared gauges (the partition is gone).
    pub fn withdraw(&mut self, topic: &str, partition: i32) {
        for (axis, gauges) in self.by_level.iter().enumerate() {
            for (j, g) in gauges.iter().enumerate() {
                g.sub(i64::from(self.published.open_by_level[axis][j + 1]));
            }
        }
        self.metrics
            .supervision
            .silent
            .sub(i64::from(self.published.silent));
        for (g, p) in self.participants.iter().zip(&self.published_participants) {
            g.ineligible_open.sub(i64::from(p.ineligible_open));
        }
        self.published = Census::default();
        self.published_participants
            .fill(ParticipantCensus::default());
        if std::mem::take(&mut self.lag_written) {
            let p = partition.to_string();
            let o = &self.metrics.ops;
            let _ = o.lag_messages.remove_label_values(&[topic, &p]);
            let _ = o.lag_seconds.remove_label_values(&[topic, &p]);
            let _ = o.clock_lag_seconds.remove_label_values(&[topic, &p]);
        }
    }
}
