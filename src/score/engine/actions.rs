//! People's actions in the engine (see `crate::actions`): acknowledge, annotate, close, at
//! the engine's time, refused with a reason when they do not fit the incident; silences
//! (`silences.rs`) on a participant.

use super::*;
use crate::actions::{Action, Kind};

impl Engine {
    /// Applies `a` at the engine's time and returns that time; `Err` says why it is refused
    /// (nothing changed). Closing emits the `resolved` alert (trigger `closed`) into `out`.
    pub fn act(&mut self, a: &Action, out: &mut Vec<Alert>) -> Result<Timestamp, String> {
        let now = self.clock.unwrap_or(a.at);
        let p = self
            .registry
            .lookup(&a.participant_id)
            .ok_or_else(|| format!("unknown participant {:?}", a.participant_id))?;
        match a.action {
            Kind::Silence => return self.silence(p, a).map(|()| now),
            Kind::Unsilence => return self.unsilence(p, a, now, out).map(|()| now),
            Kind::Skip => return Err("skip is for the outboxes, not a partition".into()),
            Kind::Ack | Kind::Annotate | Kind::Close => {}
        }
        let slot = self.participants[p.get()]
            .incidents
            .get(a.incident_id.as_str())
            .copied()
            .filter(|s| self.slab[*s as usize].live)
            .ok_or_else(|| {
                format!(
                    "unknown incident {}/{} on this partition",
                    a.participant_id, a.incident_id
                )
            })?;
        let inc = &mut self.slab[slot as usize];
        match a.action {
            Kind::Annotate => return Ok(now),
            Kind::Silence | Kind::Unsilence | Kind::Skip => unreachable!("handled above"),
            _ if !inc.is_open() => {
                return Err(format!(
                    "incident {}/{} is resolved already",
                    a.participant_id, a.incident_id
                ))
            }
            Kind::Ack => {
                if inc.acked_at.is_some() {
                    return Err(format!(
                        "incident {}/{} is acknowledged already",
                        a.participant_id, a.incident_id
                    ));
                }
                inc.acked_at = Some(now);
                // The reminder heap's entry for it is dead from now on.
                inc.next_reminder = None;
                self.incident_changed(slot);
            }
            Kind::Close => {
                inc.resolved_at = Some(now);
                self.incident_changed(slot);
                let from = out.len();
                self.evaluate(slot, now, Cause::Closed, out);
                for alert in &mut out[from..] {
                    if alert.trigger == crate::alert::Trigger::Closed {
                        alert.closed_by = Some(a.actor.clone());
                        alert.close_reason = Some(a.reason.clone());
                        alert.summary =
                            format!("{} (closed by {}: {})", alert.summary, a.actor, a.reason);
                    }
                }
            }
        }
        Ok(now)
    }
}
