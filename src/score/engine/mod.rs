//! The engine: events and the passing of time in, alerts out. Pure and synchronous.
//!
//! One `Engine` owns the state of the participants it is given events for; it does no I/O,
//! never awaits, takes no lock, and for an event about an already-known incident allocates
//! nothing unless an alert is emitted (the `alloc` test target proves it).
//!
//! Time: the engine clock only moves forward. In [`ClockMode::EventTime`] (replay) each event
//! first advances it to its `occurred_at`; in [`ClockMode::External`] (the daemon) the caller
//! advances it with the partition's event-time clock (`ingest/clock.rs`: record timestamps
//! while behind, wall time once caught up). Advancing fires, in due order, every deadline that
//! passed: escalations of open incidents, telemetry gaps, forgotten liveness, reminders and
//! evictions of resolved incidents (at one instant in that order, so a reminder shows an
//! escalation due with it). Escalation deadlines of `trading_minutes` conditions are instants
//! of the participant's market calendar (`calendar/`): they skip breaks, nights, weekends and
//! holidays.
//!
//! Layout: this file holds the types and entry points; `report.rs` applies reports,
//! `clock.rs` advances time (and is the one place that schedules a deadline), `reminders.rs`,
//! `watch.rs` (telemetry gaps), `silences.rs` (operators' silences), `actions.rs`, `census.rs`, `persist.rs` (state records and restore) and
//! `slots.rs` (the one place that allocates a slot; evictions and fairness at capacity).
//!
//! Reminders (off unless `reminder_interval_ms` > 0; replay always runs without them): when an
//! open incident that has been alerted first stands at or above `reminder_min_level`, at
//! engine time t0 (its *anchor*), reminder k (1, 2, ...) is due at t0 + k x interval until the
//! incident is resolved or evicted. Each is an [`Alert`] with trigger `reminder`, the
//! incident's current state at the due time, `reminder = k`, `reminder_of` = the id of its
//! latest real alert, and an id of its own (`alert/mod.rs`). They live in a second heap
//! beside the escalations (an incident's next reminder is `Incident::next_reminder`, so
//! rescheduling an escalation never voids it). When the clock jumps over several due times,
//! every passed k fires, each at its own due time: a restart or a rebalance then gives
//! exactly the reminders, with the same ids, an uninterrupted run gives. A jump over more
//! than [`MAX_OVERDUE_REMINDERS`] of them fires only the latest that many (k keeps
//! counting). The anchor and the last k are part of the incident's state record, so a
//! restored incident keeps its schedule; one restored from a record without an anchor
//! (written before reminders, or with them off) that qualifies is anchored at the restore.
//! A changed interval applies from the next reminder on, from the same anchor.
//!
//! Bounds: at most `max_incidents` incidents (open plus retained resolved ones) and
//! `max_open_per_participant` open ones per participant. A new incident beyond a bound first
//! evicts a retained resolved incident early (its own participant's oldest, or, below its fair
//! share, that of a participant above its share: `slots.rs`); when none may go it is refused with
//! [`Reject::EngineCapacity`] / [`Reject::ParticipantCapacity`], which the caller counts and
//! dead-letters. Event-id memory is bounded by `dedup_window` events (`dedup.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use super::dedup::{event_hash, Dedup};
use super::emit::{gap_alert, incident_alert, incident_view, reminder_alert, IncidentView};
use super::incident::{Emitted, Incident};
use super::level::{Exemption, Grade, Level};
use super::liveness::Liveness;
use super::rules::Rules;
use super::state::{
    incident_key, participant_key, ClockRecord, IncidentRecord, ParticipantRecord, StateChange,
    StateRecord, STATE_VERSION,
};
use super::timers::{Deadlines, Due, Evictions, Slot};
use crate::alert::{Alert, AlertStatus, Trigger};
use crate::decode::Reject;
use crate::decode::{decode, Event, IncidentReport, MAX_EVENT_BYTES};
use crate::registry::{ParticipantIdx, Registry};
use crate::time::{Timestamp, MS_PER_MINUTE};

mod actions;
mod census;
mod clock;
mod history;
mod persist;
mod preview;
mod reminders;
mod report;
mod silences;
mod slots;
mod watch;

pub use census::{Census, ParticipantCensus};
use clock::reminder_live;
pub use history::ReportEntry;
pub use persist::RestoreSummary;
pub use preview::Justified;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockMode {
    /// The clock is the highest `occurred_at` seen (replay).
    EventTime,
    /// The caller advances the clock (the live daemon, with wall time).
    External,
}

/// Engine tuning; every field has a documented default (see `config.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct EngineSettings {
    pub clock: ClockMode,
    pub max_event_bytes: usize,
    pub max_incidents: usize,
    pub max_open_per_participant: usize,
    pub dedup_window: usize,
    /// How long a resolved incident is kept (to ignore late reports), in milliseconds.
    pub retention_ms: i64,
    /// Silence longer than this raises a telemetry gap; 0 disables the check.
    pub telemetry_gap_ms: i64,
    /// Incident alerts start once the incident reaches this level.
    pub min_alert_level: Level,
    /// Watch every registered participant for silence from start-up (replay); otherwise
    /// each from its first message (the daemon: a partition's engine sees only its own).
    pub watch_all_from_start: bool,
    /// Record what changed for `take_changes` (the daemon persists it; replay does not).
    pub track_changes: bool,
    /// Reminder interval for unresolved incidents at or above `reminder_min_level`, in
    /// milliseconds; 0 disables reminders (the default here; the configuration's is 1h).
    pub reminder_interval_ms: i64,
    /// Reminders start once an open, alerted incident reaches this level.
    pub reminder_min_level: Level,
    /// A participant reported silent and not heard for this long (milliseconds since it was
    /// last heard) is forgotten: no longer watched, its liveness deleted from the state, until
    /// it is heard again. A partition's engine stops watching participants whose messages now
    /// go elsewhere. 0 keeps them forever; ignored with `watch_all_from_start`.
    pub liveness_retention_ms: i64,
    /// Note every report that changes an incident and the view of every changed incident,
    /// for the history topic (`drain_reports`, `take_views`; needs `track_changes`).
    pub record_history: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            clock: ClockMode::EventTime,
            max_event_bytes: MAX_EVENT_BYTES,
            max_incidents: 100_000,
            max_open_per_participant: 1_000,
            dedup_window: 16_384,
            retention_ms: 24 * 60 * MS_PER_MINUTE,
            telemetry_gap_ms: 5 * MS_PER_MINUTE,
            min_alert_level: Level::General,
            watch_all_from_start: true,
            track_changes: false,
            reminder_interval_ms: 0,
            reminder_min_level: Level::Major,
            liveness_retention_ms: 0,
            record_history: false,
        }
    }
}

/// What became of an accepted event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Heartbeat,
    /// An incident report was applied (it may or may not have raised alerts).
    Graded,
    /// The `event_id` was seen recently: nothing changed.
    Duplicate,
    /// The incident is already resolved: the report was ignored.
    AfterResolution,
}

/// Counters the engine keeps about itself (exported as metrics by the daemon).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub incidents_opened: u64,
    pub incidents_resolved: u64,
    pub evicted: u64,
    pub evicted_early: u64,
    pub duplicates: u64,
    pub after_resolution: u64,
    pub telemetry_gaps: u64,
    /// Silent participants forgotten after the liveness retention.
    pub liveness_forgotten: u64,
    /// Telemetry gaps held by a silence when they fell due.
    pub gaps_silenced: u64,
    /// Reminders not sent because a silence covered their due time.
    pub reminders_silenced: u64,
}

/// The most reminders of one incident a single clock jump fires (the latest ones).
pub const MAX_OVERDUE_REMINDERS: u32 = 24;

#[derive(Default)]
struct ParticipantState {
    incidents: HashMap<Box<str>, Slot, foldhash::fast::RandomState>,
    open: usize,
    /// Liveness changed since the state was last handed out.
    dirty: bool,
    /// This participant's retained resolved incidents, in eviction order (the engine-wide
    /// queue restricted to it; entries evicted early elsewhere are skipped when met).
    retained: std::collections::VecDeque<Due>,
    census: ParticipantCensus,
    /// Operators' silence windows (`silences.rs`), expired ones kept.
    silences: Vec<crate::score::state::SilenceRecord>,
    silences_dirty: bool,
    /// Its gap is held by a silence until then (`silences.rs`).
    held_until: Option<Timestamp>,
}

#[derive(Clone, Copy)]
enum Cause<'a> {
    Report(&'a str),
    Clock,
    Reload,
    /// A person closed the incident.
    Closed,
}

pub struct Engine {
    rules: Arc<Rules>,
    registry: Arc<Registry>,
    settings: EngineSettings,
    clock: Option<Timestamp>,
    participants: Vec<ParticipantState>,
    slab: Vec<Incident>,
    free: Vec<Slot>,
    in_use: usize,
    open: usize,
    deadlines: Deadlines,
    /// Next reminder of each incident that has one (`Due::generation` is unused: see
    /// `reminder_live`).
    reminders: Deadlines,
    evictions: Evictions,
    liveness: Option<Liveness>,
    dedup: Dedup,
    changes: Changes,
    /// The clock last handed out as a state record.
    clock_persisted: Option<Timestamp>,
    stats: EngineStats,
    census: Census,
    history: history::History,
    /// Participants whose gap a silence holds (few: a linear scan finds the next due).
    held: Vec<ParticipantIdx>,
}

/// What changed since the last `take_changes` (only with `track_changes`).
#[derive(Default)]
struct Changes {
    incidents: Vec<Slot>,
    participants: Vec<ParticipantIdx>,
    evicted: Vec<(ParticipantIdx, Box<str>)>,
    /// Participants whose liveness was forgotten.
    forgotten: Vec<ParticipantIdx>,
    /// Participants whose silences changed.
    silences: Vec<ParticipantIdx>,
}

impl Engine {
    /// The bytes of one incident's slot in the slab (open or retained resolved), beside the
    /// heap it holds.
    pub const SLOT_BYTES: usize = std::mem::size_of::<Incident>();

    pub fn new(registry: Arc<Registry>, rules: Arc<Rules>, settings: EngineSettings) -> Engine {
        let participants = (0..registry.len())
            .map(|_| ParticipantState::default())
            .collect();
        Engine {
            rules,
            registry,
            clock: None,
            participants,
            slab: Vec::new(),
            free: Vec::new(),
            in_use: 0,
            open: 0,
            deadlines: Deadlines::with_capacity(1024),
            reminders: Deadlines::with_capacity(0),
            evictions: Evictions::default(),
            liveness: None,
            dedup: Dedup::new(settings.dedup_window),
            changes: Changes::default(),
            clock_persisted: None,
            stats: EngineStats::default(),
            census: Census::default(),
            history: Default::default(),
            held: Vec::new(),
            settings,
        }
    }

    /// Swaps the grid and regrades every open incident under it at once: levels they already
    /// reached stay (levels never fall while open), higher ones the new grid justifies are
    /// alerted with trigger `reload`, and deadlines are recomputed.
    pub fn set_rules(&mut self, rules: Arc<Rules>, out: &mut Vec<Alert>) {
        self.rules = rules;
        let Some(now) = self.clock else {
            return;
        };
        for slot in 0..self.slab.len() as Slot {
            let inc = &mut self.slab[slot as usize];
            if !inc.live || !inc.is_open() {
                continue;
            }
            let participant = self.registry.get(inc.participant);
            inc.applicable = self
                .rules
                .applicable(&inc.subject(participant, &self.rules, now));
            self.incident_changed(slot);
            self.evaluate(slot, now, Cause::Reload, out);
        }
    }

    /// Turns reminders off for good (replay: its output is the contract's alerts only).
    pub fn disable_reminders(&mut self) {
        self.settings.reminder_interval_ms = 0;
        for inc in &mut self.slab {
            inc.next_reminder = None;
        }
    }

    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn clock(&self) -> Option<Timestamp> {
        self.clock
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    pub fn open_incidents(&self) -> usize {
        self.open
    }

    /// Participants this engine holds incidents of (open or retained after resolution).
    pub fn participants_held(&self) -> impl Iterator<Item = ParticipantIdx> + '_ {
        self.participants
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.incidents.is_empty())
            .map(|(i, _)| ParticipantIdx(i as u32))
    }

    /// The open incidents of `participant` (all when `None`) at `min_level` or above, in no
    /// particular order (for the incident API, which merges and sorts the workers' answers;
    /// allocates, off the hot path).
    pub fn incident_views(&self, participant: Option<&str>, min_level: Level) -> Vec<IncidentView> {
        let now = self.clock.unwrap_or_default();
        let only = participant.map(|id| self.registry.lookup(id));
        self.slab
            .iter()
            .filter(|inc| inc.live && inc.is_open() && inc.grade.overall() >= min_level)
            .filter(|inc| only.is_none_or(|p| p == Some(inc.participant)))
            .map(|inc| incident_view(&self.rules, self.registry.get(inc.participant), inc, now))
            .collect()
    }

    /// Incidents held, open and retained resolved ones.
    pub fn incidents_held(&self) -> usize {
        self.in_use
    }

    /// Decodes and applies one message value.
    pub fn process(&mut self, bytes: &[u8], out: &mut Vec<Alert>) -> Result<Outcome, Reject> {
        let event = decode(bytes, &self.registry, self.settings.max_event_bytes)?;
        self.apply(&event, out)
    }

    /// Applies one decoded event; alerts it causes are appended to `out`.
    pub fn apply(&mut self, event: &Event<'_>, out: &mut Vec<Alert>) -> Result<Outcome, Reject> {
        if self.settings.clock == ClockMode::EventTime {
            self.advance_to(event.occurred_at, out);
        }
        // With an external clock, a participant's timestamp never moves the clock; before the
        // caller's first advance the event's own time stands in for this event only.
        let now = self.clock.unwrap_or(event.occurred_at);
        let p = event.participant;
        let hash = event_hash(p.0, &event.event_id);
        let Some(ticket) = self.dedup.check(hash) else {
            self.stats.duplicates += 1;
            return Ok(Outcome::Duplicate);
        };
        // Only an accepted event is hearing from its participant (CONTRACT.md section 1): a
        // report the engine refuses leaves liveness alone. A gap it ends is alerted before
        // what the report raised.
        let mark = out.len();
        let outcome = match &event.incident {
            None => Outcome::Heartbeat,
            Some(report) => self.report(event, report, now, out)?,
        };
        let raised = out.len();
        self.heard(p, now, out);
        let ended = out.len() - raised;
        out[mark..].rotate_right(ended);
        // Nothing touched the window since the check.
        self.dedup.commit(ticket);
        Ok(outcome)
    }
}
