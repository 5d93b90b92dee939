//! A partition worker's ledger: the records it produced and which of them the broker has
//! acknowledged, the state snapshot on its way, and the offset it may commit. Pure
//! bookkeeping (no I/O, no clock), so the rules of at-least-once are tested here alone:
//!
//! - every record is numbered; the acknowledged prefix grows only without gaps;
//! - a snapshot is written only once every record produced before it is acknowledged, and
//!   the offset it covers is committed only once the snapshot itself is;
//! - within one snapshot each key is written once (the last change wins), and the next
//!   snapshot starts only after this one is acknowledged: a state record produced again
//!   after a failure can never land after a later record of the same key;
//! - an offset counts as committed only when the broker confirms it; a failed commit is
//!   asked again by the next flush;
//! - once fenced (the partition was lost, or its stop timed out) the ledger hands out no
//!   more writes and no more commits.

use std::collections::VecDeque;

/// A state-topic write: key, and value (`None` is a tombstone).
pub type StateWrite = (String, Option<Vec<u8>>);

/// Sequence numbers of produced records and how far they are acknowledged without a gap.
#[derive(Debug, Default)]
pub struct Acks {
    next: u64,
    /// Every sequence number below this is acknowledged.
    contiguous: u64,
    /// Acknowledgement flags for `contiguous..next`.
    window: VecDeque<bool>,
}

impl Acks {
    /// Numbers the next record.
    pub fn issue(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.window.push_back(false);
        seq
    }

    pub fn ack(&mut self, seq: u64) {
        if let Some(flag) = seq
            .checked_sub(self.contiguous)
            .and_then(|i| self.window.get_mut(i as usize))
        {
            *flag = true;
        }
        while self.window.front() == Some(&true) {
            self.window.pop_front();
            self.contiguous += 1;
        }
    }

    /// The sequence number the next record will get.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Whether every record numbered below `seq` is acknowledged.
    pub fn acked_below(&self, seq: u64) -> bool {
        self.contiguous >= seq
    }

    /// Records produced and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.window.len()
    }
}

#[derive(Debug)]
enum Phase {
    Idle,
    /// A snapshot waiting for every record numbered below `after` to be acknowledged.
    Waiting {
        records: Vec<StateWrite>,
        after: u64,
        covers: Option<i64>,
    },
    /// The snapshot was handed out; its records are being produced.
    Writing {
        covers: Option<i64>,
    },
    /// The snapshot is produced; done when everything below `until` is acknowledged.
    Sending {
        until: u64,
        covers: Option<i64>,
    },
}

/// What the worker must do next for its flush.
#[derive(Debug, PartialEq)]
pub enum Step {
    Nothing,
    /// Produce these state records now, then call [`Ledger::written`].
    Write(Vec<StateWrite>),
    /// The snapshot is acknowledged: the flush is done. Commit the offset it covers, if
    /// there is one not committed yet.
    Flushed(Option<i64>),
}

/// The worker's at-least-once bookkeeping.
#[derive(Debug)]
pub struct Ledger {
    acks: Acks,
    phase: Phase,
    /// Offset after the last processed message.
    next_offset: Option<i64>,
    /// The last offset the broker confirmed as committed.
    committed: Option<i64>,
    fenced: bool,
}

impl Default for Ledger {
    fn default() -> Ledger {
        Ledger {
            acks: Acks::default(),
            phase: Phase::Idle,
            next_offset: None,
            committed: None,
            fenced: false,
        }
    }
}

impl Ledger {
    /// Numbers a record about to be produced.
    pub fn issue(&mut self) -> u64 {
        self.acks.issue()
    }

    /// The broker acknowledged record `seq`.
    pub fn ack(&mut self, seq: u64) {
        self.acks.ack(seq);
    }

    pub fn in_flight(&self) -> usize {
        self.acks.in_flight()
    }

    /// The sequence number the next record will get: every record produced so far is
    /// numbered below it.
    pub fn issued(&self) -> u64 {
        self.acks.next()
    }

    /// Whether every record numbered below `seq` is acknowledged.
    pub fn acked_below(&self, seq: u64) -> bool {
        self.acks.acked_below(seq)
    }

    /// Every record produced so far is acknowledged.
    pub fn all_acked(&self) -> bool {
        self.acks.acked_below(self.acks.next())
    }

    /// The message at `offset` is processed (everything it caused is numbered).
    pub fn processed(&mut self, offset: i64) {
        self.next_offset = Some(offset + 1);
    }

    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }

    pub fn committed(&self) -> Option<i64> {
        self.committed
    }

    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle)
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// From now on nothing more is written or committed for this partition.
    pub fn fence(&mut self) {
        self.fenced = true;
        self.phase = Phase::Idle;
    }

    /// Takes a snapshot of `changes` (in the order they happened; the last write of a key
    /// wins). Returns false, and starts nothing, when there is nothing to write and the
    /// offset is already committed, when a flush is under way, or when fenced.
    pub fn start_flush(&mut self, changes: Vec<StateWrite>) -> bool {
        if self.fenced || !self.is_idle() {
            return false;
        }
        if changes.is_empty() && self.next_offset == self.committed {
            return false;
        }
        self.phase = Phase::Waiting {
            records: coalesce(changes),
            after: self.acks.next(),
            covers: self.next_offset,
        };
        true
    }

    /// Moves the flush on as far as the acknowledgements allow.
    pub fn step(&mut self) -> Step {
        if self.fenced {
            return Step::Nothing;
        }
        match self.phase {
            Phase::Waiting { after, covers, .. } if self.acks.acked_below(after) => {
                let Phase::Waiting { records, .. } =
                    std::mem::replace(&mut self.phase, Phase::Writing { covers })
                else {
                    unreachable!("matched above")
                };
                Step::Write(records)
            }
            Phase::Sending { until, covers } if self.acks.acked_below(until) => {
                self.phase = Phase::Idle;
                Step::Flushed(covers.filter(|offset| self.committed != Some(*offset)))
            }
            _ => Step::Nothing,
        }
    }

    /// The offset the snapshot handed out by [`Step::Write`] covers, until it is written.
    pub fn writing_covers(&self) -> Option<i64> {
        match self.phase {
            Phase::Writing { covers } => covers,
            _ => None,
        }
    }

    /// The records of the last [`Step::Write`] are produced (numbered).
    pub fn written(&mut self) {
        if let Phase::Writing { covers } = self.phase {
            self.phase = Phase::Sending {
                until: self.acks.next(),
                covers,
            };
        }
    }

    /// The broker's answer to a commit of `offset`. A failure leaves the offset uncommitted,
    /// so the next flush asks again.
    pub fn commit_result(&mut self, offset: i64, ok: bool) {
        if ok && self.committed.is_none_or(|c| offset > c) {
            self.committed = Some(offset);
        }
    }

    /// The offset a final (synchronous) commit should make, if it is not committed yet.
    pub fn final_commit(&self) -> Option<i64> {
        if self.fenced || !self.all_acked() {
            return None;
        }
        self.next_offset.filter(|o| self.committed != Some(*o))
    }
}

/// One write per key, the last one, in the order of each key's last write.
fn coalesce(changes: Vec<StateWrite>) -> Vec<StateWrite> {
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, (key, _)) in changes.iter().enumerate() {
        last.insert(key.as_str(), i);
    }
    if last.len() == changes.len() {
        return changes;
    }
    let keep: Vec<bool> = (0..changes.len())
        .map(|i| last.get(changes[i].0.as_str()) == Some(&i))
        .collect();
    changes
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, v: &str) -> StateWrite {
        (key.into(), Some(v.as_bytes().to_vec()))
    }

    #[test]
    fn acks_advance_only_without_gaps() {
        let mut a = Acks::default();
        let s: Vec<u64> = (0..4).map(|_| a.issue()).collect();
        assert_eq!(s, [0, 1, 2, 3]);
        a.ack(2);
        assert!(!a.acked_below(1));
        assert_eq!(a.in_flight(), 4);
        a.ack(0);
        assert!(a.acked_below(1) && !a.acked_below(2));
        a.ack(1);
        assert!(a.acked_below(3) && !a.acked_below(4));
        a.ack(3);
        assert!(a.acked_below(a.next()));
        assert_eq!(a.in_flight(), 0);
        a.ack(3);
        a.ack(99);
        assert_eq!(a.in_flight(), 0, "stray acks change nothing");
    }

    #[test]
    fn a_snapshot_waits_for_earlier_records_and_the_commit_for_the_snapshot() {
        let mut l = Ledger::default();
        let alert = l.issue();
        l.processed(41);
        assert!(l.start_flush(vec![put("k", "1")]));
        assert_eq!(l.step(), Step::Nothing, "the alert is not acknowledged yet");
        l.ack(alert);
        assert_eq!(l.step(), Step::Write(vec![put("k", "1")]));
        assert_eq!(l.writing_covers(), Some(42));
        let state = l.issue();
        l.written();
        let later_alert = l.issue();
        assert_eq!(
            l.step(),
            Step::Nothing,
            "the snapshot is not acknowledged yet"
        );
        l.ack(later_alert);
        assert_eq!(
            l.step(),
            Step::Nothing,
            "a later record does not stand in for it"
        );
        l.ack(state);
        assert_eq!(l.step(), Step::Flushed(Some(42)));
        assert!(l.is_idle());
        assert_eq!(
            l.committed(),
            None,
            "not committed until the broker confirms"
        );
        l.commit_result(42, true);
        assert_eq!(l.committed(), Some(42));
        assert!(!l.start_flush(vec![]), "nothing new to write or commit");
    }

    #[test]
    fn a_failed_commit_is_asked_again_by_the_next_flush() {
        let mut l = Ledger::default();
        l.processed(9);
        assert!(l.start_flush(vec![]));
        assert_eq!(l.step(), Step::Write(vec![]));
        l.written();
        assert_eq!(l.step(), Step::Flushed(Some(10)));
        l.commit_result(10, false);
        assert_eq!(l.committed(), None);
        assert!(
            l.start_flush(vec![]),
            "the uncommitted offset makes a new flush"
        );
        assert_eq!(l.step(), Step::Write(vec![]));
        l.written();
        assert_eq!(l.step(), Step::Flushed(Some(10)));
        l.commit_result(10, true);
        assert!(
            l.start_flush(vec![put("k", "v")]),
            "new state makes a flush"
        );
        assert_eq!(l.step(), Step::Write(vec![put("k", "v")]));
        l.written();
        assert_eq!(
            l.step(),
            Step::Flushed(None),
            "a flush done with its offset already committed commits nothing"
        );
        l.commit_result(7, true);
        assert_eq!(
            l.committed(),
            Some(10),
            "an older confirmation never moves it back"
        );
    }

    #[test]
    fn one_write_per_key_in_a_snapshot_and_snapshots_in_sequence() {
        let mut l = Ledger::default();
        l.processed(0);
        // Evicted (tombstone), then opened again under the same id: the put must win.
        let changes = vec![
            ("i|P|A".to_string(), None),
            put("p|P", "heard"),
            put("i|P|A", "reopened"),
        ];
        assert!(l.start_flush(changes));
        let Step::Write(records) = l.step() else {
            panic!("no earlier records: written at once")
        };
        assert_eq!(records, vec![put("p|P", "heard"), put("i|P|A", "reopened")]);
        let seqs: Vec<u64> = records.iter().map(|_| l.issue()).collect();
        l.written();
        // A failed record is produced again under its number: until it is acknowledged, no
        // new snapshot (which could hold a later write of the same key) can start.
        l.ack(seqs[0]);
        assert!(!l.start_flush(vec![("i|P|A".to_string(), None)]));
        assert_eq!(l.step(), Step::Nothing);
        l.ack(seqs[1]);
        assert_eq!(l.step(), Step::Flushed(Some(1)));
        assert!(l.start_flush(vec![("i|P|A".to_string(), None)]));
    }

    #[test]
    fn a_fenced_ledger_writes_and_commits_nothing() {
        let mut l = Ledger::default();
        l.processed(5);
        assert!(l.start_flush(vec![put("k", "v")]));
        l.fence();
        assert_eq!(l.step(), Step::Nothing);
        assert!(!l.start_flush(vec![put("k", "v")]));
        assert_eq!(l.final_commit(), None);
        assert!(l.is_fenced());
    }

    #[test]
    fn the_final_commit_needs_every_record_acknowledged() {
        let mut l = Ledger::default();
        let seq = l.issue();
        l.processed(3);
        assert_eq!(l.final_commit(), None);
        l.ack(seq);
        assert_eq!(l.final_commit(), Some(4));
        l.commit_result(4, true);
        assert_eq!(l.final_commit(), None, "already committed");
    }
}
