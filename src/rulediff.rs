//! `regwatch rules diff OLD NEW`: a reload's dry run. It compares the two grids rule by rule
//! (added, removed, changed, where the exemption is lost), and with a configuration it reads
//! every events partition's state as a restore would, regrades the open incidents under NEW
//! exactly as a reload does (`Engine::set_rules`: levels reached stay, higher ones are
//! alerted with trigger `reload`) and shows each incident that would change. Read only:
//! nothing is written to Kafka.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;

use crate::alert::Alert;
use crate::config::Config;
use crate::score::{Axis, Engine, Exemption, Grade, Level, Rule, Rules};

/// One rule that differs between the grids (matched by id).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleChange {
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    pub axis: Axis,
    pub id: String,
    /// The rule as OLD has it (absent when added).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    /// The rule as NEW has it (absent when removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

/// Where an axis loses the exemption, when the grids disagree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LineChange {
    pub axis: Axis,
    pub old: Level,
    pub new: Level,
}

/// An incident's standing on both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub investor_loss: Level,
    pub market_order: Level,
    pub exemption: Exemption,
}

impl Standing {
    fn of(g: Grade, rules: &Rules) -> Standing {
        Standing {
            investor_loss: g.investor_loss,
            market_order: g.market_order,
            exemption: rules.exemption(g),
        }
    }

    fn level(&self, axis: Axis) -> Level {
        match axis {
            Axis::InvestorLoss => self.investor_loss,
            Axis::MarketOrder => self.market_order,
        }
    }
}

/// One open incident a reload to NEW would change, or whose held level NEW alone no longer
/// justifies (it keeps it: levels never fall while open).
#[derive(Clone, Debug, Serialize)]
pub struct IncidentChange {
    pub topic: String,
    pub partition: i32,
    pub participant_id: String,
    pub incident_id: String,
    /// What it holds now.
    pub before: Standing,
    /// What it would hold after the reload.
    pub after: Standing,
    /// What NEW alone justifies now, held levels set aside.
    pub justified: Standing,
    /// The alert the reload would send (trigger `reload`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
}

/// The whole dry run.
#[derive(Debug, Serialize)]
pub struct Diff {
    pub old_sha256: String,
    pub new_sha256: String,
    pub rules: Vec<RuleChange>,
    pub exemption_lines: Vec<LineChange>,
    /// Events partitions whose state was read (none without a configuration).
    pub partitions: Vec<String>,
    pub open_incidents: usize,
    pub incidents: Vec<IncidentChange>,
}

impl Diff {
    /// Whether a reload from OLD to NEW would change anything shown here.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.exemption_lines.is_empty() && self.incidents.is_empty()
    }
}

/// How a rule reads, for a diff line: `major if a >= 1 and b > 2 [filters] (cite)`.
fn describe(r: &Rule) -> String {
    let all: Vec<String> = r
        .all
        .iter()
        .map(|c| format!("{} {} {}", c.metric.name(), c.op.as_str(), c.threshold))
        .collect();
    let filtered = if r.when == crate::score::Filter::ANY {
        ""
    } else {
        " [filtered]"
    };
    format!(
        "{} if {}{filtered} ({})",
        r.level,
        all.join(" and "),
        r.cite
    )
}

/// The rules that differ, matched by id within each axis, and the exemption lines that moved.
pub fn grids(old: &Rules, new: &Rules) -> (Vec<RuleChange>, Vec<LineChange>) {
    let mut rules = Vec::new();
    let mut lines = Vec::new();
    for axis in Axis::ALL {
        let (o, n) = (old.of(axis), new.of(axis));
        for r in o {
            match n.iter().find(|x| x.id == r.id) {
                None => rules.push(RuleChange {
                    change: "removed",
                    axis,
                    id: r.id.to_string(),
                    old: Some(describe(r)),
                    new: None,
                }),
                Some(x) if x != r => rules.push(RuleChange {
                    change: "changed",
                    axis,
                    id: r.id.to_string(),
                    old: Some(describe(r)),
                    new: Some(describe(x)),
                }),
                Some(_) => {}
            }
        }
        for x in n.iter().filter(|x| !o.iter().any(|r| r.id == x.id)) {
            rules.push(RuleChange {
                change: "added",
                axis,
                id: x.id.to_string(),
                old: None,
                new: Some(describe(x)),
            });
        }
        let (lo, ln) = (old.exemption_line(axis), new.exemption_line(axis));
        if lo != ln {
            lines.push(LineChange {
                axis,
                old: lo,
                new: ln,
            });
        }
    }
    (rules, lines)
}

/// Each open incident's standing in `engine`, by participant and incident id.
fn standings(engine: &Engine) -> HashMap<(String, String), Standing> {
    engine
        .incident_views(None, Level::None)
        .into_iter()
        .map(|v| {
            let s = Standing {
                investor_loss: v.investor_loss.level,
                market_order: v.market_order.level,
                exemption: v.exemption,
            };
            ((v.participant_id, v.incident_id), s)
        })
        .collect()
}

/// Regrades a restored engine's open incidents under `new` as a reload does and returns
/// those that change (or hold a level `new` alone no longer justifies), and how many were
/// open. The engine runs `new` afterwards.
pub fn regrade(engine: &mut Engine, new: Arc<Rules>) -> (Vec<IncidentChange>, usize) {
    let before = standings(engine);
    let justified = engine.justified_under(&new);
    let mut alerts = Vec::new();
    engine.set_rules(new.clone(), &mut alerts);
    let after = standings(engine);
    let mut changes = Vec::new();
    for j in justified {
        let k = (j.participant_id.clone(), j.incident_id.clone());
        let (Some(&before), Some(&after)) = (before.get(&k), after.get(&k)) else {
            continue;
        };
        let justified = Standing::of(j.grade, &new);
        if before == after && justified == after {
            continue;
        }
        let alert = alerts
            .iter()
            .position(|a| {
                a.participant_id == j.participant_id
                    && a.incident_id.as_deref() == Some(&j.incident_id)
            })
            .map(|i| alerts.swap_remove(i));
        changes.push(IncidentChange {
            topic: String::new(),
            partition: 0,
            participant_id: j.participant_id,
            incident_id: j.incident_id,
            before,
            after,
            justified,
            alert,
        });
    }
    let open = before.len();
    changes.sort_by(|a, b| {
        (&a.participant_id, &a.incident_id).cmp(&(&b.participant_id, &b.incident_id))
    });
    (changes, open)
}

/// The partitions of the events topics `cfg` consumes (or of `topics`, when given), in
/// order.
pub fn source_partitions(cfg: &Config, topics: &[String]) -> anyhow::Result<Vec<(String, i32)>> {
    let c = crate::ingest::closing::OffThread::new(
        "state reader",
        crate::ingest::client::reader(&cfg.kafka).create::<BaseConsumer>()?,
    );
    let md = c
        .fetch_metadata(None, Duration::from_secs(15))
        .with_context(|| format!("cluster metadata from {}", cfg.kafka.brokers))?;
    let matcher = cfg.kafka.topics.matcher()?;
    let pattern = matches!(cfg.kafka.topics, crate::config::TopicSelection::Pattern(_));
    let mut out = Vec::new();
    for t in md.topics() {
        let wanted = if topics.is_empty() {
            crate::ingest::client::subscribed(&matcher, pattern, t.name())
        } else {
            topics.iter().any(|x| x == t.name())
        };
        if wanted {
            out.extend(
                t.partitions()
                    .iter()
                    .map(|p| (t.name().to_string(), p.id())),
            );
        }
    }
    for t in topics {
        anyhow::ensure!(out.iter().any(|(x, _)| x == t), "topic {t} not found");
    }
    out.sort();
    Ok(out)
}

/// The dry run: the grids' differences and, with `cfg`, each events partition's open
/// incidents regraded under `new` (their state read as a restore reads it).
pub fn run(
    cfg: Option<&Config>,
    old: Arc<Rules>,
    new: Arc<Rules>,
    topics: &[String],
) -> anyhow::Result<Diff> {
    let (rules, exemption_lines) = grids(&old, &new);
    let mut diff = Diff {
        old_sha256: old.digest().to_string(),
        new_sha256: new.digest().to_string(),
        rules,
        exemption_lines,
        partitions: Vec::new(),
        open_incidents: 0,
        incidents: Vec::new(),
    };
    let Some(cfg) = cfg else {
        return Ok(diff);
    };
    crate::config::check_calendars(&cfg.registry, new.calendars())
        .map_err(|e| anyhow::anyhow!("NEW: {e}"))?;
    let registry = Arc::new(cfg.registry.clone());
    let mut settings = cfg.engine.clone();
    settings.record_history = false;
    for (topic, partition) in source_partitions(cfg, topics)? {
        let loaded = crate::ingest::inspect::read(&cfg.kafka, &topic, partition)
            .with_context(|| format!("state of {topic}[{partition}]"))?;
        let mut engine = Engine::new(registry.clone(), old.clone(), settings.clone());
        engine.restore(loaded.records);
        let (changes, open) = regrade(&mut engine, new.clone());
        diff.open_incidents += open;
        diff.partitions.push(format!("{topic}[{partition}]"));
        diff.incidents.extend(changes.into_iter().map(|mut c| {
            c.topic = topic.clone();
            c.partition = partition;
            c
        }));
    }
    Ok(diff)
}

fn exemption(e: Exemption) -> &'static str {
    match e {
        Exemption::Eligible => "eligible",
        Exemption::Ineligible => "ineligible",
    }
}

/// The dry run as text, a line per difference.
pub fn render(diff: &Diff, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "rules: sha256 {} -> {}",
        &diff.old_sha256[..12.min(diff.old_sha256.len())],
        &diff.new_sha256[..12.min(diff.new_sha256.len())]
    )?;
    if diff.rules.is_empty() && diff.exemption_lines.is_empty() {
        writeln!(out, "  the grids grade alike")?;
    }
    for r in &diff.rules {
        let axis = r.axis.as_str();
        match (&r.old, &r.new) {
            (Some(o), Some(n)) => writeln!(out, "  {axis} {} changed: {o}\n      now: {n}", r.id)?,
            (None, Some(n)) => writeln!(out, "  {axis} {} added: {n}", r.id)?,
            (Some(o), None) => writeln!(out, "  {axis} {} removed: {o}", r.id)?,
            (None, None) => {}
        }
    }
    for l in &diff.exemption_lines {
        writeln!(
            out,
            "  {}: exemption lost at {} (was {})",
            l.axis.as_str(),
            l.new,
            l.old
        )?;
    }
    if diff.partitions.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "open incidents: {} in {} partitions; {} would change",
        diff.open_incidents,
        diff.partitions.len(),
        diff.incidents
            .iter()
            .filter(|c| c.before != c.after)
            .count()
    )?;
    for c in &diff.incidents {
        let mut parts = Vec::new();
        for axis in Axis::ALL {
            let (b, a, j) = (
                c.before.level(axis),
                c.after.level(axis),
                c.justified.level(axis),
            );
            if b != a {
                parts.push(format!("{} {b} -> {a}", axis.as_str()));
            } else if j < a {
                parts.push(format!(
                    "{} stays {a} (NEW alone justifies {j}; levels never fall while open)",
                    axis.as_str()
                ));
            }
        }
        if c.before.exemption != c.after.exemption {
            parts.push(format!(
                "exemption {} -> {}",
                exemption(c.before.exemption),
                exemption(c.after.exemption)
            ));
        }
        if let Some(a) = &c.alert {
            let reasons: Vec<String> = [&a.investor_loss, &a.market_order]
                .iter()
                .flat_map(|r| r.reasons.iter())
                .filter(|r| r.level > Level::General)
                .map(|r| {
                    format!(
                        "{} ({} {} {} {})",
                        r.rule, r.metric, r.observed, r.op, r.threshold
                    )
                })
                .collect();
            parts.push(format!(
                "alert {} (trigger reload{}{})",
                a.alert_id,
                if reasons.is_empty() { "" } else { ": " },
                reasons.join(", ")
            ));
        }
        writeln!(
            out,
            "  {}/{} ({}[{}]): {}",
            c.participant_id,
            c.incident_id,
            c.topic,
            c.partition,
            parts.join("; ")
        )?;
    }
    Ok(())
}
