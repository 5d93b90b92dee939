//! The pure, synchronous grading engine: events and time in, graded incidents and alerts out.
//!
//! Data flow inside: [`Engine`] keeps per-participant incident state (`incident.rs`), asks the
//! compiled grid ([`Rules`], `rules.rs`, evaluated in `grade.rs`) for levels, schedules the
//! instants at which time alone changes a level (`timers.rs`), watches for silent participants
//! (`liveness.rs`), drops redelivered events (`dedup.rs`) and builds alerts on transitions
//! (`emit.rs`).
//!
//! Architecture invariant: nothing in this module does I/O, awaits, locks, or reads a clock.

mod dedup;
mod emit;
pub use emit::IncidentView;
mod engine;
mod grade;
mod incident;
mod level;
mod liveness;
mod rules;
mod state;
mod timers;

pub use engine::{
    Census, ClockMode, Engine, EngineSettings, EngineStats, Justified, Outcome, ParticipantCensus,
    ReportEntry, RestoreSummary, MAX_OVERDUE_REMINDERS,
};
pub use grade::{AxisReport, Reason, Subject, FLOOR_RULE};
pub use level::{Axis, Exemption, Grade, Level};
pub use rules::{Condition, Filter, Metric, Op, Rule, Rules, RulesError, DEFAULT_RULES};
pub use state::{
    incident_key, participant_key, silences_key, ClockRecord, EmittedRecord, IncidentRecord,
    ParticipantRecord, SilenceRecord, SilencesRecord, StateChange, StateRecord, TopicRecord,
    CLOCK_KEY, STATE_VERSION, TOPIC_KEY,
};
