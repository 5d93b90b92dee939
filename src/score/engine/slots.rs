//! The incident slab: allocating a slot for a new or restored incident (one place), and
//! evicting resolved incidents at the end of their retention or early, at capacity.
//!
//! Fairness at capacity: a new incident that finds the engine full first evicts the oldest
//! retained resolved incident of its own participant. Only a participant holding less than
//! its fair share (`max_incidents` / registered participants) may evict another's, and only
//! one of a participant holding more than its share. A participant that churns incidents
//! therefore recycles its own retention and cannot push other participants' resolved
//! incidents out (whose late reports would then open them again).

use super::*;

impl Engine {
    /// A free slot for a new or restored incident (the one place that allocates one), with
    /// the generation its incident takes: one past the slot's last, so every `Due` of the
    /// slot's previous incident is void.
    pub(super) fn alloc_slot(&mut self) -> (Slot, u32) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slab.push(Incident::placeholder());
                (self.slab.len() - 1) as Slot
            }
        };
        let generation = self.slab[slot as usize].generation.wrapping_add(1);
        (slot, generation)
    }

    /// Schedules the eviction of a resolved incident at `at`, the end of its retention
    /// (in clock order: resolutions come in clock order, restores sort theirs).
    pub(super) fn schedule_eviction(&mut self, due: Due) {
        self.evictions.push(due);
        let p = self.slab[due.slot as usize].participant;
        self.participants[p.get()].retained.push_back(due);
        let slab = &self.slab;
        self.evictions
            .compact_if_needed(self.in_use, |d| eviction_live(slab, d));
    }

    pub(super) fn evict(&mut self, due: Due) -> bool {
        if !eviction_live(&self.slab, &due) {
            return false;
        }
        let inc = &mut self.slab[due.slot as usize];
        inc.live = false;
        let id = std::mem::take(&mut inc.incident_id);
        let participant = inc.participant;
        let ps = &mut self.participants[participant.get()];
        ps.incidents.remove(&id);
        if ps.retained.front() == Some(&due) {
            ps.retained.pop_front();
        }
        if self.settings.track_changes {
            self.changes.evicted.push((participant, id));
        }
        self.free.push(due.slot);
        self.in_use -= 1;
        self.stats.evicted += 1;
        true
    }

    /// Makes room for a new incident of `p` at capacity by evicting a retained resolved
    /// incident ahead of time (the fairness rule in the module doc); false if none may go.
    pub(super) fn make_room(&mut self, p: ParticipantIdx) -> bool {
        if self.evict_oldest_of(p) {
            return true;
        }
        let share = self.settings.max_incidents / self.registry.len().max(1);
        if self.participants[p.get()].incidents.len() >= share {
            return false;
        }
        let over = self
            .participants
            .iter()
            .enumerate()
            .filter(|(_, ps)| ps.incidents.len() > share && !ps.retained.is_empty())
            .max_by_key(|(_, ps)| ps.incidents.len())
            .map(|(i, _)| ParticipantIdx(i as u32));
        over.is_some_and(|q| self.evict_oldest_of(q))
    }

    /// Evicts the oldest retained resolved incident of `p` ahead of time, if it has one.
    fn evict_oldest_of(&mut self, p: ParticipantIdx) -> bool {
        while let Some(due) = self.participants[p.get()].retained.pop_front() {
            if self.evict(due) {
                self.stats.evicted_early += 1;
                return true;
            }
        }
        false
    }
}

/// Whether an eviction entry still stands for a retained resolved incident.
pub(super) fn eviction_live(slab: &[Incident], d: &Due) -> bool {
    slab.get(d.slot as usize)
        .is_some_and(|inc| inc.live && inc.generation == d.generation && !inc.is_open())
}
