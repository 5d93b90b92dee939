//! Reminders of unresolved serious incidents: their anchor, their schedule, and firing
//! the ones that fell due (see the engine's module doc for the rules).

use super::*;

impl Engine {
    /// Starts the reminder schedule of an open incident once it is alerted and stands at or
    /// above the reminder level (once: the anchor never moves).
    pub(super) fn anchor_reminders(&mut self, slot: Slot, at: Timestamp) {
        let inc = &mut self.slab[slot as usize];
        if self.settings.reminder_interval_ms > 0
            && inc.reminder_anchor.is_none()
            && inc.acked_at.is_none()
            && inc.emitted.is_some()
            && inc.grade.overall() >= self.settings.reminder_min_level
        {
            inc.reminder_anchor = Some(at);
            self.schedule_reminder(slot);
        }
    }

    /// Schedules the incident's next reminder, k = `reminders_sent + 1`, from its anchor.
    pub(super) fn schedule_reminder(&mut self, slot: Slot) {
        let interval = self.settings.reminder_interval_ms;
        let inc = &mut self.slab[slot as usize];
        // Only a restored record can hold an anchor or a count this far out; such a
        // schedule ends rather than repeat one k, or fire at a saturated time forever.
        let k = i64::from(inc.reminders_sent) + 1;
        let at = inc
            .reminder_anchor
            .filter(|_| interval > 0 && inc.reminders_sent < u32::MAX && inc.acked_at.is_none())
            .and_then(|anchor| anchor.millis().checked_add(interval.checked_mul(k)?))
            .map(Timestamp);
        let Some(at) = at else {
            inc.next_reminder = None;
            return;
        };
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
    pub(super) fn remind(&mut self, due: Due, now: Timestamp, out: &mut Vec<Alert>) {
        let interval = self.settings.reminder_interval_ms;
        let inc = &mut self.slab[due.slot as usize];
        inc.next_reminder = None;
        // An acknowledged incident reminds no more (a reminder scheduled before the ack).
        let Some(anchor) = inc
            .reminder_anchor
            .filter(|_| interval > 0 && inc.acked_at.is_none())
        else {
            return;
        };
        self.incident_changed(due.slot);
        let silenced = self
            .silenced_until(self.slab[due.slot as usize].participant, due.at)
            .is_some();
        let inc = &mut self.slab[due.slot as usize];
        let k = inc.reminders_sent.saturating_add(1);
        // The last k due by `now`: more than MAX_OVERDUE_REMINDERS overdue ones skip ahead.
        // Saturating: a restored anchor can be any instant.
        let last =
            (now.millis().saturating_sub(anchor.millis()) / interval).clamp(0, i64::from(u32::MAX));
        let last = last as u32;
        if last.saturating_sub(k) >= MAX_OVERDUE_REMINDERS {
            inc.reminders_sent = last - MAX_OVERDUE_REMINDERS;
        } else if silenced {
            // Held by a silence: not sent, but counted, so the next one says how many.
            inc.reminders_sent = k;
            self.stats.reminders_silenced += 1;
        } else {
            let participant = self.registry.get(inc.participant);
            let elapsed = due.at.millis().saturating_sub(anchor.millis());
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
}
