//! Telemetry gaps: which participant has been silent longest, in O(1) per event.
//!
//! Participants that are not silent sit in an intrusive doubly linked list ordered by when
//! they were last heard (the engine clock when their message arrived, which never goes back,
//! so appending keeps the order). The head is the only candidate for the next gap. A
//! participant whose gap fired leaves the list until it is heard again, so a silent one is
//! reported once, not on every tick.
//!
//! A participant is *watched* from start-up (replay: silence from the start counts) or from
//! its first message (the daemon, where each partition's engine watches only the participants
//! whose messages it owns). Watch state survives restarts through `snapshot`/`restore`.

use crate::registry::ParticipantIdx;
use crate::time::Timestamp;

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    prev: u32,
    next: u32,
    /// In the list: watched and not (yet) reported silent.
    linked: bool,
    watched: bool,
    heard_at: Timestamp,
}

pub struct Liveness {
    nodes: Vec<Node>,
    head: u32,
    tail: u32,
}

impl Liveness {
    /// With `watch_all`, every participant starts watched, as heard at `start` (silence from
    /// start-up counts); otherwise each is watched from its first message.
    pub fn new(participants: usize, start: Timestamp, watch_all: bool) -> Liveness {
        let mut l = Liveness {
            nodes: vec![
                Node {
                    prev: NIL,
                    next: NIL,
                    linked: false,
                    watched: watch_all,
                    heard_at: start,
                };
                participants
            ],
            head: NIL,
            tail: NIL,
        };
        if watch_all {
            for i in 0..participants as u32 {
                l.push_back(i);
            }
        }
        l
    }

    /// Marks `p` heard at `now`. Returns when it was last heard if it had been silent (its
    /// gap has ended), else `None`.
    pub fn heard(&mut self, p: ParticipantIdx, now: Timestamp) -> Option<Timestamp> {
        let i = p.0;
        let node = self.nodes[i as usize];
        let was_silent = node.watched && !node.linked;
        if node.linked {
            self.unlink(i);
        }
        let n = &mut self.nodes[i as usize];
        n.heard_at = if node.watched {
            node.heard_at.max(now)
        } else {
            now
        };
        n.watched = true;
        self.push_back(i);
        was_silent.then_some(node.heard_at)
    }

    /// The watch state of a participant: `None` if not watched, else when it was last heard
    /// and whether its silence has been reported.
    pub fn state(&self, p: ParticipantIdx) -> Option<(Timestamp, bool)> {
        let n = &self.nodes[p.get()];
        n.watched.then_some((n.heard_at, !n.linked))
    }

    /// Rebuilds watch states saved by [`Liveness::state`]; the list order follows `heard_at`.
    pub fn restore(&mut self, states: &mut [(ParticipantIdx, Timestamp, bool)]) {
        states.sort_by_key(|(p, at, _)| (*at, *p));
        for &(p, heard_at, silent) in states.iter() {
            if self.nodes[p.get()].linked {
                self.unlink(p.0);
            }
            let n = &mut self.nodes[p.get()];
            n.watched = true;
            n.heard_at = heard_at;
            if !silent {
                self.push_back(p.0);
            }
        }
    }

    /// The participant silent longest among those not already reported, with when it was
    /// last heard.
    pub fn quietest(&self) -> Option<(ParticipantIdx, Timestamp)> {
        (self.head != NIL).then(|| {
            (
                ParticipantIdx(self.head),
                self.nodes[self.head as usize].heard_at,
            )
        })
    }

    /// Takes `p` out of the list: its gap has been reported.
    pub fn mark_silent(&mut self, p: ParticipantIdx) {
        if self.nodes[p.get()].linked {
            self.unlink(p.0);
        }
    }

    #[cfg(test)]
    pub fn heard_at(&self, p: ParticipantIdx) -> Timestamp {
        self.nodes[p.get()].heard_at
    }

    pub fn is_silent(&self, p: ParticipantIdx) -> bool {
        self.nodes[p.get()].watched && !self.nodes[p.get()].linked
    }

    fn push_back(&mut self, i: u32) {
        let n = &mut self.nodes[i as usize];
        n.prev = self.tail;
        n.next = NIL;
        n.linked = true;
        if self.tail == NIL {
            self.head = i;
        } else {
            self.nodes[self.tail as usize].next = i;
        }
        self.tail = i;
    }

    fn unlink(&mut self, i: u32) {
        let Node { prev, next, .. } = self.nodes[i as usize];
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        let n = &mut self.nodes[i as usize];
        n.prev = NIL;
        n.next = NIL;
        n.linked = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    #[test]
    fn quietest_follows_last_heard_and_silence() {
        let mut l = Liveness::new(3, t(0), true);
        assert_eq!(l.quietest(), Some((ParticipantIdx(0), t(0))));
        assert_eq!(l.heard(ParticipantIdx(0), t(10)), None);
        assert_eq!(l.quietest(), Some((ParticipantIdx(1), t(0))));
        l.mark_silent(ParticipantIdx(1));
        assert!(l.is_silent(ParticipantIdx(1)));
        assert_eq!(l.quietest(), Some((ParticipantIdx(2), t(0))));
        l.mark_silent(ParticipantIdx(2));
        assert_eq!(l.quietest(), Some((ParticipantIdx(0), t(10))));
        // A silent participant heard again reports when it was last heard before.
        assert_eq!(l.heard(ParticipantIdx(1), t(20)), Some(t(0)));
        assert_eq!(l.heard_at(ParticipantIdx(1)), t(20));
        l.mark_silent(ParticipantIdx(0));
        assert_eq!(l.quietest(), Some((ParticipantIdx(1), t(20))));
        l.mark_silent(ParticipantIdx(1));
        assert_eq!(l.quietest(), None);
    }

    #[test]
    fn participants_can_be_watched_from_their_first_message_and_restored() {
        let mut l = Liveness::new(3, t(0), false);
        assert_eq!(l.quietest(), None, "nobody is watched yet");
        assert_eq!(
            l.heard(ParticipantIdx(2), t(50)),
            None,
            "first message is no gap end"
        );
        assert_eq!(l.quietest(), Some((ParticipantIdx(2), t(50))));
        assert_eq!(l.state(ParticipantIdx(0)), None);
        l.mark_silent(ParticipantIdx(2));
        assert_eq!(l.state(ParticipantIdx(2)), Some((t(50), true)));

        let mut copy = Liveness::new(3, t(0), false);
        copy.restore(&mut [
            (ParticipantIdx(2), t(50), true),
            (ParticipantIdx(1), t(40), false),
            (ParticipantIdx(0), t(30), false),
        ]);
        assert_eq!(copy.quietest(), Some((ParticipantIdx(0), t(30))));
        copy.mark_silent(ParticipantIdx(0));
        assert_eq!(copy.quietest(), Some((ParticipantIdx(1), t(40))));
        assert_eq!(
            copy.heard(ParticipantIdx(2), t(60)),
            Some(t(50)),
            "its gap ends"
        );
    }
}
