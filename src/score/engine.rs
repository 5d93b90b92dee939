//! The engine: events and the passing of time in, alerts out. Pure and synchronous.
//!
//! One `Engine` owns the state of the participants it is given events for; it does no I/O,
//! never awaits, takes no lock, and for an event about an already-known incident allocates
//! nothing unless an alert is emitted (the `alloc` test target proves it).
//!
//! Time: the engine clock only moves forward. In [`ClockMode::EventTime`] (replay) each event
//! first advances it to its `occurred_at`; in [`ClockMode::External`] (the daemon) the caller
//! advances it with wall time. Advancing fires, in due order, every deadline that passed:
//! escalations of open incidents, telemetry gaps, reminders and evictions of resolved
//! incidents (at one instant in that order, so a reminder shows an escalation due with it).
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
//! evicts the oldest retained resolved incident early; when none is left it is refused with
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
    incident_key, participant_key, IncidentRecord, ParticipantRecord, StateChange, StateRecord,
    STATE_VERSION,
};
use super::timers::{Deadlines, Due, Evictions, Slot};
use crate::alert::{Alert, AlertStatus, Trigger};
use crate::decode::Reject;
use crate::decode::{decode, Event, IncidentReport, MAX_EVENT_BYTES};
use crate::registry::{ParticipantIdx, Registry};
use crate::time::{Timestamp, MS_PER_MINUTE};

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
}

/// What an engine holds now, kept up to date on every transition (never by scanning), for
/// the daemon's gauges: open incidents by axis and level, and per participant the open
/// incidents that lost exemption eligibility, how many ever did, and telemetry gaps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// `[axis][level rank]`, axis 0 investor loss, 1 market order, 2 overall.
    pub open_by_level: [[u32; 5]; 3],
    /// Participants currently silent (a telemetry gap is firing).
    pub silent: u32,
}

/// One participant's share of the census.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParticipantCensus {
    pub ineligible_open: u32,
    /// Incidents that became ineligible, ever (on this engine).
    pub lost_exemption: u64,
    pub gaps: u64,
}

/// How stale a persisted `heard_at` may be (see `Engine::heard`).
const LIVENESS_PERSIST_MS: i64 = 10_000;

/// The most reminders of one incident a single clock jump fires (the latest ones).
pub const MAX_OVERDUE_REMINDERS: u32 = 24;

#[derive(Default)]
struct ParticipantState {
    incidents: HashMap<Box<str>, Slot, foldhash::fast::RandomState>,
    open: usize,
    /// Liveness changed since the state was last handed out.
    dirty: bool,
    /// The `heard_at` last marked for persistence.
    persisted_heard: Timestamp,
    census: ParticipantCensus,
}

#[derive(Clone, Copy)]
enum Cause<'a> {
    Report(&'a str),
    Clock,
    Reload,
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
    stats: EngineStats,
    census: Census,
}

/// What changed since the last `take_changes` (only with `track_changes`).
#[derive(Default)]
struct Changes {
    incidents: Vec<Slot>,
    participants: Vec<ParticipantIdx>,
    evicted: Vec<(ParticipantIdx, Box<str>)>,
    /// Participants whose liveness was forgotten.
    forgotten: Vec<ParticipantIdx>,
}

impl Engine {
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
            stats: EngineStats::default(),
            census: Census::default(),
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
            inc.applicable = self.rules.applicable(&inc.subject(participant, now));
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

    /// Open incidents by axis and level, silent participants.
    pub fn census(&self) -> &Census {
        &self.census
    }

    /// One participant's share of the census.
    pub fn participant_census(&self, p: ParticipantIdx) -> ParticipantCensus {
        self.participants[p.get()].census
    }

    /// Moves an open incident from `old` to `new` in the census.
    fn count_grade(&mut self, old: Option<Grade>, new: Option<Grade>) {
        let cells = |g: Grade| {
            [
                g.investor_loss.rank() as usize,
                g.market_order.rank() as usize,
                g.overall().rank() as usize,
            ]
        };
        if let Some(g) = old {
            for (axis, level) in cells(g).into_iter().enumerate() {
                let c = &mut self.census.open_by_level[axis][level];
                *c = c.saturating_sub(1);
            }
        }
        if let Some(g) = new {
            for (axis, level) in cells(g).into_iter().enumerate() {
                self.census.open_by_level[axis][level] += 1;
            }
        }
    }

    /// Records whether an open incident is ineligible now (`lost` counts a new loss).
    fn count_exemption(&mut self, slot: Slot, ineligible: bool, lost: bool) {
        let inc = &mut self.slab[slot as usize];
        if inc.ineligible == ineligible {
            return;
        }
        inc.ineligible = ineligible;
        let c = &mut self.participants[inc.participant.get()].census;
        if ineligible {
            c.ineligible_open += 1;
            if lost && !inc.lost_counted {
                c.lost_exemption += 1;
            }
            inc.lost_counted = true;
        } else {
            c.ineligible_open = c.ineligible_open.saturating_sub(1);
        }
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
        self.heard(p, now, out);
        let outcome = match &event.incident {
            None => Outcome::Heartbeat,
            Some(report) => self.report(event, report, now, out)?,
        };
        // Nothing touched the window since the check.
        self.dedup.commit(ticket);
        Ok(outcome)
    }

    /// Moves the clock forward to `now`, firing every deadline that passed, in due order.
    pub fn advance_to(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        let Some(clock) = self.clock else {
            self.clock = Some(now);
            self.liveness = Some(Liveness::new(
                self.registry.len(),
                now,
                self.settings.watch_all_from_start,
            ));
            return;
        };
        if now <= clock {
            return;
        }
        while let Some(next) = self.next_due(now) {
            self.clock = Some(next.at());
            match next {
                Next::Escalate(due) => {
                    self.deadlines.pop();
                    self.escalate(due, out);
                }
                Next::Gap(p, since, at) => self.gap(p, since, at, out),
                Next::Forget(p, _) => self.forget_liveness(p),
                Next::Remind(due) => {
                    self.reminders.pop();
                    self.remind(due, now, out);
                }
                Next::Evict(due) => {
                    self.evictions.pop();
                    self.evict(due);
                }
            }
        }
        self.clock = Some(now);
        let slab = &self.slab;
        self.deadlines
            .compact_if_needed(self.open, |d| deadline_live(slab, d));
        self.reminders
            .compact_if_needed(self.open, |d| reminder_live(slab, d));
    }

    fn next_due(&mut self, now: Timestamp) -> Option<Next> {
        // Drop voided escalations so the heap's top is a live one.
        while let Some(d) = self.deadlines.peek() {
            if deadline_live(&self.slab, &d) {
                break;
            }
            self.deadlines.pop();
        }
        let mut best: Option<Next> = self.deadlines.peek().map(Next::Escalate);
        if self.settings.telemetry_gap_ms > 0 {
            if let Some((p, since)) = self.liveness.as_ref().and_then(Liveness::quietest) {
                // "Longer than the gap": due one millisecond after the gap has elapsed.
                let at = since.plus_millis(self.settings.telemetry_gap_ms.saturating_add(1));
                if best.is_none_or(|b| at < b.at()) {
                    best = Some(Next::Gap(p, since, at));
                }
            }
        }
        let retention = self.settings.liveness_retention_ms;
        if retention > 0 && !self.settings.watch_all_from_start {
            if let Some((p, since)) = self.liveness.as_ref().and_then(Liveness::longest_silent) {
                let at = since.plus_millis(retention);
                if best.is_none_or(|b| at < b.at()) {
                    best = Some(Next::Forget(p, at));
                }
            }
        }
        if self.settings.reminder_interval_ms > 0 {
            while let Some(d) = self.reminders.peek() {
                if reminder_live(&self.slab, &d) {
                    break;
                }
                self.reminders.pop();
            }
            if let Some(r) = self.reminders.peek() {
                if best.is_none_or(|b| r.at < b.at()) {
                    best = Some(Next::Remind(r));
                }
            }
        }
        if let Some(e) = self.evictions.peek() {
            if best.is_none_or(|b| e.at < b.at()) {
                best = Some(Next::Evict(e));
            }
        }
        best.filter(|b| b.at() <= now)
    }

    fn heard(&mut self, p: ParticipantIdx, now: Timestamp, out: &mut Vec<Alert>) {
        let Some(liveness) = self.liveness.as_mut() else {
            return;
        };
        let gap_ended = liveness.heard(p, now);
        if let Some(since) = gap_ended {
            self.census.silent = self.census.silent.saturating_sub(1);
            out.push(gap_alert(
                self.registry.get(p),
                since,
                AlertStatus::Resolved,
                now,
            ));
        }
        // Liveness is persisted when a gap ends and otherwise at most every
        // LIVENESS_PERSIST_MS: a restored `heard_at` is at most that stale, and the state
        // topic is not rewritten for every heartbeat.
        let ps = &mut self.participants[p.get()];
        if gap_ended.is_some()
            || now.millis().saturating_sub(ps.persisted_heard.millis()) >= LIVENESS_PERSIST_MS
        {
            ps.persisted_heard = now;
            self.participant_changed(p);
        }
    }

    fn participant_changed(&mut self, p: ParticipantIdx) {
        let ps = &mut self.participants[p.get()];
        if self.settings.track_changes && !ps.dirty {
            ps.dirty = true;
            self.changes.participants.push(p);
        }
    }

    fn incident_changed(&mut self, slot: Slot) {
        let inc = &mut self.slab[slot as usize];
        if self.settings.track_changes && !inc.dirty {
            inc.dirty = true;
            self.changes.incidents.push(slot);
        }
    }

    /// Stops watching a participant silent past the liveness retention; its record is
    /// deleted with the next flush. The gap it fired stays as it was: nothing resolves it.
    fn forget_liveness(&mut self, p: ParticipantIdx) {
        if let Some(l) = self.liveness.as_mut() {
            l.forget(p);
        }
        self.census.silent = self.census.silent.saturating_sub(1);
        self.stats.liveness_forgotten += 1;
        let ps = &mut self.participants[p.get()];
        ps.persisted_heard = Timestamp(i64::MIN);
        if self.settings.track_changes {
            self.changes.forgotten.push(p);
        }
    }

    fn gap(&mut self, p: ParticipantIdx, since: Timestamp, at: Timestamp, out: &mut Vec<Alert>) {
        if let Some(l) = self.liveness.as_mut() {
            l.mark_silent(p);
        }
        self.stats.telemetry_gaps += 1;
        self.census.silent += 1;
        self.participants[p.get()].census.gaps += 1;
        self.participant_changed(p);
        out.push(gap_alert(
            self.registry.get(p),
            since,
            AlertStatus::Firing,
            at,
        ));
    }

    fn report(
        &mut self,
        event: &Event<'_>,
        report: &IncidentReport<'_>,
        now: Timestamp,
        out: &mut Vec<Alert>,
    ) -> Result<Outcome, Reject> {
        let p = event.participant;
        let existing = self.participants[p.get()]
            .incidents
            .get(report.incident_id.as_ref())
            .copied();
        let (slot, created) = match existing {
            Some(slot) => {
                let inc = &self.slab[slot as usize];
                if !inc.is_open() {
                    self.stats.after_resolution += 1;
                    return Ok(Outcome::AfterResolution);
                }
                if inc.kind != event.kind {
                    return Err(Reject::KindChanged);
                }
                (slot, false)
            }
            None => (self.create(event, report)?, true),
        };
        let inc = &mut self.slab[slot as usize];
        let change = inc.merge(report, event.occurred_at);
        if change.attributes || created {
            let participant = self.registry.get(inc.participant);
            inc.applicable = self.rules.applicable(&inc.subject(participant, now));
        }
        if change.any || created {
            self.incident_changed(slot);
            self.evaluate(slot, now, Cause::Report(&event.event_id), out);
        }
        Ok(Outcome::Graded)
    }

    fn create(&mut self, event: &Event<'_>, report: &IncidentReport<'_>) -> Result<Slot, Reject> {
        let p = event.participant;
        // A report older than the retention of resolved incidents cannot be told apart from a
        // redelivery of an incident already resolved and forgotten: it must not open one.
        if let Some(clock) = self.clock {
            if event.occurred_at < clock.plus_millis(-self.settings.retention_ms) {
                return Err(Reject::Stale);
            }
        }
        let cap = self.settings.max_open_per_participant;
        if self.participants[p.get()].open >= cap {
            return Err(Reject::ParticipantCapacity(cap));
        }
        if self.in_use >= self.settings.max_incidents && !self.evict_oldest_resolved() {
            return Err(Reject::EngineCapacity(self.settings.max_incidents));
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                let generation = self.slab[slot as usize].generation.wrapping_add(1);
                self.slab[slot as usize] =
                    Incident::new(p, report, event.kind, event.occurred_at, generation);
                slot
            }
            None => {
                let slot = self.slab.len() as Slot;
                self.slab
                    .push(Incident::new(p, report, event.kind, event.occurred_at, 0));
                slot
            }
        };
        let ps = &mut self.participants[p.get()];
        ps.incidents
            .insert(report.incident_id.as_ref().into(), slot);
        ps.open += 1;
        self.in_use += 1;
        self.open += 1;
        self.stats.incidents_opened += 1;
        self.count_grade(None, Some(Grade::default()));
        Ok(slot)
    }

    /// Regrades an incident at `at` and emits the alerts its transitions call for.
    fn evaluate(&mut self, slot: Slot, at: Timestamp, cause: Cause<'_>, out: &mut Vec<Alert>) {
        let rules = &self.rules;
        let inc = &mut self.slab[slot as usize];
        let participant = self.registry.get(inc.participant);
        let subject = inc.subject(participant, at);
        let minutes = subject.minutes;
        let assessment = rules.assess(&subject, inc.applicable, inc.grade);
        let held = inc.grade;
        let grade = held.raised_by(assessment.grade);
        inc.peak_minutes = minutes;
        inc.grade = grade;
        let exemption = rules.exemption(grade);
        if grade != held {
            self.count_grade(Some(held), Some(grade));
        }
        self.count_exemption(slot, exemption == Exemption::Ineligible, true);
        let rules = &self.rules;
        let inc = &mut self.slab[slot as usize];
        let participant = self.registry.get(inc.participant);
        let event_id = match cause {
            Cause::Report(id) => Some(id),
            Cause::Clock | Cause::Reload => None,
        };
        let trigger = match inc.emitted {
            None if grade.overall() >= self.settings.min_alert_level => Some(Trigger::Opened),
            Some(e) if e.grade != grade || e.exemption != exemption => Some(match cause {
                Cause::Report(_) => Trigger::Escalated,
                Cause::Clock => Trigger::Clock,
                Cause::Reload => Trigger::Reload,
            }),
            _ => None,
        };
        if let Some(trigger) = trigger {
            out.push(incident_alert(
                rules,
                participant,
                inc,
                AlertStatus::Firing,
                trigger,
                at,
                event_id,
            ));
            inc.emitted = Some(Emitted { grade, exemption });
        }
        if !inc.is_open() {
            if inc.emitted.is_some() {
                out.push(incident_alert(
                    rules,
                    participant,
                    inc,
                    AlertStatus::Resolved,
                    Trigger::Resolved,
                    at,
                    event_id,
                ));
            }
            self.resolve(slot, at);
            return;
        }
        let next = assessment
            .due_after_start_ms
            .map(|ms| inc.started_at.plus_millis(ms))
            .filter(|d| *d > at);
        if next != inc.deadline {
            inc.generation = inc.generation.wrapping_add(1);
            inc.deadline = next;
            if let Some(t) = next {
                self.deadlines.schedule(Due {
                    at: t,
                    slot,
                    generation: inc.generation,
                });
                let slab = &self.slab;
                self.deadlines
                    .compact_if_needed(self.open, |d| deadline_live(slab, d));
            }
        }
        self.anchor_reminders(slot, at);
    }

    /// Starts the reminder schedule of an open incident once it is alerted and stands at or
    /// above the reminder level (once: the anchor never moves).
    fn anchor_reminders(&mut self, slot: Slot, at: Timestamp) {
        let inc = &mut self.slab[slot as usize];
        if self.settings.reminder_interval_ms > 0
            && inc.reminder_anchor.is_none()
            && inc.emitted.is_some()
            && inc.grade.overall() >= self.settings.reminder_min_level
        {
            inc.reminder_anchor = Some(at);
            self.schedule_reminder(slot);
        }
    }

    /// Schedules the incident's next reminder, k = `reminders_sent + 1`, from its anchor.
    fn schedule_reminder(&mut self, slot: Slot) {
        let interval = self.settings.reminder_interval_ms;
        let inc = &mut self.slab[slot as usize];
        let Some(anchor) = inc.reminder_anchor.filter(|_| interval > 0) else {
            inc.next_reminder = None;
            return;
        };
        let k = i64::from(inc.reminders_sent) + 1;
        let at = anchor.plus_millis(interval.saturating_mul(k));
        inc.next_reminder = Some(at);
        self.reminders.schedule(Due {
            at,
            slot,
            generation: 0,
        });
        let slab = &self.slab;
        self.reminders
            .compact_if_needed(self.open, |d| reminder_live(slab, d));
    }

    /// A reminder fell due (the clock is at `due.at`, on its way to `now`).
    fn remind(&mut self, due: Due, now: Timestamp, out: &mut Vec<Alert>) {
        let interval = self.settings.reminder_interval_ms;
        let inc = &mut self.slab[due.slot as usize];
        inc.next_reminder = None;
        let Some(anchor) = inc.reminder_anchor.filter(|_| interval > 0) else {
            return;
        };
        self.incident_changed(due.slot);
        let inc = &mut self.slab[due.slot as usize];
        let k = inc.reminders_sent.saturating_add(1);
        // The last k due by `now`: more than MAX_OVERDUE_REMINDERS overdue ones skip ahead.
        let last = ((now.millis() - anchor.millis()) / interval).clamp(0, i64::from(u32::MAX));
        let last = last as u32;
        if last.saturating_sub(k) >= MAX_OVERDUE_REMINDERS {
            inc.reminders_sent = last - MAX_OVERDUE_REMINDERS;
        } else {
            let participant = self.registry.get(inc.participant);
            let elapsed = due.at.millis() - anchor.millis();
            out.push(reminder_alert(
                &self.rules,
                participant,
                inc,
                k,
                elapsed,
                due.at,
            ));
            inc.reminders_sent = k;
        }
        self.schedule_reminder(due.slot);
    }

    fn escalate(&mut self, due: Due, out: &mut Vec<Alert>) {
        let inc = &mut self.slab[due.slot as usize];
        inc.deadline = None;
        self.incident_changed(due.slot);
        self.evaluate(due.slot, due.at, Cause::Clock, out);
    }

    fn resolve(&mut self, slot: Slot, at: Timestamp) {
        let grade = self.slab[slot as usize].grade;
        self.count_grade(Some(grade), None);
        self.count_exemption(slot, false, false);
        let inc = &mut self.slab[slot as usize];
        inc.generation = inc.generation.wrapping_add(1);
        inc.deadline = None;
        inc.next_reminder = None;
        let generation = inc.generation;
        let ps = &mut self.participants[inc.participant.get()];
        ps.open = ps.open.saturating_sub(1);
        self.open = self.open.saturating_sub(1);
        self.stats.incidents_resolved += 1;
        self.evictions.push(Due {
            at: at.plus_millis(self.settings.retention_ms),
            slot,
            generation,
        });
    }

    fn evict(&mut self, due: Due) -> bool {
        let inc = &mut self.slab[due.slot as usize];
        if !inc.live || inc.generation != due.generation || inc.is_open() {
            return false;
        }
        inc.live = false;
        let id = std::mem::take(&mut inc.incident_id);
        let participant = inc.participant;
        self.participants[participant.get()].incidents.remove(&id);
        if self.settings.track_changes {
            self.changes.evicted.push((participant, id));
        }
        self.free.push(due.slot);
        self.in_use -= 1;
        self.stats.evicted += 1;
        true
    }

    /// Hands out, once, the latest state of everything that changed since the last call:
    /// tombstones of evicted incidents first (a key may be evicted and then reused), then
    /// incidents, then participants' liveness. Empty unless `track_changes` is set.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        let changes = std::mem::take(&mut self.changes);
        let mut out = Vec::with_capacity(
            changes.evicted.len()
                + changes.forgotten.len()
                + changes.incidents.len()
                + changes.participants.len(),
        );
        for (p, incident_id) in changes.evicted {
            out.push(StateChange::Deleted(incident_key(
                &self.registry.get(p).id,
                &incident_id,
            )));
        }
        for p in changes.forgotten {
            out.push(StateChange::Deleted(participant_key(
                &self.registry.get(p).id,
            )));
        }
        for slot in changes.incidents {
            let inc = &mut self.slab[slot as usize];
            // A slot can be listed twice (evicted, then reused); hand out each state once.
            if inc.dirty && inc.live {
                let pid = &self.registry.get(inc.participant).id;
                out.push(StateChange::Put(StateRecord::Incident(Box::new(
                    IncidentRecord::from_incident(pid, inc),
                ))));
            }
            inc.dirty = false;
        }
        for p in changes.participants {
            self.participants[p.get()].dirty = false;
            if let Some((heard_at, silent)) = self.liveness.as_ref().and_then(|l| l.state(p)) {
                out.push(StateChange::Put(StateRecord::Participant(
                    ParticipantRecord {
                        v: STATE_VERSION,
                        participant_id: self.registry.get(p).id.to_string(),
                        heard_at_ms: heard_at.millis(),
                        silent,
                    },
                )));
            }
        }
        out
    }

    /// Loads state handed out by [`Engine::take_changes`] (by this or another instance) into
    /// a fresh engine, with the clock at `now`. Later records of a key replace earlier ones.
    /// Open incidents get their deadlines and reminder schedules back: one that passed while
    /// nobody owned the incident fires on the next [`Engine::advance_to`], with its own time
    /// as `at`.
    pub fn restore(&mut self, now: Timestamp, records: Vec<StateRecord>) -> RestoreSummary {
        let mut summary = RestoreSummary::default();
        if self.clock.is_none() {
            self.advance_to(now, &mut Vec::new());
        }
        let mut latest: HashMap<String, StateRecord> = HashMap::new();
        for r in records {
            latest.insert(r.key(), r);
        }
        let mut keys: Vec<String> = latest.keys().cloned().collect();
        keys.sort();
        let mut liveness = Vec::new();
        let mut evictions = Vec::new();
        for key in keys {
            let Some(record) = latest.remove(&key) else {
                continue;
            };
            match record {
                StateRecord::Incident(r) => match self.restore_incident(&r) {
                    Ok(Some(due)) => {
                        evictions.push(due);
                        summary.incidents += 1;
                    }
                    Ok(None) => summary.incidents += 1,
                    Err(problem) => {
                        if problem.forget {
                            summary.forgotten.push(key.clone());
                        }
                        summary.skipped.push(format!("{key}: {}", problem.text));
                    }
                },
                StateRecord::Participant(r) => match self.registry.lookup(&r.participant_id) {
                    Some(p) => {
                        liveness.push((p, Timestamp(r.heard_at_ms), r.silent));
                        summary.participants += 1;
                    }
                    None => {
                        summary.forgotten.push(key.clone());
                        summary
                            .skipped
                            .push(format!("{key}: participant no longer registered"));
                    }
                },
            }
        }
        if let Some(l) = self.liveness.as_mut() {
            l.restore(&mut liveness);
        }
        self.recount();
        evictions.sort();
        for due in evictions {
            self.evictions.push(due);
        }
        summary
    }

    /// Rebuilds the census from the state (after a restore; the one place it scans).
    fn recount(&mut self) {
        let lost: Vec<u64> = self
            .participants
            .iter()
            .map(|p| p.census.lost_exemption)
            .collect();
        let gaps: Vec<u64> = self.participants.iter().map(|p| p.census.gaps).collect();
        self.census = Census::default();
        for (i, ps) in self.participants.iter_mut().enumerate() {
            ps.census = ParticipantCensus {
                ineligible_open: 0,
                lost_exemption: lost[i],
                gaps: gaps[i],
            };
        }
        for slot in 0..self.slab.len() {
            let inc = &self.slab[slot];
            if !inc.live || !inc.is_open() {
                continue;
            }
            let (grade, ineligible, p) = (inc.grade, inc.ineligible, inc.participant);
            self.count_grade(None, Some(grade));
            if ineligible {
                self.participants[p.get()].census.ineligible_open += 1;
            }
        }
        if let Some(l) = &self.liveness {
            self.census.silent = self
                .registry
                .iter()
                .filter(|(p, _)| l.is_silent(*p))
                .count() as u32;
        }
    }

    /// Rebuilds one incident; returns its eviction if it is resolved.
    fn restore_incident(&mut self, r: &IncidentRecord) -> Result<Option<Due>, Skipped> {
        let p = self.registry.lookup(&r.participant_id).ok_or(Skipped {
            text: "participant no longer registered".into(),
            forget: true,
        })?;
        // A record of another state version (written by a newer regwatch) is kept.
        let parts = r.parts().map_err(|text| Skipped {
            text,
            forget: r.v == super::state::STATE_VERSION,
        })?;
        if self.in_use >= self.settings.max_incidents {
            // Kept on the topic: a larger `max_incidents` restores it.
            return Err(Skipped {
                text: format!(
                    "engine capacity of {} incidents reached",
                    self.settings.max_incidents
                ),
                forget: false,
            });
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slab.push(Incident::placeholder());
                (self.slab.len() - 1) as Slot
            }
        };
        let generation = self.slab[slot as usize].generation.wrapping_add(1);
        let mut inc = Incident::placeholder();
        inc.live = true;
        inc.generation = generation;
        inc.participant = p;
        inc.incident_id = r.incident_id.as_str().into();
        inc.kind = parts.kind;
        inc.category = parts.category;
        inc.system = parts.system;
        inc.scope = parts.scope;
        inc.record_type = parts.record_type;
        inc.started_at = Timestamp(r.started_at_ms);
        inc.first_reported_at = Timestamp(r.first_reported_at_ms);
        inc.last_report_at = Timestamp(r.last_report_at_ms);
        inc.resolved_at = r.resolved_at_ms.map(Timestamp);
        if r.reasons.iter().any(|v| !v.is_empty()) {
            inc.reasons = Some(Box::new(r.reasons.clone()));
        }
        inc.figures = parts.figures;
        inc.peak_minutes = r.peak_minutes;
        inc.grade = parts.grade;
        inc.ineligible = self.rules.exemption(parts.grade) == Exemption::Ineligible;
        inc.lost_counted = inc.ineligible;
        inc.scores = r.scores;
        inc.emitted = parts.emitted;
        inc.reminder_anchor = r.reminder_anchor_ms.map(Timestamp);
        inc.reminders_sent = r.reminders_sent;
        let participant = self.registry.get(p);
        let held_at = inc
            .started_at
            .plus_millis((r.peak_minutes * MS_PER_MINUTE as f64).round() as i64);
        inc.applicable = self.rules.applicable(&inc.subject(participant, held_at));
        let ps = &mut self.participants[p.get()];
        ps.incidents.insert(inc.incident_id.clone(), slot);
        self.in_use += 1;
        let eviction = if inc.resolved_at.is_some() {
            // Kept a full retention from the restore: the engine clock at resolution is not
            // recorded, and evictions must stay in clock order.
            let restored_at = self.clock.unwrap_or_default();
            Some(Due {
                at: restored_at.plus_millis(self.settings.retention_ms),
                slot,
                generation,
            })
        } else {
            ps.open += 1;
            self.open += 1;
            let assessment = self.rules.assess(
                &inc.subject(participant, held_at),
                inc.applicable,
                inc.grade,
            );
            inc.deadline = assessment
                .due_after_start_ms
                .map(|ms| inc.started_at.plus_millis(ms));
            if let Some(at) = inc.deadline {
                self.deadlines.schedule(Due {
                    at,
                    slot,
                    generation,
                });
            }
            None
        };
        let open = inc.is_open();
        let anchored = inc.reminder_anchor.is_some();
        self.slab[slot as usize] = inc;
        if open {
            if anchored {
                self.schedule_reminder(slot);
            } else if let Some(now) = self.clock {
                // A record without an anchor (reminders were off, or did not exist yet).
                self.anchor_reminders(slot, now);
                if self.slab[slot as usize].reminder_anchor.is_some() {
                    self.incident_changed(slot);
                }
            }
        }
        Ok(eviction)
    }

    /// Frees the oldest retained resolved incident ahead of time, if there is one.
    fn evict_oldest_resolved(&mut self) -> bool {
        while let Some(due) = self.evictions.pop() {
            if self.evict(due) {
                self.stats.evicted_early += 1;
                return true;
            }
        }
        false
    }
}

/// What `Engine::restore` loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    pub incidents: usize,
    pub participants: usize,
    /// Records that could not be loaded, with the reason (e.g. a participant removed from
    /// the registry since).
    pub skipped: Vec<String>,
    /// Keys of skipped records that can never be loaded (their participant left the
    /// registry, or the record is malformed): the caller deletes them (tombstones), so the
    /// compacted state topic forgets them too.
    pub forgotten: Vec<String>,
}

/// Why a state record was not restored, and whether it can ever be.
struct Skipped {
    text: String,
    forget: bool,
}

/// The next thing due as time passes.
#[derive(Clone, Copy)]
enum Next {
    Escalate(Due),
    Gap(ParticipantIdx, Timestamp, Timestamp),
    Remind(Due),
    Evict(Due),
    /// A silent participant's liveness passed its retention.
    Forget(ParticipantIdx, Timestamp),
}

impl Next {
    fn at(&self) -> Timestamp {
        match self {
            Next::Escalate(d) | Next::Remind(d) | Next::Evict(d) => d.at,
            Next::Gap(_, _, at) | Next::Forget(_, at) => *at,
        }
    }
}

fn deadline_live(slab: &[Incident], d: &Due) -> bool {
    slab.get(d.slot as usize)
        .is_some_and(|inc| inc.live && inc.generation == d.generation && inc.deadline == Some(d.at))
}

fn reminder_live(slab: &[Incident], d: &Due) -> bool {
    slab.get(d.slot as usize)
        .is_some_and(|inc| inc.live && inc.is_open() && inc.next_reminder == Some(d.at))
}
