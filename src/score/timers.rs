//! Deadlines: when time alone changes an incident (escalation) or ends its retention.
//!
//! Escalations sit in a min-heap of `(due, slot, generation)`. Rescheduling an incident bumps
//! its generation instead of searching the heap; a popped entry whose generation is stale is
//! dropped. Stale entries are compacted away once they outnumber the live ones, so the heap
//! stays within twice the number of open incidents.
//!
//! The engine keeps a second heap of the same kind for reminders; an entry there is live while
//! it matches the incident's `next_reminder` (escalation generations do not touch it).
//!
//! Evictions of resolved incidents are due at `resolution clock + retention`. The engine clock
//! never goes back, so they arrive in due order and a FIFO queue is enough.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::time::Timestamp;

/// Index of an incident in the engine's slab.
pub type Slot = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    pub at: Timestamp,
    pub slot: Slot,
    pub generation: u32,
}

pub struct Deadlines {
    heap: BinaryHeap<Reverse<Due>>,
}

impl Deadlines {
    pub fn with_capacity(n: usize) -> Deadlines {
        Deadlines {
            heap: BinaryHeap::with_capacity(n),
        }
    }

    /// Schedules a deadline; the caller bumps the slot's generation to void an earlier one.
    pub fn schedule(&mut self, due: Due) {
        self.heap.push(Reverse(due));
    }

    /// The earliest entry (possibly stale: the caller checks the generation).
    pub fn peek(&self) -> Option<Due> {
        self.heap.peek().map(|r| r.0)
    }

    pub fn pop(&mut self) -> Option<Due> {
        self.heap.pop().map(|r| r.0)
    }

    /// Drops stale entries once they outnumber the `live` ones.
    pub fn compact_if_needed(&mut self, live: usize, is_live: impl Fn(&Due) -> bool) {
        if self.heap.len() > 64 + 2 * live {
            self.heap.retain(|r| is_live(&r.0));
        }
    }
}

/// Resolved incidents waiting for the end of their retention, in due order.
#[derive(Default)]
pub struct Evictions {
    queue: VecDeque<Due>,
}

impl Evictions {
    pub fn push(&mut self, due: Due) {
        debug_assert!(self.queue.back().is_none_or(|b| b.at <= due.at));
        self.queue.push_back(due);
    }

    pub fn peek(&self) -> Option<Due> {
        self.queue.front().copied()
    }

    pub fn pop(&mut self) -> Option<Due> {
        self.queue.pop_front()
    }

    /// Drops entries no longer standing (evicted early) once they outnumber the `live`
    /// incidents held.
    pub fn compact_if_needed(&mut self, live: usize, is_live: impl Fn(&Due) -> bool) {
        if self.queue.len() > 64 + 2 * live {
            self.queue.retain(|d| is_live(d));
        }
    }
}
