//! Bounded memory of recent events, to ignore redelivered duplicates.
//!
//! Keeps the 64-bit hashes of (participant, `event_id`) of the last `window` events the engine
//! accepted: an open-addressing table (linear probing, at most half full, backward-shift
//! deletion) for the lookup and a ring for the order of eviction. One window for the whole
//! engine rather than one per participant keeps the memory small enough to stay in cache
//! (24 bytes x window, 384 KiB at the default 16,384, allocated once) and lets busy
//! participants use more of it than quiet ones.
//!
//! A duplicate older than the window is graded again. That is harmless by construction:
//! figures are cumulative maxima and alerts fire only on transitions, so a replayed report can
//! raise nothing its first delivery did not already raise.

/// Hash of a participant's event id: foldhash with a fixed seed (stable within and across
/// runs of one build; the window is never persisted, so nothing depends on it beyond that).
pub fn event_hash(participant: u32, event_id: &str) -> u64 {
    use std::hash::BuildHasher;
    const SEED: foldhash::quality::FixedState =
        foldhash::quality::FixedState::with_seed(0x7265_6777_6174_6368);
    // 0 marks an empty slot.
    SEED.hash_one((participant, event_id.as_bytes())).max(1)
}

/// A looked-up, not yet remembered event id.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    slot: usize,
    hash: u64,
}

pub struct Dedup {
    /// 0 = empty. Length is a power of two, at least twice the window.
    table: Box<[u64]>,
    mask: usize,
    /// The window, oldest at `next` once full.
    ring: Box<[u64]>,
    next: usize,
    len: usize,
}

impl Dedup {
    pub fn new(window: usize) -> Dedup {
        // More than twice the window: a commit inserts before it evicts, so the table holds
        // up to window + 1 ids and must keep an empty slot to end every probe.
        let size = (window * 2 + 2).next_power_of_two();
        Dedup {
            table: vec![0; size].into_boxed_slice(),
            mask: size - 1,
            ring: vec![0; window].into_boxed_slice(),
            next: 0,
            len: 0,
        }
    }

    fn home(&self, hash: u64) -> usize {
        // The low bits feed the participant maps elsewhere; use the high ones here.
        (hash >> 32) as usize & self.mask
    }

    /// The slot holding `hash`, or the empty slot where it would go.
    fn probe(&self, hash: u64) -> (usize, bool) {
        let mut i = self.home(hash);
        loop {
            match self.table[i] {
                0 => return (i, false),
                h if h == hash => return (i, true),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    #[cfg(test)]
    pub fn contains(&self, hash: u64) -> bool {
        self.probe(hash).1
    }

    /// Looks `hash` up once: `None` if it is remembered (a duplicate), else a ticket that
    /// [`Dedup::commit`] uses to remember it without probing again.
    pub fn check(&self, hash: u64) -> Option<Ticket> {
        match self.probe(hash) {
            (_, true) => None,
            (slot, false) => Some(Ticket { slot, hash }),
        }
    }

    /// Remembers the event of a ticket from [`Dedup::check`] on this window, with no other
    /// change to the window in between; forgets the oldest id when the window is full.
    pub fn commit(&mut self, ticket: Ticket) {
        if self.ring.is_empty() {
            return;
        }
        self.table[ticket.slot] = ticket.hash;
        if self.len == self.ring.len() {
            let oldest = self.ring[self.next];
            self.remove(oldest);
        } else {
            self.len += 1;
        }
        self.ring[self.next] = ticket.hash;
        self.next = (self.next + 1) % self.ring.len();
    }

    /// Remembers `hash` (no-op if it already is).
    #[cfg(test)]
    pub fn insert(&mut self, hash: u64) {
        if let Some(ticket) = self.check(hash) {
            self.commit(ticket);
        }
    }

    /// Linear-probing deletion: shift later members of the cluster back over the hole.
    fn remove(&mut self, hash: u64) {
        let (mut hole, found) = self.probe(hash);
        if !found {
            return;
        }
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let h = self.table[j];
            if h == 0 {
                break;
            }
            let home = self.home(h);
            // `h` may move into the hole if its home is not cyclically within (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.table[hole] = h;
                hole = j;
            }
        }
        self.table[hole] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_exactly_the_last_window_ids() {
        let mut d = Dedup::new(3);
        for id in ["a", "b", "c", "d"] {
            d.insert(event_hash(0, id));
        }
        assert!(!d.contains(event_hash(0, "a")), "oldest id is forgotten");
        for id in ["b", "c", "d"] {
            assert!(d.contains(event_hash(0, id)), "{id} is remembered");
        }
        d.insert(event_hash(0, "c"));
        d.insert(event_hash(0, "e"));
        assert!(!d.contains(event_hash(0, "b")));
        assert!(d.contains(event_hash(0, "c")) && d.contains(event_hash(0, "e")));
    }

    #[test]
    fn agrees_with_a_model_under_heavy_collisions() {
        // Hashes that share their high bits collide on the same home slot.
        let colliding = |i: u64| (7u64 << 32) | (i + 1);
        let mut d = Dedup::new(8);
        let mut model = std::collections::VecDeque::new();
        for round in 0..200u64 {
            let h = colliding(round % 13) ^ ((round % 3) << 40);
            if !model.contains(&h) {
                model.push_back(h);
                if model.len() > 8 {
                    model.pop_front();
                }
            }
            d.insert(h);
            for probe in 0..40u64 {
                let p = colliding(probe % 13) ^ ((probe % 3) << 40);
                assert_eq!(
                    d.contains(p),
                    model.contains(&p),
                    "round {round}, probe {p:x}"
                );
            }
        }
    }

    #[test]
    fn tiny_windows_work() {
        for window in [0, 1, 2, 3] {
            let mut d = Dedup::new(window);
            for i in 0..50u64 {
                d.insert(event_hash(0, &i.to_string()));
                assert_eq!(d.contains(event_hash(0, &i.to_string())), window > 0);
                if i > 0 && window == 1 {
                    assert!(!d.contains(event_hash(0, &(i - 1).to_string())));
                }
            }
        }
    }

    #[test]
    fn event_hash_is_stable() {
        assert_eq!(event_hash(0, "e-1"), event_hash(0, "e-1"));
        assert_ne!(event_hash(0, "e-1"), event_hash(0, "e-2"));
        assert_ne!(
            event_hash(0, "e-1"),
            event_hash(1, "e-1"),
            "ids are per participant"
        );
    }
}
