//! Bounded memory of recent `event_id`s per participant, to ignore redelivered duplicates.
//!
//! Keeps the 64-bit hashes of the last `window` event ids of one participant: a set for the
//! lookup and a ring for the order of eviction. Memory is fixed at about 24 bytes x window per
//! participant that has sent an event (allocated on its first event, never again: the set is
//! reserved at twice the window, so hashbrown rehashes in place instead of growing).
//!
//! A duplicate older than the window is graded again. That is harmless by construction:
//! figures are cumulative maxima and alerts fire only on transitions, so a replayed report can
//! raise nothing its first delivery did not already raise.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Hash of an event id. SipHash with fixed keys: stable across runs and instances.
pub fn event_hash(event_id: &str) -> u64 {
    #[allow(deprecated)] // SipHasher is deprecated only in favour of unstable variants.
    let mut h = std::hash::SipHasher::new_with_keys(0x7265_6777_6174_6368, 0x6576_656e_7431);
    h.write(event_id.as_bytes());
    h.finish()
}

/// The keys are already hashes: pass them through.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub struct Dedup {
    window: usize,
    set: HashSet<u64, BuildHasherDefault<IdentityHasher>>,
    order: VecDeque<u64>,
}

impl Dedup {
    pub fn new(window: usize) -> Dedup {
        Dedup {
            window,
            set: HashSet::with_capacity_and_hasher(window * 2, Default::default()),
            order: VecDeque::with_capacity(window),
        }
    }

    pub fn contains(&self, hash: u64) -> bool {
        self.set.contains(&hash)
    }

    /// Remembers `hash`, forgetting the oldest one when the window is full.
    pub fn insert(&mut self, hash: u64) {
        if self.window == 0 || !self.set.insert(hash) {
            return;
        }
        if self.order.len() == self.window {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_exactly_the_last_window_ids() {
        let mut d = Dedup::new(3);
        for id in ["a", "b", "c", "d"] {
            d.insert(event_hash(id));
        }
        assert!(!d.contains(event_hash("a")), "oldest id is forgotten");
        for id in ["b", "c", "d"] {
            assert!(d.contains(event_hash(id)), "{id} is remembered");
        }
        d.insert(event_hash("c"));
        d.insert(event_hash("e"));
        assert!(!d.contains(event_hash("b")));
        assert!(d.contains(event_hash("c")) && d.contains(event_hash("e")));
    }

    #[test]
    fn event_hash_is_stable() {
        assert_eq!(event_hash("e-1"), event_hash("e-1"));
        assert_ne!(event_hash("e-1"), event_hash("e-2"));
    }
}
