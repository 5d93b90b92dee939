//! The state of one incident, and how a report updates it.
//!
//! Invariants kept here: figures are cumulative maxima; `started_at` is the earliest reported;
//! `scope` once `full` stays `full`; `grade` and `peak_minutes` only rise; a resolved incident
//! takes no further reports.

use crate::decode::{
    Category, EventKind, Figures, IncidentReport, RecordType, Scope, Status, System,
};
use crate::registry::{Participant, ParticipantIdx};
use crate::score::grade::{Applicable, Reason, Subject};
use crate::score::level::{Exemption, Grade};
use crate::score::rules::Rules;
use crate::time::Timestamp;

/// What a report changed in an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// Anything grading reads.
    pub any: bool,
    /// The attributes rule filters read (so the applicable rules may differ).
    pub attributes: bool,
}

/// What the last firing alert of an incident said, to detect the next transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emitted {
    pub grade: Grade,
    pub exemption: Exemption,
}

#[derive(Clone, Debug)]
pub struct Incident {
    /// False once evicted; the slab slot is then free for reuse.
    pub live: bool,
    /// Bumped whenever a scheduled deadline of this slot is voided (and on reuse).
    pub generation: u32,
    pub participant: ParticipantIdx,
    pub incident_id: Box<str>,
    pub kind: EventKind,
    pub category: Category,
    pub system: Option<System>,
    pub scope: Option<Scope>,
    pub record_type: Option<RecordType>,
    pub started_at: Timestamp,
    /// `occurred_at` of the first report: with the ids, what identifies this incident (an
    /// id used again after eviction is another incident).
    pub first_reported_at: Timestamp,
    /// `occurred_at` of the latest report by event time.
    pub last_report_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub figures: Figures,
    /// Longest service duration graded so far (levels only rise, so neither does this).
    pub peak_minutes: f64,
    pub grade: Grade,
    /// The rules whose filters admit this incident (recomputed when attributes change).
    pub applicable: Applicable,
    pub scores: [u8; 2],
    /// The reasons given when each axis last rose (alerted): shown again if later figures or
    /// attributes no longer justify the level the incident holds.
    /// Boxed: rarely needed, and kept out of the hot part of the struct.
    pub reasons: Option<Box<[Vec<Reason>; 2]>>,
    pub emitted: Option<Emitted>,
    /// Counted as ineligible in the engine's census (open incidents only).
    pub ineligible: bool,
    /// Its loss of eligibility was counted (once per incident, whatever reloads do).
    pub lost_counted: bool,
    pub deadline: Option<Timestamp>,
    /// Engine time at which the open, alerted incident first stood at or above the reminder
    /// level: reminder k is due at `reminder_anchor + k x interval`. Persisted.
    pub reminder_anchor: Option<Timestamp>,
    /// Reminders emitted so far (the last k). Persisted.
    pub reminders_sent: u32,
    /// Engine time a person acknowledged the open incident (no more reminders; the grade
    /// stays). Persisted.
    pub acked_at: Option<Timestamp>,
    /// When the next reminder is due (what the reminder heap's live entry says); not persisted.
    pub next_reminder: Option<Timestamp>,
    /// A resolved incident: the engine time its retention ends and it is evicted. Persisted,
    /// so a restored incident keeps the retention it had.
    pub evict_at: Option<Timestamp>,
    /// Changed since the state was last handed out (`Engine::take_changes`).
    pub dirty: bool,
}

impl Incident {
    pub fn new(
        participant: ParticipantIdx,
        report: &IncidentReport<'_>,
        kind: EventKind,
        occurred_at: Timestamp,
        generation: u32,
    ) -> Incident {
        Incident {
            live: true,
            generation,
            participant,
            incident_id: report.incident_id.as_ref().into(),
            kind,
            category: report.category,
            started_at: report.started_at.unwrap_or(occurred_at),
            first_reported_at: occurred_at,
            last_report_at: occurred_at,
            ..Incident::placeholder()
        }
    }

    /// An empty, dead incident (a slab slot before it is filled).
    pub fn placeholder() -> Incident {
        Incident {
            live: false,
            generation: 0,
            participant: ParticipantIdx(0),
            incident_id: Box::default(),
            kind: EventKind::Infosec,
            category: Category::Other,
            system: None,
            scope: None,
            record_type: None,
            started_at: Timestamp::default(),
            first_reported_at: Timestamp::default(),
            last_report_at: Timestamp::default(),
            resolved_at: None,
            figures: Figures::default(),
            peak_minutes: 0.0,
            grade: Grade::default(),
            applicable: Applicable::default(),
            scores: [0; 2],
            reasons: None,
            emitted: None,
            ineligible: false,
            lost_counted: false,
            deadline: None,
            reminder_anchor: None,
            reminders_sent: 0,
            acked_at: None,
            next_reminder: None,
            evict_at: None,
            dirty: false,
        }
    }

    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }

    /// Folds a report into the state. Allocation-free. Says what changed that grading reads
    /// (if nothing did, the grade and the deadline cannot have changed either).
    pub fn merge(&mut self, report: &IncidentReport<'_>, occurred_at: Timestamp) -> Change {
        let before = (
            self.category,
            self.system,
            self.record_type,
            self.scope,
            self.started_at,
        );
        // Descriptive attributes follow the latest report by event time: a late or
        // redelivered older report cannot switch them back.
        if occurred_at >= self.last_report_at {
            self.last_report_at = occurred_at;
            self.category = report.category;
            self.system = report.system.or(self.system);
            self.record_type = report.record_type.or(self.record_type);
        }
        if self.scope != Some(Scope::Full) {
            self.scope = report.scope.or(self.scope);
        }
        let started = report.started_at.unwrap_or(occurred_at);
        self.started_at = self.started_at.min(started);
        let grew = self.figures.merge_max(&report.figures);
        if report.status == Status::Resolved {
            self.resolved_at = Some(occurred_at);
        }
        let after = (
            self.category,
            self.system,
            self.record_type,
            self.scope,
            self.started_at,
        );
        let attributes = before.0 != after.0
            || before.1 != after.1
            || before.2 != after.2
            || before.3 != after.3;
        Change {
            attributes,
            any: attributes || grew || before.4 != after.4 || report.status == Status::Resolved,
        }
    }

    /// Service duration in minutes at `now` (or at resolution), never below what was graded.
    pub fn minutes_at(&self, now: Timestamp) -> f64 {
        let end = self.resolved_at.unwrap_or(now);
        end.minutes_since(self.started_at).max(self.peak_minutes)
    }

    /// The rule subject of this incident at `now`, its trading minutes counted in the
    /// participant's calendar of `rules`.
    pub fn subject<'a>(&'a self, p: &Participant, rules: &'a Rules, now: Timestamp) -> Subject<'a> {
        let calendar = rules.calendar(&p.calendar);
        let end = self.resolved_at.unwrap_or(now);
        Subject {
            kind: self.kind,
            category: self.category,
            participant_kind: p.kind,
            system: self.system.unwrap_or(System::Other),
            scope: self.scope.unwrap_or(Scope::Partial),
            record_type: self.record_type.unwrap_or(RecordType::Personal),
            figures: &self.figures,
            minutes: self.minutes_at(now),
            trading_minutes: calendar.trading_minutes(self.started_at, end),
            effective_customers: p.effective_customers as f64,
            calendar,
            started_at: self.started_at,
        }
    }
}
