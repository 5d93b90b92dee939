//! The passing of time: advancing the clock fires, in due order, every escalation, telemetry
//! gap (and gap a silence held, once the silence ends), forgotten liveness, reminder and
//! eviction that fell due; scheduling an escalation deadline happens in one place
//! (`schedule_deadline`).

use super::*;

impl Engine {
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
                Next::Unhold(p, at) => self.unhold(p, at, out),
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

    pub(super) fn next_due(&mut self, now: Timestamp) -> Option<Next> {
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
        if let Some((p, at)) = self.next_unhold() {
            if best.is_none_or(|b| at < b.at()) {
                best = Some(Next::Unhold(p, at));
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

    /// Sets an open incident's next escalation deadline (the one place that schedules one):
    /// a changed deadline bumps the incident's generation, which voids the heap entry of the
    /// previous one.
    pub(super) fn schedule_deadline(&mut self, slot: Slot, next: Option<Timestamp>) {
        let inc = &mut self.slab[slot as usize];
        if next == inc.deadline {
            return;
        }
        inc.generation = inc.generation.wrapping_add(1);
        inc.deadline = next;
        if let Some(at) = next {
            self.deadlines.schedule(Due {
                at,
                slot,
                generation: inc.generation,
            });
            let slab = &self.slab;
            self.deadlines
                .compact_if_needed(self.open, |d| deadline_live(slab, d));
        }
    }

    pub(super) fn escalate(&mut self, due: Due, out: &mut Vec<Alert>) {
        let inc = &mut self.slab[due.slot as usize];
        inc.deadline = None;
        self.incident_changed(due.slot);
        self.evaluate(due.slot, due.at, Cause::Clock, out);
    }
}

/// The next thing due as time passes.
#[derive(Clone, Copy)]
pub(super) enum Next {
    Escalate(Due),
    Gap(ParticipantIdx, Timestamp, Timestamp),
    Remind(Due),
    Evict(Due),
    /// A silent participant's liveness passed its retention.
    Forget(ParticipantIdx, Timestamp),
    /// The silence holding a participant's gap ended.
    Unhold(ParticipantIdx, Timestamp),
}

impl Next {
    pub(super) fn at(&self) -> Timestamp {
        match self {
            Next::Escalate(d) | Next::Remind(d) | Next::Evict(d) => d.at,
            Next::Gap(_, _, at) | Next::Forget(_, at) | Next::Unhold(_, at) => *at,
        }
    }
}

pub(super) fn deadline_live(slab: &[Incident], d: &Due) -> bool {
    slab.get(d.slot as usize)
        .is_some_and(|inc| inc.live && inc.generation == d.generation && inc.deadline == Some(d.at))
}

pub(super) fn reminder_live(slab: &[Incident], d: &Due) -> bool {
    slab.get(d.slot as usize)
        .is_some_and(|inc| inc.live && inc.is_open() && inc.next_reminder == Some(d.at))
}
