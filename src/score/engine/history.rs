//! What the engine notes for the incidents' history (`EngineSettings::record_history`; the
//! daemon writes it to the history topic at each flush, `desk/` reads it back): one note per
//! report that changed an incident (its time, the figures that changed, the grade after it),
//! and the view of every incident that changed since the last flush.
//!
//! Notes are fixed-size and their strings go into one reused buffer, so noting a report
//! allocates nothing once the buffers have grown to a flush interval's worth.

use super::*;
use crate::decode::{Figure, Figures};

/// One report that changed an incident, as noted in the hot path.
#[derive(Clone, Copy)]
pub(super) struct Note {
    participant: ParticipantIdx,
    at: Timestamp,
    occurred_at: Timestamp,
    before: Figures,
    after: Figures,
    grade: Grade,
    exemption: Exemption,
    opened: bool,
    resolved: bool,
    /// `incident_id` then `event_id` in `History::text`, from `start`.
    start: u32,
    incident_len: u32,
    event_len: u32,
}

/// The notes and views gathered since the last flush.
#[derive(Default)]
pub(super) struct History {
    notes: Vec<Note>,
    text: String,
    pub(super) views: Vec<IncidentView>,
}

/// A report as the history shows it: when, what changed, the grade it left.
pub struct ReportEntry<'a> {
    pub participant_id: &'a str,
    pub incident_id: &'a str,
    pub event_id: &'a str,
    /// When it was graded (engine time: what the alerts it caused say too).
    pub at: Timestamp,
    /// The report's own `occurred_at`.
    pub occurred_at: Timestamp,
    /// The figures whose value this report set or changed, with their new value.
    pub changed: Vec<(&'static str, f64)>,
    pub investor_loss: Level,
    pub market_order: Level,
    pub exemption: Exemption,
    /// The first report of the incident.
    pub opened: bool,
    /// The report that resolved it.
    pub resolved: bool,
}

impl Engine {
    /// Notes a report that changed incident `slot` (`before`: its figures before the report).
    pub(super) fn note_report(
        &mut self,
        slot: Slot,
        before: Figures,
        event_id: &str,
        at: Timestamp,
        occurred_at: Timestamp,
        opened: bool,
    ) {
        let inc = &self.slab[slot as usize];
        let h = &mut self.history;
        let start = h.text.len() as u32;
        h.text.push_str(&inc.incident_id);
        h.text.push_str(event_id);
        h.notes.push(Note {
            participant: inc.participant,
            at,
            occurred_at,
            before,
            after: inc.figures,
            grade: inc.grade,
            exemption: self.rules.exemption(inc.grade),
            opened,
            resolved: !inc.is_open(),
            start,
            incident_len: inc.incident_id.len() as u32,
            event_len: event_id.len() as u32,
        });
    }

    /// Hands every report noted since the last call to `each`, in the order they were
    /// applied, then forgets them (keeping the buffers).
    pub fn drain_reports(&mut self, mut each: impl FnMut(ReportEntry<'_>)) {
        let h = &mut self.history;
        for n in &h.notes {
            let s = n.start as usize;
            let incident_end = s + n.incident_len as usize;
            let changed = Figure::ALL
                .iter()
                .filter(|&&f| {
                    n.after.has(f) && (!n.before.has(f) || n.before.value(f) != n.after.value(f))
                })
                .map(|&f| (f.as_str(), n.after.value(f)))
                .collect();
            each(ReportEntry {
                participant_id: &self.registry.get(n.participant).id,
                incident_id: &h.text[s..incident_end],
                event_id: &h.text[incident_end..incident_end + n.event_len as usize],
                at: n.at,
                occurred_at: n.occurred_at,
                changed,
                investor_loss: n.grade.investor_loss,
                market_order: n.grade.market_order,
                exemption: n.exemption,
                opened: n.opened,
                resolved: n.resolved,
            });
        }
        h.notes.clear();
        h.text.clear();
    }

    /// The views of the incidents that changed, gathered by the last `take_changes`
    /// (with `record_history`).
    pub fn take_views(&mut self) -> Vec<IncidentView> {
        std::mem::take(&mut self.history.views)
    }

    /// Queues the view of every open incident for the next `take_views` (after a restore:
    /// a history written before the history existed, or lost, is filled in).
    pub fn queue_open_views(&mut self) {
        if !self.settings.record_history {
            return;
        }
        for slot in 0..self.slab.len() as Slot {
            let inc = &self.slab[slot as usize];
            if inc.live && inc.is_open() && !inc.dirty {
                let view = self.view_of(slot);
                self.history.views.push(view);
            }
        }
    }

    /// The view of incident `slot` now, open or resolved (for the history).
    pub(super) fn view_of(&self, slot: Slot) -> IncidentView {
        let inc = &self.slab[slot as usize];
        let now = self.clock.unwrap_or(inc.last_report_at);
        incident_view(&self.rules, self.registry.get(inc.participant), inc, now)
    }
}
