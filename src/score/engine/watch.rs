//! Telemetry gaps in the engine: hearing from a participant, raising a gap when it falls
//! silent, forgetting it after the liveness retention (the lists themselves are
//! `liveness.rs`).

use super::*;

impl Engine {
    pub(super) fn heard(&mut self, p: ParticipantIdx, now: Timestamp, out: &mut Vec<Alert>) {
        let Some(liveness) = self.liveness.as_mut() else {
            return;
        };
        let gap_ended = liveness.heard(p, now);
        if let Some(since) = gap_ended {
            self.census.silent = self.census.silent.saturating_sub(1);
            // A gap a silence held was never alerted: neither is its end.
            if self.release(p) {
                self.participant_changed(p);
                return;
            }
            out.push(gap_alert(
                self.registry.get(p),
                since,
                AlertStatus::Resolved,
                now,
            ));
        }
        // Marked once per flush, however often it is heard: each snapshot holds the latest
        // `heard_at`, exactly what the offset it is committed with has seen (a restored
        // engine fires the gaps an uninterrupted one would), and the state topic is not
        // rewritten for every heartbeat.
        self.participant_changed(p);
    }

    pub(super) fn participant_changed(&mut self, p: ParticipantIdx) {
        let ps = &mut self.participants[p.get()];
        if self.settings.track_changes && !ps.dirty {
            ps.dirty = true;
            self.changes.participants.push(p);
        }
    }

    /// Stops watching a participant silent past the liveness retention; its record is
    /// deleted with the next flush. The gap it fired stays as it was: nothing resolves it.
    pub(super) fn forget_liveness(&mut self, p: ParticipantIdx) {
        if let Some(l) = self.liveness.as_mut() {
            l.forget(p);
        }
        self.release(p);
        self.census.silent = self.census.silent.saturating_sub(1);
        self.stats.liveness_forgotten += 1;
        if self.settings.track_changes {
            self.changes.forgotten.push(p);
        }
    }

    pub(super) fn gap(
        &mut self,
        p: ParticipantIdx,
        since: Timestamp,
        at: Timestamp,
        out: &mut Vec<Alert>,
    ) {
        if let Some(l) = self.liveness.as_mut() {
            l.mark_silent(p);
        }
        self.stats.telemetry_gaps += 1;
        self.census.silent += 1;
        self.participants[p.get()].census.gaps += 1;
        self.participant_changed(p);
        if self.hold_gap(p, at) {
            return;
        }
        out.push(gap_alert(
            self.registry.get(p),
            since,
            AlertStatus::Firing,
            at,
        ));
    }
}
