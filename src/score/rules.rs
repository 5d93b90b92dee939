//! The grading grid as data: a TOML rules file compiled into [`Rules`].
//!
//! Operators change thresholds, add or remove rules, or move the exemption line by editing the
//! file; nothing is hard-coded but the contract's own semantics (see `grade.rs`). Compilation
//! refuses anything it cannot evaluate exactly (an unknown metric, level, participant kind,
//! category, duplicate id, ...) with an error that names the rule and the bad value.
//!
//! Rule file shape (the default grid is `config/rules.toml`, built into the binary):
//!
//! ```toml
//! [exemption]
//! investor_loss = "major"      # ineligible once this axis reaches this level
//! market_order = "major"
//!
//! [[rule]]
//! id = "mo.exchange.major"
//! axis = "market_order"
//! level = "major"
//! when = { event_kind = ["infosec"], category = ["outage", "degradation"],
//!          participant_kind = ["exchange"], system = ["trading", "market_data"] }
//! all = ["minutes >= 10", "units_pct >= 10"]
//! cite = "CSRC 2012 No.46 art. 11: exchange interruption >= 10 min / >= 10% of units"
//! ```

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::level::{Axis, Level};
use crate::calendar::{Calendar, CalendarId, Calendars};
use crate::decode::{Category, EventKind, Figure, RecordType, Scope, System, Word};
use crate::registry::ParticipantKind;

/// Grading keeps one bit per rule of an axis in a `u64`.
pub const MAX_RULES_PER_AXIS: usize = 64;

/// The default grid of CONTRACT.md section 2, as shipped in `config/rules.toml`.
pub const DEFAULT_RULES: &str = include_str!("../../config/rules.toml");

#[derive(Debug, Error)]
pub enum RulesError {
    #[error("cannot read rules file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("rules file: {0}")]
    Syntax(String),
    #[error("rules file: rule[{index}] ({id}): {problem}")]
    Rule {
        index: usize,
        id: String,
        problem: String,
    },
    #[error("rules file: exemption.{axis}: {problem}")]
    Exemption { axis: &'static str, problem: String },
}

/// A quantity a condition can test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A reported figure as kept (largest value; largest magnitude for signed moves).
    Figure(Figure),
    /// The magnitude of a signed figure: `abs(price_move_pct)`.
    Abs(Figure),
    /// Service duration in minutes: (resolution or engine clock) - `started_at`.
    Minutes,
    /// The part of the service duration inside the sessions of the participant's market
    /// calendar, in minutes (CONTRACT.md section 2, trading time).
    TradingMinutes,
    /// `affected_units_pct`, or 100 when `scope` is `full` and no share was reported.
    UnitsPct,
    /// From the participant registry.
    EffectiveCustomers,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "minutes" => Some(Metric::Minutes),
            "trading_minutes" => Some(Metric::TradingMinutes),
            "units_pct" => Some(Metric::UnitsPct),
            "effective_customers" => Some(Metric::EffectiveCustomers),
            _ => {
                if let Some(inner) = s.strip_prefix("abs(").and_then(|r| r.strip_suffix(')')) {
                    Figure::parse(inner).map(Metric::Abs)
                } else {
                    Figure::parse(s).map(Metric::Figure)
                }
            }
        }
    }

    pub fn name(self) -> MetricName {
        MetricName(self)
    }
}

/// Display adapter writing a metric as it is spelled in rules files.
pub struct MetricName(Metric);

impl fmt::Display for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Metric::Figure(x) => f.write_str(x.as_str()),
            Metric::Abs(x) => write!(f, "abs({})", x.as_str()),
            Metric::Minutes => f.write_str("minutes"),
            Metric::TradingMinutes => f.write_str("trading_minutes"),
            Metric::UnitsPct => f.write_str("units_pct"),
            Metric::EffectiveCustomers => f.write_str("effective_customers"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "==",
        }
    }

    pub fn holds(self, observed: f64, threshold: f64) -> bool {
        match self {
            Op::Ge => observed >= threshold,
            Op::Gt => observed > threshold,
            Op::Le => observed <= threshold,
            Op::Lt => observed < threshold,
            Op::Eq => observed == threshold,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Condition {
    pub metric: Metric,
    pub op: Op,
    pub threshold: f64,
}

impl Condition {
    /// Parses `"<metric> <op> <number>"`, e.g. `"abs(index_move_pct) >= 3"` or `"loss_cny >= 1e8"`.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let mut parts = text.split_whitespace();
        let (Some(m), Some(o), Some(n), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "condition {text:?}: expected \"<metric> <op> <number>\", e.g. \"minutes >= 30\""
            ));
        };
        let metric = Metric::parse(m).ok_or_else(|| {
            format!(
                "condition {text:?}: unknown metric {m:?} (known: {})",
                known_metrics()
            )
        })?;
        let op = match o {
            ">=" => Op::Ge,
            ">" => Op::Gt,
            "<=" => Op::Le,
            "<" => Op::Lt,
            "==" => Op::Eq,
            _ => {
                return Err(format!(
                    "condition {text:?}: unknown operator {o:?} (known: >= > <= < ==)"
                ))
            }
        };
        let threshold: f64 = n
            .replace('_', "")
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| format!("condition {text:?}: {n:?} is not a finite number"))?;
        Ok(Condition {
            metric,
            op,
            threshold,
        })
    }
}

fn known_metrics() -> String {
    let mut names = vec![
        "minutes",
        "trading_minutes",
        "units_pct",
        "effective_customers",
    ];
    names.extend(Figure::ALL.iter().map(|f| f.as_str()));
    names.push("abs(price_move_pct)");
    names.push("abs(index_move_pct)");
    names.join(", ")
}

/// Attribute filters of a rule, as bit masks; `u32::MAX` admits everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub event_kind: u32,
    pub category: u32,
    pub participant_kind: u32,
    pub system: u32,
    pub scope: u32,
    pub record_type: u32,
}

impl Filter {
    /// The filter of a rule without `when`: admits everything.
    pub const ANY: Filter = Filter {
        event_kind: u32::MAX,
        category: u32::MAX,
        participant_kind: u32::MAX,
        system: u32::MAX,
        scope: u32::MAX,
        record_type: u32::MAX,
    };
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub id: Box<str>,
    pub axis: Axis,
    pub level: Level,
    pub cite: Box<str>,
    pub when: Filter,
    pub all: Vec<Condition>,
}

/// The compiled grid. Rules are grouped by axis and ordered by level, highest first, so
/// "the highest rule that matches" is the first match.
#[derive(Clone, Debug)]
pub struct Rules {
    pub(super) by_axis: [Vec<Rule>; 2],
    pub(super) exemption: [Level; 2],
    digest: String,
    /// The market calendars `trading_minutes` counts in (reloaded with the rules).
    calendars: Arc<Calendars>,
}

impl Rules {
    pub fn default_grid() -> Rules {
        // The built-in grid is checked by the test suite; a failure here is a build defect.
        Rules::compile(DEFAULT_RULES).unwrap_or_else(|e| panic!("built-in rules: {e}"))
    }

    pub fn load(path: &std::path::Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Rules::compile(&text)
    }

    pub fn compile(text: &str) -> Result<Rules, RulesError> {
        let raw: RawRules = parse_toml(text)?;
        let mut by_axis: [Vec<Rule>; 2] = [Vec::new(), Vec::new()];
        let mut ids = std::collections::HashSet::new();
        for (index, r) in raw.rule.into_iter().enumerate() {
            let id = r.id.clone();
            let err = |problem: String| RulesError::Rule {
                index,
                id: id.clone(),
                problem,
            };
            if r.id.trim().is_empty() {
                return Err(err("`id` must not be empty".into()));
            }
            if !ids.insert(r.id.clone()) {
                return Err(err("duplicate rule id".into()));
            }
            let rule = compile_rule(r).map_err(err)?;
            by_axis[rule.axis.index()].push(rule);
        }
        for (axis, rules) in Axis::ALL.iter().zip(&mut by_axis) {
            // Stable: rules of one level keep their file order (it orders reasons).
            rules.sort_by_key(|r| std::cmp::Reverse(r.level));
            if rules.len() > MAX_RULES_PER_AXIS {
                return Err(RulesError::Syntax(format!(
                    "{} rules grade {}; at most {MAX_RULES_PER_AXIS} per axis are supported",
                    rules.len(),
                    axis.as_str()
                )));
            }
        }
        let exemption = [
            exemption_level("investor_loss", &raw.exemption.investor_loss)?,
            exemption_level("market_order", &raw.exemption.market_order)?,
        ];
        Ok(Rules {
            by_axis,
            exemption,
            digest: hex_digest(text.as_bytes()),
            calendars: Calendars::shared_builtin(),
        })
    }

    /// These rules counting trading time in `calendars`.
    pub fn with_calendars(mut self, calendars: Arc<Calendars>) -> Rules {
        self.calendars = calendars;
        self
    }

    pub fn calendars(&self) -> &Arc<Calendars> {
        &self.calendars
    }

    /// The calendar of that name; every participant's calendar is checked to exist when the
    /// configuration (or a reload) is validated, so the fallback (the first calendar) is
    /// never taken in the daemon.
    pub fn calendar(&self, name: &str) -> &Calendar {
        let id = self.calendars.id(name).unwrap_or(CalendarId(0));
        self.calendars.get(id)
    }

    /// The rules of one axis, highest level first.
    pub fn of(&self, axis: Axis) -> &[Rule] {
        &self.by_axis[axis.index()]
    }

    /// An incident is ineligible for exemption once `axis` reaches this level.
    pub fn exemption_line(&self, axis: Axis) -> Level {
        self.exemption[axis.index()]
    }

    /// SHA-256 of the rules text, shown in metrics so operators can tell which grid runs.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The digest a rules file with this text has (what [`Rules::digest`] reports once it
    /// is compiled).
    pub fn text_digest(text: &str) -> String {
        hex_digest(text.as_bytes())
    }

    pub fn len(&self) -> usize {
        self.by_axis.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses TOML with the `config` crate and reports errors with the key path.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, RulesError> {
    let cfg = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| RulesError::Syntax(e.to_string()))?;
    serde_path_to_error::deserialize(cfg).map_err(|e| {
        let path = e.path().to_string();
        RulesError::Syntax(format!("{path}: {}", e.into_inner()))
    })
}

fn exemption_level(axis: &'static str, text: &str) -> Result<Level, RulesError> {
    match Level::parse(text) {
        Some(Level::None) | None => Err(RulesError::Exemption {
            axis,
            problem: format!(
                "unknown level {text:?} (known: general, larger, major, extraordinary)"
            ),
        }),
        Some(l) => Ok(l),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    exemption: RawExemption,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExemption {
    #[serde(default = "major")]
    investor_loss: String,
    #[serde(default = "major")]
    market_order: String,
}

impl Default for RawExemption {
    fn default() -> Self {
        RawExemption {
            investor_loss: major(),
            market_order: major(),
        }
    }
}

fn major() -> String {
    "major".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    axis: String,
    level: String,
    #[serde(default)]
    cite: String,
    #[serde(default)]
    when: RawWhen,
    #[serde(default)]
    all: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    event_kind: Option<Vec<String>>,
    category: Option<Vec<String>>,
    participant_kind: Option<Vec<String>>,
    system: Option<Vec<String>>,
    scope: Option<Vec<String>>,
    record_type: Option<Vec<String>>,
}

fn compile_rule(r: RawRule) -> Result<Rule, String> {
    let axis = Axis::parse(&r.axis).ok_or_else(|| {
        format!(
            "unknown axis {:?} (known: investor_loss, market_order)",
            r.axis
        )
    })?;
    let level = match Level::parse(&r.level) {
        Some(Level::None) | None => {
            return Err(format!(
                "unknown level {:?} (known: general, larger, major, extraordinary)",
                r.level
            ))
        }
        Some(l) => l,
    };
    let w = r.when;
    let when = Filter {
        event_kind: mask::<EventKind>("event_kind", &w.event_kind)?,
        category: mask::<Category>("category", &w.category)?,
        participant_kind: mask::<ParticipantKind>("participant_kind", &w.participant_kind)?,
        system: mask::<System>("system", &w.system)?,
        scope: mask::<Scope>("scope", &w.scope)?,
        record_type: mask::<RecordType>("record_type", &w.record_type)?,
    };
    if when.event_kind & EventKind::Heartbeat.bit() != 0 && when.event_kind != u32::MAX {
        return Err("when.event_kind: heartbeats carry no incident to grade".into());
    }
    let all = r
        .all
        .iter()
        .map(|c| Condition::parse(c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule {
        id: r.id.into(),
        axis,
        level,
        cite: r.cite.into(),
        when,
        all,
    })
}

fn mask<W: Word>(name: &str, values: &Option<Vec<String>>) -> Result<u32, String> {
    let Some(values) = values else {
        return Ok(u32::MAX);
    };
    if values.is_empty() {
        return Err(format!(
            "when.{name} is an empty list (it would match nothing; omit it to match all)"
        ));
    }
    values.iter().try_fold(0u32, |acc, v| match W::parse(v) {
        Some(w) => Ok(acc | w.bit()),
        None => {
            let known: Vec<&str> = W::all().iter().map(|w| w.as_str()).collect();
            Err(format!(
                "when.{name}: unknown value {v:?} (known: {})",
                known.join(", ")
            ))
        }
    })
}
