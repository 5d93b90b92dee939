//! Evaluating the compiled grid against one incident: levels, scores, reasons, deadlines.
//!
//! The hot path is [`Rules::assess`]: a walk over a few dozen rules with bit-mask filters and
//! float comparisons, no allocation. [`Rules::explain`] (which allocates) runs only when an
//! alert is built.
//!
//! Contract semantics that are not data (CONTRACT.md section 2): an axis with figures but no
//! matching rule is `general`, without figures `none`; market-order figures are an
//! outage/degradation or any trading anomaly; investor-loss figures are `records_exposed`,
//! `affected_investors`, `loss_cny` or `orders_delayed` above zero.
//!
//! ## Score (0..100 per axis)
//!
//! Each level owns a band: `none` 0, `general` 1..=24, `larger` 25..=49, `major` 50..=74,
//! `extraordinary` 75..=100. Within `general`, `larger` and `major` the score is the band's
//! floor plus the band's width times the *progress* towards the next level: for every rule of
//! the next level that applies to the incident, the least-satisfied of its conditions
//! (observed / threshold, capped at 1), and the best such rule wins (capped below 1, since
//! a rule fully met would have raised the level). Within `extraordinary` the score is
//! 75 + 25 x min(1, r - 1), where r is how far the best matching rule's least-satisfied
//! condition exceeds its threshold (twice the threshold scores 100).

use super::level::{Axis, Exemption, Grade, Level};
use super::rules::{Condition, Filter, Metric, Op, Rule, Rules};
use crate::calendar::Calendar;
use crate::decode::{Category, EventKind, Figure, Figures, RecordType, Scope, System, Word};
use crate::registry::ParticipantKind;
use crate::time::{Timestamp, MS_PER_MINUTE};

/// Everything a rule can look at, for one incident at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub kind: EventKind,
    pub category: Category,
    pub participant_kind: ParticipantKind,
    pub system: System,
    pub scope: Scope,
    pub record_type: RecordType,
    pub figures: &'a Figures,
    pub minutes: f64,
    /// The part of `minutes` inside the sessions of `calendar`.
    pub trading_minutes: f64,
    pub effective_customers: f64,
    /// The participant's market calendar, and when the incident started (deadlines of
    /// `trading_minutes` conditions are instants of that calendar).
    pub calendar: &'a Calendar,
    pub started_at: Timestamp,
}

impl Subject<'_> {
    pub fn metric(&self, m: Metric) -> f64 {
        match m {
            Metric::Figure(f) => self.figures.value(f),
            Metric::Abs(f) => self.figures.value(f).abs(),
            Metric::Minutes => self.minutes.max(0.0),
            Metric::TradingMinutes => self.trading_minutes.max(0.0),
            Metric::UnitsPct => match self.figures.get(Figure::AffectedUnitsPct) {
                Some(v) => v,
                None if self.scope == Scope::Full => 100.0,
                None => 0.0,
            },
            Metric::EffectiveCustomers => self.effective_customers,
        }
    }

    fn admits(&self, f: &Filter) -> bool {
        f.event_kind & self.kind.bit() != 0
            && f.category & self.category.bit() != 0
            && f.participant_kind & self.participant_kind.bit() != 0
            && f.system & self.system.bit() != 0
            && f.scope & self.scope.bit() != 0
            && f.record_type & self.record_type.bit() != 0
    }

    fn satisfies(&self, c: &Condition) -> bool {
        c.op.holds(self.metric(c.metric), c.threshold)
    }

    fn matches(&self, r: &Rule) -> bool {
        self.admits(&r.when) && r.all.iter().all(|c| self.satisfies(c))
    }

    /// The level an axis has when it carries figures but no rule matches.
    fn floor(&self, axis: Axis) -> Level {
        let carries = match axis {
            Axis::MarketOrder => self.kind == EventKind::Trading || self.category.is_service(),
            Axis::InvestorLoss => INVESTOR_FIGURES
                .iter()
                .any(|f| self.figures.value(*f) > 0.0),
        };
        if carries {
            Level::General
        } else {
            Level::None
        }
    }
}

const INVESTOR_FIGURES: [Figure; 4] = [
    Figure::RecordsExposed,
    Figure::AffectedInvestors,
    Figure::LossCny,
    Figure::OrdersDelayed,
];

/// One observed fact behind a level: a rule's condition, the value seen and the threshold.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    pub rule: String,
    pub level: Level,
    pub metric: String,
    pub observed: f64,
    pub op: String,
    pub threshold: f64,
    pub cite: String,
    /// For `trading_minutes`: which minutes were counted ("sessions of cn-stock").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
}

/// One axis of an alert: level, 0..100 score and the reasons.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AxisReport {
    pub level: Level,
    pub score: u8,
    pub reasons: Vec<Reason>,
}

/// Rule id used for the contract's floor (`general` without a matching rule).
pub const FLOOR_RULE: &str = "contract.floor";
const FLOOR_CITE: &str =
    "CONTRACT.md s.2: an incident carrying figures for an axis is at least general on it";

/// Which rules of each axis can apply to an incident, given its attributes (kind, category,
/// participant kind, system, scope, record type): bit `i` stands for rule `i` of the axis.
/// Attributes rarely change, so an incident keeps this and grading skips the filters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applicable([u64; 2]);

/// A grading at one instant: the levels the figures justify, and the instant at which
/// elapsed time alone (wall-clock or trading minutes) would justify a higher one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub grade: Grade,
    pub due: Option<Timestamp>,
}

impl Rules {
    /// The rules whose filters admit the subject.
    pub fn applicable(&self, s: &Subject) -> Applicable {
        Applicable(Axis::ALL.map(|axis| {
            self.of(axis)
                .iter()
                .enumerate()
                .filter(|(_, r)| s.admits(&r.when))
                .fold(0u64, |m, (i, _)| m | 1 << i)
        }))
    }

    /// Grades the subject with one walk over its applicable rules, highest level first: the
    /// first rule that holds gives the level; the rules above it whose only unmet conditions
    /// are `minutes >= t` (or `> t`, or the same of `trading_minutes`) give the deadline,
    /// if they are above `held` too.
    pub fn assess(&self, s: &Subject, applicable: Applicable, held: Grade) -> Assessment {
        let mut grade = Grade::default();
        let mut due: Option<Timestamp> = None;
        for axis in Axis::ALL {
            let rules = self.of(axis);
            let mut level = s.floor(axis);
            // Earliest time-only deadline per level, for the rules above the one that holds.
            let mut by_level: [Option<Timestamp>; 5] = [None; 5];
            let mut mask = applicable.0[axis.index()];
            while mask != 0 {
                let r = &rules[mask.trailing_zeros() as usize];
                mask &= mask - 1;
                match time_only_delay(s, r) {
                    Delay::Holds => {
                        level = r.level;
                        break;
                    }
                    Delay::At(at) => {
                        let slot = &mut by_level[r.level as usize];
                        *slot = Some(slot.map_or(at, |d| d.min(at)));
                    }
                    Delay::Never => {}
                }
            }
            let above = level.max(held.get(axis)) as usize + 1;
            for at in by_level.iter().skip(above).flatten() {
                due = Some(due.map_or(*at, |d| d.min(*at)));
            }
            match axis {
                Axis::InvestorLoss => grade.investor_loss = level,
                Axis::MarketOrder => grade.market_order = level,
            }
        }
        Assessment { grade, due }
    }

    pub fn exemption(&self, g: Grade) -> Exemption {
        let crossed = Axis::ALL
            .iter()
            .any(|a| g.get(*a) >= self.exemption_line(*a));
        if crossed {
            Exemption::Ineligible
        } else {
            Exemption::Eligible
        }
    }

    /// Why `axis` stands at `level` (which may be higher than the current figures justify:
    /// levels never fall while an incident is open, so `level` is the one the incident holds).
    pub fn explain(&self, axis: Axis, s: &Subject, level: Level) -> AxisReport {
        let mut reasons = Vec::new();
        for r in self.of(axis).iter().filter(|r| r.level == level) {
            if s.matches(r) {
                reasons.extend(
                    r.all.iter().map(|c| Reason {
                        rule: r.id.to_string(),
                        level: r.level,
                        metric: c.metric.name().to_string(),
                        observed: shown(c.metric, s.metric(c.metric)),
                        op: c.op.as_str().to_string(),
                        threshold: c.threshold,
                        cite: r.cite.to_string(),
                        basis: (c.metric == Metric::TradingMinutes)
                            .then(|| s.calendar.basis().to_string()),
                    }),
                );
            }
        }
        if reasons.is_empty() && level == Level::General {
            reasons.extend(floor_reason(axis, s));
        }
        AxisReport {
            level,
            score: self.score(axis, s, level),
            reasons,
        }
    }

    /// The 0..100 score of one axis (formula in the module docs).
    pub fn score(&self, axis: Axis, s: &Subject, level: Level) -> u8 {
        let (floor, width) = match level {
            Level::None => return 0,
            Level::General => (1.0, 24.0),
            Level::Larger => (25.0, 25.0),
            Level::Major => (50.0, 25.0),
            Level::Extraordinary => {
                let r = self
                    .of(axis)
                    .iter()
                    .filter(|r| r.level == Level::Extraordinary && s.matches(r))
                    .map(|r| least_ratio(s, r, f64::INFINITY))
                    .fold(1.0, f64::max);
                return (75.0 + 25.0 * (r - 1.0).clamp(0.0, 1.0)).floor() as u8;
            }
        };
        let next = level.next().unwrap_or(Level::Extraordinary);
        let progress = self
            .of(axis)
            .iter()
            .filter(|r| r.level == next && s.admits(&r.when))
            .map(|r| least_ratio(s, r, 1.0))
            .fold(0.0, f64::max)
            .min(0.99);
        (floor + width * progress).floor() as u8
    }
}

enum Delay {
    /// Every condition holds now.
    Holds,
    /// Only duration conditions are unmet; they all hold from this instant on.
    At(Timestamp),
    /// Some other condition is unmet: time alone will not make the rule hold.
    Never,
}

fn time_only_delay(s: &Subject, r: &Rule) -> Delay {
    let mut holds = true;
    let mut due: Option<Timestamp> = None;
    for c in &r.all {
        if s.satisfies(c) {
            continue;
        }
        holds = false;
        // The duration (ms) that satisfies the condition.
        let ms = match c.op {
            Op::Ge => (c.threshold * MS_PER_MINUTE as f64).ceil() as i64,
            Op::Gt => ((c.threshold * MS_PER_MINUTE as f64).floor() as i64).saturating_add(1),
            _ => return Delay::Never,
        };
        let at = match c.metric {
            Metric::Minutes => s.started_at.plus_millis(ms),
            // Skips breaks, nights, weekends and holidays; beyond the calendar's range the
            // rule never holds by time alone.
            Metric::TradingMinutes => match s.calendar.after_trading_ms(s.started_at, ms) {
                Some(at) => at,
                None => return Delay::Never,
            },
            _ => return Delay::Never,
        };
        due = Some(due.map_or(at, |d| d.max(at)));
    }
    match (holds, due) {
        (true, _) => Delay::Holds,
        (false, Some(at)) => Delay::At(at),
        (false, None) => Delay::Never,
    }
}

/// The smallest observed/threshold ratio over a rule's conditions, each capped at `cap`.
fn least_ratio(s: &Subject, r: &Rule, cap: f64) -> f64 {
    r.all
        .iter()
        .map(|c| {
            let observed = s.metric(c.metric);
            let ratio = match c.op {
                Op::Ge | Op::Gt if c.threshold > 0.0 => observed / c.threshold,
                _ if s.satisfies(c) => 1.0,
                _ => 0.0,
            };
            ratio.clamp(0.0, cap)
        })
        .fold(cap, f64::min)
}

/// A value as a reason shows it: durations to the millisecond (0.001 minute).
fn shown(metric: Metric, v: f64) -> f64 {
    match metric {
        Metric::Minutes | Metric::TradingMinutes => (v * 1000.0).round() / 1000.0,
        _ => v,
    }
}

fn floor_reason(axis: Axis, s: &Subject) -> Option<Reason> {
    let (metric, observed, op) = match axis {
        Axis::InvestorLoss => {
            let f = INVESTOR_FIGURES
                .iter()
                .copied()
                .find(|f| s.figures.value(*f) > 0.0)?;
            (f.as_str().to_string(), s.figures.value(f), Op::Gt)
        }
        Axis::MarketOrder if s.kind == EventKind::Trading => {
            let (f, v) = s.figures.iter().next().unwrap_or((Figure::Orders, 0.0));
            (f.as_str().to_string(), v, Op::Ge)
        }
        Axis::MarketOrder => (
            "minutes".to_string(),
            shown(Metric::Minutes, s.metric(Metric::Minutes)),
            Op::Ge,
        ),
    };
    Some(Reason {
        rule: FLOOR_RULE.to_string(),
        level: Level::General,
        metric,
        observed,
        op: op.as_str().to_string(),
        threshold: 0.0,
        cite: FLOOR_CITE.to_string(),
        basis: None,
    })
}
