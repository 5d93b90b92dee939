//! The engine's durable state as records: what a daemon writes to its state topic so that a
//! restarted instance (or the new owner of a partition) resumes with the incidents it owned.
//!
//! One record per incident (key: participant + incident id, see [`incident_key`]) and one per watched participant
//! (its liveness). The engine marks what changed; [`crate::score::Engine::take_changes`] hands
//! out the latest state of each changed key once, and a tombstone for what it forgot.
//! Records are plain serde structs, serialised as JSON: readable with any Kafka tool. Fields
//! added later (the reminder schedule) default when absent, so older records still load.

use serde::{Deserialize, Serialize};

use super::grade::Reason;
use super::incident::{Emitted, Incident};
use super::level::{Exemption, Grade, Level};
use crate::decode::{Category, EventKind, Figure, Figures, RecordType, Scope, System, Word};
use crate::time::Timestamp;

/// Version of the record layout; a reader refuses versions it does not know.
pub const STATE_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StateRecord {
    Incident(Box<IncidentRecord>),
    Participant(ParticipantRecord),
    /// The partition's engine clock when the snapshot was taken: a restore starts there, so
    /// regwatch's own downtime is never graded as time that passed.
    Clock(ClockRecord),
    /// How many partitions the source topic had when this partition's state was first
    /// written: participants are keyed to partitions by that count, so a restore refuses to
    /// go on when it changed (one participant's incidents would be split over two
    /// partitions). Written and checked by the partition worker; the engine ignores it.
    Topic(TopicRecord),
    /// A participant's silences (operators' windows: its telemetry gaps and its incidents'
    /// reminders are held while one is active), expired ones kept (`crate::actions`).
    Silences(SilencesRecord),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SilencesRecord {
    pub v: u32,
    pub participant_id: String,
    pub silences: Vec<SilenceRecord>,
}

/// One silence window, like an Alertmanager silence: `[starts_at, ends_at)`, who made it
/// and why; expiring it early moves `ends_at` and names who did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SilenceRecord {
    pub silence_id: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub author: String,
    pub reason: String,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
}

impl SilenceRecord {
    /// Whether the window holds instant `at`.
    pub fn covers(&self, at: Timestamp) -> bool {
        self.starts_at <= at && at < self.ends_at
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub v: u32,
    pub partitions: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockRecord {
    pub v: u32,
    pub at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentRecord {
    pub v: u32,
    pub participant_id: String,
    pub incident_id: String,
    pub kind: String,
    pub category: String,
    pub system: Option<String>,
    pub scope: Option<String>,
    pub record_type: Option<String>,
    pub started_at_ms: i64,
    pub first_reported_at_ms: i64,
    pub last_report_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    /// Reported figures by name (largest value; for signed moves, largest magnitude).
    pub figures: Vec<(String, f64)>,
    pub peak_minutes: f64,
    pub investor_loss: Level,
    pub market_order: Level,
    pub scores: [u8; 2],
    /// Reasons given when each axis last rose (investor loss, market order).
    #[serde(default)]
    pub reasons: [Vec<Reason>; 2],
    /// What the last firing alert said, if one was sent.
    pub emitted: Option<EmittedRecord>,
    /// Engine time (ms) the incident first stood, alerted, at or above the reminder level: the
    /// anchor of its reminder schedule. Absent in records written before reminders existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_anchor_ms: Option<i64>,
    /// Reminders emitted so far (the last k).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reminders_sent: u32,
    /// Engine time (ms) a person acknowledged the incident (its reminders stop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at_ms: Option<i64>,
    /// A resolved incident: the engine time (ms) its retention ends. Absent in records
    /// written before it was kept (such an incident is kept a full retention from the restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evict_at_ms: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmittedRecord {
    pub investor_loss: Level,
    pub market_order: Level,
    pub exemption: Exemption,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParticipantRecord {
    pub v: u32,
    pub participant_id: String,
    pub heard_at_ms: i64,
    pub silent: bool,
    /// The gap was held by a silence: not alerted (so its end is not either).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gap_held: bool,
}

/// One change handed out by `take_changes`.
#[derive(Clone, Debug, PartialEq)]
pub enum StateChange {
    Put(StateRecord),
    /// The record of this key (an evicted incident, a forgotten participant's liveness)
    /// should be deleted: a tombstone.
    Deleted(String),
}

impl StateRecord {
    /// The compaction key of the record, unique per participant and incident.
    pub fn key(&self) -> String {
        match self {
            StateRecord::Incident(r) => incident_key(&r.participant_id, &r.incident_id),
            StateRecord::Participant(r) => participant_key(&r.participant_id),
            StateRecord::Clock(_) => CLOCK_KEY.to_string(),
            StateRecord::Topic(_) => TOPIC_KEY.to_string(),
            StateRecord::Silences(r) => silences_key(&r.participant_id),
        }
    }

    /// The latest engine instant the record knows of (a restore without a clock record
    /// starts at the latest of these).
    pub fn latest_instant(&self) -> i64 {
        match self {
            StateRecord::Incident(r) => r
                .last_report_at_ms
                .max(r.resolved_at_ms.unwrap_or(i64::MIN)),
            StateRecord::Participant(r) => r.heard_at_ms,
            StateRecord::Clock(r) => r.at_ms,
            StateRecord::Topic(_) | StateRecord::Silences(_) => i64::MIN,
        }
    }
}

/// The key of the partition's clock record.
pub const CLOCK_KEY: &str = "c";

/// The key of the partition's topic record.
pub const TOPIC_KEY: &str = "t";

/// `i|<length of the participant id>|<participant id>|<incident id>`: the length keeps keys
/// apart when ids contain `|`.
pub fn incident_key(participant_id: &str, incident_id: &str) -> String {
    format!("i|{}|{participant_id}|{incident_id}", participant_id.len())
}

pub fn participant_key(participant_id: &str) -> String {
    format!("p|{participant_id}")
}

pub fn silences_key(participant_id: &str) -> String {
    format!("s|{participant_id}")
}

impl IncidentRecord {
    pub(super) fn from_incident(participant_id: &str, inc: &Incident) -> IncidentRecord {
        IncidentRecord {
            v: STATE_VERSION,
            participant_id: participant_id.to_string(),
            incident_id: inc.incident_id.to_string(),
            kind: inc.kind.as_str().to_string(),
            category: inc.category.as_str().to_string(),
            system: inc.system.map(|s| s.as_str().to_string()),
            scope: inc.scope.map(|s| s.as_str().to_string()),
            record_type: inc.record_type.map(|s| s.as_str().to_string()),
            started_at_ms: inc.started_at.millis(),
            first_reported_at_ms: inc.first_reported_at.millis(),
            last_report_at_ms: inc.last_report_at.millis(),
            resolved_at_ms: inc.resolved_at.map(Timestamp::millis),
            figures: inc
                .figures
                .iter()
                .map(|(f, v)| (f.as_str().to_string(), v))
                .collect(),
            peak_minutes: inc.peak_minutes,
            investor_loss: inc.grade.investor_loss,
            market_order: inc.grade.market_order,
            scores: inc.scores,
            reasons: inc.reasons.as_deref().cloned().unwrap_or_default(),
            emitted: inc.emitted.map(|e| EmittedRecord {
                investor_loss: e.grade.investor_loss,
                market_order: e.grade.market_order,
                exemption: e.exemption,
            }),
            reminder_anchor_ms: inc.reminder_anchor.map(Timestamp::millis),
            reminders_sent: inc.reminders_sent,
            acked_at_ms: inc.acked_at.map(Timestamp::millis),
            evict_at_ms: inc.evict_at.map(Timestamp::millis),
        }
    }

    /// Checks every field; the error says which one is bad.
    pub(super) fn parts(&self) -> Result<RestoredParts, String> {
        if self.v != STATE_VERSION {
            return Err(format!("unknown state record version {}", self.v));
        }
        fn word<W: Word>(name: &str, v: &str) -> Result<W, String> {
            W::parse(v).ok_or_else(|| format!("bad {name} {v:?}"))
        }
        fn opt<W: Word>(name: &str, v: &Option<String>) -> Result<Option<W>, String> {
            v.as_deref().map(|v| word(name, v)).transpose()
        }
        let mut figures = Figures::default();
        for (name, value) in &self.figures {
            let f: Figure = word("figure", name)?;
            figures.set(f, *value);
        }
        Ok(RestoredParts {
            kind: word("kind", &self.kind)?,
            category: word("category", &self.category)?,
            system: opt("system", &self.system)?,
            scope: opt("scope", &self.scope)?,
            record_type: opt("record_type", &self.record_type)?,
            figures,
            grade: Grade {
                investor_loss: self.investor_loss,
                market_order: self.market_order,
            },
            emitted: self.emitted.map(|e| Emitted {
                grade: Grade {
                    investor_loss: e.investor_loss,
                    market_order: e.market_order,
                },
                exemption: e.exemption,
            }),
        })
    }
}

/// The typed fields of an [`IncidentRecord`].
pub(super) struct RestoredParts {
    pub kind: EventKind,
    pub category: Category,
    pub system: Option<System>,
    pub scope: Option<Scope>,
    pub record_type: Option<RecordType>,
    pub figures: Figures,
    pub grade: Grade,
    pub emitted: Option<Emitted>,
}
