//! Where each participant is heard: one events partition per participant. Every incident of a
//! participant lives in the engine of the partition its events arrive on, so a participant
//! heard on two partitions (producers with different partitioners, such as the Java client's
//! murmur2 and librdkafka's default CRC32; a key that is not the participant id; a bound
//! participant writing two topics) would grow two copies of one incident that grade apart.
//!
//! The partitions this instance owns share one table: the first partition to hear a
//! participant (or to restore state for it) is its home; an event for it on any other is
//! refused `partition_conflict` (dead-lettered with the two partitions named, counted in
//! `regwatch_partition_conflicts_total`), so nothing is lost and nothing is graded twice. A
//! partition that leaves this instance gives its participants up. State restored for one
//! participant on two partitions is two copies already: the worker stops the daemon and says
//! so. Across instances the same check holds through `regwatch_participant_partitions` (one
//! series per partition hearing a participant), which the `RegwatchParticipantSplit` alert
//! sums over the fleet.

use std::sync::{Arc, Mutex};

use crate::registry::ParticipantIdx;

/// A participant's home: the events topic and partition it is heard on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl std::fmt::Display for Home {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// The homes of every participant, indexed by registry position.
pub struct Homes(Mutex<Vec<Option<Home>>>);

impl Homes {
    pub fn new(participants: usize) -> Homes {
        Homes(Mutex::new(vec![None; participants]))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Home>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `home` the participant's home if it has none; `Err` with the other home if it
    /// has one elsewhere.
    pub fn claim(&self, p: ParticipantIdx, home: &Home) -> Result<(), Home> {
        let mut homes = self.lock();
        match &mut homes[p.get()] {
            Some(h) if h == home => Ok(()),
            Some(other) => Err(other.clone()),
            free @ None => {
                *free = Some(home.clone());
                Ok(())
            }
        }
    }

    /// Gives up every participant whose home is `home` (its partition left this instance).
    pub fn release(&self, home: &Home) {
        for h in self.lock().iter_mut() {
            if h.as_ref() == Some(home) {
                *h = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_participant_has_one_home_until_its_partition_leaves() {
        let homes = Homes::new(2);
        let a = Home {
            topic: "events".into(),
            partition: 0,
        };
        let b = Home {
            topic: "events".into(),
            partition: 2,
        };
        let p = ParticipantIdx(1);
        assert_eq!(homes.claim(p, &a), Ok(()));
        assert_eq!(homes.claim(p, &a), Ok(()));
        assert_eq!(homes.claim(p, &b), Err(a.clone()));
        assert_eq!(homes.claim(ParticipantIdx(0), &b), Ok(()));
        homes.release(&a);
        assert_eq!(homes.claim(p, &b), Ok(()));
        assert_eq!(homes.claim(p, &a), Err(b));
    }
}
