//! The incident slab: allocating a slot for a new or restored incident (one place), and
//! evicting resolved incidents at the end of their retention or early, at capacity.

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

    pub(super) fn evict(&mut self, due: Due) -> bool {
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

    /// Frees the oldest retained resolved incident ahead of time, if there is one.
    pub(super) fn evict_oldest_resolved(&mut self) -> bool {
        while let Some(due) = self.evictions.pop() {
            if self.evict(due) {
                self.stats.evicted_early += 1;
                return true;
            }
        }
        false
    }
}
