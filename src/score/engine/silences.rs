//! Silences in the engine (see `crate::actions`): an operator's window during which a
//! participant's telemetry gaps and its incidents' reminders are held, like an Alertmanager
//! silence. Windows are instants (`[starts_at, ends_at)`) compared with the engine's clock,
//! so a replay of the partition holds exactly what the live run held.
//!
//! A gap that falls due inside a window is *held*: the participant is silent (its liveness
//! says so) but nothing is alerted. Heard again before the window ends, nothing is alerted
//! at all (neither the gap nor its end); still silent when the window ends (or is expired
//! early), the gap fires then, as of that instant. A reminder that falls due inside a
//! window is not sent, but counts (the next one sent carries its true number). A gap
//! alerted before the window began stays as it was, and its end is alerted when it comes.
//! Expired windows are kept (the latest [`MAX_KEPT`] per participant) in the participant's
//! silences record.

use super::*;
use crate::actions::Action;
use crate::score::state::{SilenceRecord, SilencesRecord};

/// Silences kept per participant; beyond it the one that ended first goes.
pub const MAX_KEPT: usize = 32;

impl Engine {
    /// The end of the silence covering `at` for `p` (windows that touch are followed to the
    /// last one), or `None` when `p` is not silenced at `at`.
    pub(super) fn silenced_until(&self, p: ParticipantIdx, at: Timestamp) -> Option<Timestamp> {
        let windows = &self.participants[p.get()].silences;
        let mut end: Option<Timestamp> = None;
        let mut t = at;
        while let Some(e) = windows
            .iter()
            .filter(|w| w.covers(t))
            .map(|w| w.ends_at)
            .max()
        {
            end = Some(e);
            t = e;
        }
        end
    }

    /// The participant's silences, active, pending and expired, oldest first.
    pub fn silences(&self, participant: &str) -> &[SilenceRecord] {
        self.registry
            .lookup(participant)
            .map_or(&[], |p| &self.participants[p.get()].silences)
    }

    /// Adds `a`'s window (its `action_id` names the silence).
    pub(super) fn silence(&mut self, p: ParticipantIdx, a: &Action) -> Result<(), String> {
        let (Some(starts_at), Some(ends_at)) = (a.starts_at, a.ends_at) else {
            return Err("a silence needs starts_at and ends_at".into());
        };
        let ps = &mut self.participants[p.get()];
        if ps.silences.iter().any(|s| s.silence_id == a.action_id) {
            return Err(format!("silence {} is applied already", a.action_id));
        }
        ps.silences.push(SilenceRecord {
            silence_id: a.action_id.clone(),
            starts_at,
            ends_at,
            author: a.actor.clone(),
            reason: a.reason.clone(),
            created_at: a.at,
            expired_by: None,
        });
        if ps.silences.len() > MAX_KEPT {
            // The one that ended first (an active or pending one only when all are).
            if let Some(i) = (0..ps.silences.len()).min_by_key(|i| ps.silences[*i].ends_at) {
                ps.silences.remove(i);
            }
        }
        self.silences_changed(p);
        Ok(())
    }

    /// Ends silence `a.silence_id` at `now`; a gap it held that is still open fires now.
    pub(super) fn unsilence(
        &mut self,
        p: ParticipantIdx,
        a: &Action,
        now: Timestamp,
        out: &mut Vec<Alert>,
    ) -> Result<(), String> {
        let id = a.silence_id.as_deref().unwrap_or_default();
        let ps = &mut self.participants[p.get()];
        let Some(s) = ps.silences.iter_mut().find(|s| s.silence_id == id) else {
            return Err(format!(
                "no silence {id:?} of participant {:?} on this partition",
                a.participant_id
            ));
        };
        if s.ends_at <= now {
            return Err(format!(
                "silence {id} has expired already (at {})",
                s.ends_at
            ));
        }
        s.ends_at = now.max(s.starts_at);
        s.expired_by = Some(a.actor.clone());
        self.silences_changed(p);
        if self.participants[p.get()].held_until.is_some() {
            self.unhold(p, now, out);
        }
        Ok(())
    }

    /// Holds `p`'s gap (due at `at`) if a silence covers `at`; true if held.
    pub(super) fn hold_gap(&mut self, p: ParticipantIdx, at: Timestamp) -> bool {
        let Some(until) = self.silenced_until(p, at) else {
            return false;
        };
        self.hold(p, until);
        self.stats.gaps_silenced += 1;
        true
    }

    /// Holds `p`'s gap until `until`.
    fn hold(&mut self, p: ParticipantIdx, until: Timestamp) {
        self.participants[p.get()].held_until = Some(until);
        if !self.held.contains(&p) {
            self.held.push(p);
        }
    }

    /// The held gap falling due first: `(participant, when its silence ends)`.
    pub(super) fn next_unhold(&self) -> Option<(ParticipantIdx, Timestamp)> {
        self.held
            .iter()
            .filter_map(|p| Some((*p, self.participants[p.get()].held_until?)))
            .min_by_key(|(p, at)| (*at, *p))
    }

    /// The silence holding `p`'s gap ended at `at`: hold on if another covers `at`, else
    /// alert the gap as of `at`.
    pub(super) fn unhold(&mut self, p: ParticipantIdx, at: Timestamp, out: &mut Vec<Alert>) {
        if let Some(until) = self.silenced_until(p, at) {
            self.participants[p.get()].held_until = Some(until);
            return;
        }
        self.release(p);
        self.participant_changed(p);
        let since = self
            .liveness
            .as_ref()
            .and_then(|l| l.state(p))
            .map_or(at, |(heard_at, _)| heard_at);
        out.push(gap_alert(
            self.registry.get(p),
            since,
            AlertStatus::Firing,
            at,
        ));
    }

    /// Forgets that `p`'s gap is held; true if it was.
    pub(super) fn release(&mut self, p: ParticipantIdx) -> bool {
        let was = self.participants[p.get()].held_until.take().is_some();
        if was {
            self.held.retain(|x| *x != p);
        }
        was
    }

    pub(super) fn silences_changed(&mut self, p: ParticipantIdx) {
        let ps = &mut self.participants[p.get()];
        if self.settings.track_changes && !ps.silences_dirty {
            ps.silences_dirty = true;
            self.changes.silences.push(p);
        }
    }

    /// The silences record of `p`, for the state topic.
    pub(super) fn silences_record(&mut self, p: ParticipantIdx) -> StateRecord {
        let ps = &mut self.participants[p.get()];
        ps.silences_dirty = false;
        StateRecord::Silences(SilencesRecord {
            v: STATE_VERSION,
            participant_id: self.registry.get(p).id.to_string(),
            silences: ps.silences.clone(),
        })
    }

    /// After a restore: held gaps are due when their silence ends (at once if it has).
    pub(super) fn restore_held(&mut self, held: Vec<ParticipantIdx>) {
        let now = self.clock.unwrap_or_default();
        for p in held {
            let until = self.silenced_until(p, now).unwrap_or(now);
            self.hold(p, until);
        }
    }
}
