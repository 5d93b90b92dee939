//! Telemetry gaps: which participant has been silent longest, in O(1) per event.
//!
//! Participants that are not silent sit in an intrusive doubly linked list ordered by when
//! they were last heard (the engine clock when their message arrived, which never goes back,
//! so appending keeps the order). The head is the only candidate for the next gap. A
//! participant whose gap fired moves to a second list, of silent participants, until it is
//! heard again, so a silent one is reported once, not on every tick. Gaps fire in `heard_at`
//! order, so that list is ordered too: its head is the participant silent longest, the only
//! candidate to be forgotten (a partition that has not heard a participant for the liveness
//! retention no longer watches it: its messages now go elsewhere, or it left).
//!
//! A participant is *watched* from start-up (replay: silence from the start counts) or from
//! its first message (the daemon, where each partition's engine watches only the participants
//! whose messages it owns). Watch state survives restarts through `state`/`restore`.

use crate::registry::ParticipantIdx;
use crate::time::Timestamp;

const NIL: u32 = u32::MAX;

/// Which list a node is in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum In {
    /// Not watched (never heard, or forgotten).
    None,
    /// Watched, silence not (yet) reported.
    Heard,
    /// Watched, silence reported.
    Silent,
}

#[derive(Clone, Copy)]
struct Node {
    prev: u32,
    next: u32,
    list: In,
    heard_at: Timestamp,
}

#[derive(Clone, Copy)]
struct Ends {
    head: u32,
    tail: u32,
}

const EMPTY: Ends = Ends {
    head: NIL,
    tail: NIL,
};

pub struct Liveness {
    nodes: Vec<Node>,
    heard: Ends,
    silent: Ends,
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
                    list: In::None,
                    heard_at: start,
                };
                participants
            ],
            heard: EMPTY,
            silent: EMPTY,
        };
        if watch_all {
            for i in 0..participants as u32 {
                l.push_back(i, In::Heard);
            }
        }
        l
    }

    /// Marks `p` heard at `now`. Returns when it was last heard if it had been silent (its
    /// gap has ended), else `None`.
    pub fn heard(&mut self, p: ParticipantIdx, now: Timestamp) -> Option<Timestamp> {
        let i = p.0;
        let node = self.nodes[i as usize];
        self.unlink(i);
        self.nodes[i as usize].heard_at = if node.list == In::None {
            now
        } else {
            node.heard_at.max(now)
        };
        self.push_back(i, In::Heard);
        (node.list == In::Silent).then_some(node.heard_at)
    }

    /// The watch state of a participant: `None` if not watched, else when it was last heard
    /// and whether its silence has been reported.
    pub fn state(&self, p: ParticipantIdx) -> Option<(Timestamp, bool)> {
        let n = &self.nodes[p.get()];
        (n.list != In::None).then_some((n.heard_at, n.list == In::Silent))
    }

    /// Rebuilds watch states saved by [`Liveness::state`]; the lists' order follows `heard_at`.
    pub fn restore(&mut self, states: &mut [(ParticipantIdx, Timestamp, bool)]) {
        states.sort_by_key(|(p, at, _)| (*at, *p));
        for &(p, heard_at, silent) in states.iter() {
            self.unlink(p.0);
            self.nodes[p.get()].heard_at = heard_at;
            self.push_back(p.0, if silent { In::Silent } else { In::Heard });
        }
    }

    /// The participant silent longest among those not already reported, with when it was
    /// last heard.
    pub fn quietest(&self) -> Option<(ParticipantIdx, Timestamp)> {
        self.head_of(self.heard)
    }

    /// The participant reported silent that was heard least recently, with when.
    pub fn longest_silent(&self) -> Option<(ParticipantIdx, Timestamp)> {
        self.head_of(self.silent)
    }

    /// Moves `p` to the silent list: its gap has been reported.
    pub fn mark_silent(&mut self, p: ParticipantIdx) {
        if self.nodes[p.get()].list == In::Heard {
            self.unlink(p.0);
            self.push_back(p.0, In::Silent);
        }
    }

    /// Stops watching `p` until it is heard again.
    pub fn forget(&mut self, p: ParticipantIdx) {
        self.unlink(p.0);
    }

    #[cfg(test)]
    pub fn heard_at(&self, p: ParticipantIdx) -> Timestamp {
        self.nodes[p.get()].heard_at
    }

    pub fn is_silent(&self, p: ParticipantIdx) -> bool {
        self.nodes[p.get()].list == In::Silent
    }

    fn head_of(&self, ends: Ends) -> Option<(ParticipantIdx, Timestamp)> {
        (ends.head != NIL).then(|| {
            (
                ParticipantIdx(ends.head),
                self.nodes[ends.head as usize].heard_at,
            )
        })
    }

    fn ends(&mut self, list: In) -> &mut Ends {
        match list {
            In::Silent => &mut self.silent,
            _ => &mut self.heard,
        }
    }

    fn push_back(&mut self, i: u32, list: In) {
        let tail = self.ends(list).tail;
        let n = &mut self.nodes[i as usize];
        n.prev = tail;
        n.next = NIL;
        n.list = list;
        if tail == NIL {
            self.ends(list).head = i;
        } else {
            self.nodes[tail as usize].next = i;
        }
        self.ends(list).tail = i;
    }

    /// Takes `i` out of whichever list holds it (if any).
    fn unlink(&mut self, i: u32) {
        let Node {
            prev, next, list, ..
        } = self.nodes[i as usize];
        if list == In::None {
            return;
        }
        if prev == NIL {
            self.ends(list).head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.ends(list).tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        let n = &mut self.nodes[i as usize];
        n.prev = NIL;
        n.next = NIL;
        n.list = In::None;
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

    #[test]
    fn silent_participants_are_ordered_and_can_be_forgotten() {
        let mut l = Liveness::new(3, t(0), false);
        l.heard(ParticipantIdx(0), t(10));
        l.heard(ParticipantIdx(1), t(20));
        l.heard(ParticipantIdx(2), t(30));
        assert_eq!(l.longest_silent(), None);
        l.mark_silent(ParticipantIdx(0));
        l.mark_silent(ParticipantIdx(1));
        assert_eq!(l.longest_silent(), Some((ParticipantIdx(0), t(10))));
        l.forget(ParticipantIdx(0));
        assert_eq!(l.state(ParticipantIdx(0)), None);
        assert!(!l.is_silent(ParticipantIdx(0)));
        assert_eq!(l.longest_silent(), Some((ParticipantIdx(1), t(20))));
        // Heard again, a silent one leaves the silent list; a forgotten one is watched anew
        // and its first message ends no gap.
        assert_eq!(l.heard(ParticipantIdx(1), t(40)), Some(t(20)));
        assert_eq!(l.longest_silent(), None);
        assert_eq!(l.heard(ParticipantIdx(0), t(50)), None);
        assert_eq!(l.quietest(), Some((ParticipantIdx(2), t(30))));
        // Restored silent states come back in heard_at order.
        let mut copy = Liveness::new(3, t(0), false);
        copy.restore(&mut [
            (ParticipantIdx(2), t(70), true),
            (ParticipantIdx(0), t(60), true),
        ]);
        assert_eq!(copy.longest_silent(), Some((ParticipantIdx(0), t(60))));
        assert_eq!(copy.quietest(), None);
    }
}
