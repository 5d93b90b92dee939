//! A receiver's consumer-group membership: where a partition starts and when its lane must
//! stop.
//!
//! - **Revocation stops a lane at once.** The moment the group takes a partition away, its
//!   lane is switched off: a request in flight is abandoned, a back-off is cut short, the
//!   alerts it still holds are dropped unstored. The new owner delivers them from the
//!   committed offset (with the same `Idempotency-Key`), and the old one sends nothing more.
//! - **A new receiver starts now.** When the receiver's group has never committed anything
//!   (a receiver added to the configuration), each partition starts at the first alert
//!   written since the outbox started (`since`), found by
//!   timestamp, or at the partition's end as it stood before that lookup, so that no alert
//!   raised after the receiver was added is skipped and none raised before pages on-call.
//!   The start is committed at once, so a restart or another instance resumes from it. With
//!   `catch_up = true` (no `since`) the partition starts at the oldest alert retained.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::time::Timestamp;

/// How long the group coordinator and the partition leaders get to answer the start lookup;
/// past it the partition starts at `auto.offset.reset` (the oldest alert: nothing lost).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The switches of a receiver's lanes, one per partition it holds: set by revocation, read
/// by the lane and by the dispatcher (which starts a fresh lane when the partition returns).
#[derive(Default)]
pub struct Switches(Mutex<HashMap<(String, i32), watch::Sender<bool>>>);

impl Switches {
    /// A fresh switch for the lane of `topic`/`partition` (an older one is turned off).
    pub fn register(&self, topic: &str, partition: i32) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = map.insert((topic.to_string(), partition), tx) {
            let _ = old.send(true);
        }
        rx
    }

    /// Turns off the lanes of the partitions in `tpl`; returns how many were running.
    pub fn revoke(&self, tpl: &TopicPartitionList) -> usize {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut stopped = 0;
        for e in tpl.elements() {
            if let Some(tx) = map.remove(&(e.topic().to_string(), e.partition())) {
                let _ = tx.send(true);
                stopped += 1;
            }
        }
        stopped
    }
}

/// The context of a receiver's consumer.
pub struct OutboxContext {
    pub receiver: String,
    /// Where a never-committed partition starts: the first alert at or after this instant;
    /// `None`: the oldest retained (`catch_up`).
    pub since: Option<Timestamp>,
    /// The topics the receiver's group reads (alerts, reminders).
    pub topics: Vec<String>,
    pub switches: std::sync::Arc<Switches>,
}

impl ClientContext for OutboxContext {}

impl ConsumerContext for OutboxContext {
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let started = match self.since {
                    Some(since) => self.start_new(c, tpl, since),
                    None => TopicPartitionList::new(),
                };
                let r = if cooperative {
                    c.incremental_assign(tpl)
                } else {
                    c.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(receiver = %self.receiver, error = %e, "outbox assignment failed");
                } else if started.count() > 0 {
                    if let Err(e) = c.commit(&started, CommitMode::Async) {
                        tracing::warn!(receiver = %self.receiver, error = %e, "the new receiver's start not committed; it is committed with the first delivery");
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let stopped = self.switches.revoke(tpl);
                tracing::info!(receiver = %self.receiver, partitions = tpl.count(), lanes_stopped = stopped, lost = c.assignment_lost(), "outbox partitions revoked");
                let r = if cooperative {
                    c.incremental_unassign(tpl)
                } else {
                    c.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(receiver = %self.receiver, error = %e, "outbox unassignment failed");
                }
            }
            other => {
                tracing::error!(receiver = %self.receiver, error = ?other, "outbox rebalance error");
                let _ = c.unassign();
            }
        }
    }
}

impl OutboxContext {
    /// Sets the start of each partition of `tpl` this group never committed to the first
    /// alert at or after `since`; returns those starts (to commit).
    fn start_new(
        &self,
        c: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
        since: Timestamp,
    ) -> TopicPartitionList {
        let mut started = TopicPartitionList::new();
        // New is a group that committed nothing on any partition of its topics: one that
        // did is an existing receiver, and a partition it never committed (a partition
        // added since, or one without an alert yet) starts at its oldest alert.
        let mut all = TopicPartitionList::new();
        for topic in &self.topics {
            match c.fetch_metadata(Some(topic), LOOKUP_TIMEOUT) {
                Ok(md) => {
                    for t in md.topics() {
                        for p in t.partitions() {
                            all.add_partition(t.name(), p.id());
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(receiver = %self.receiver, %topic, error = %e, "topic metadata unknown; partitions start where they were or at the oldest alert");
                    return started;
                }
            }
        }
        match c.committed_offsets(all, LOOKUP_TIMEOUT) {
            Ok(committed)
                if committed
                    .elements()
                    .iter()
                    .any(|e| matches!(e.offset(), Offset::Offset(_))) =>
            {
                return started;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(receiver = %self.receiver, error = %e, "committed offsets unknown; partitions start where they were or at the oldest alert");
                return started;
            }
        }
        let fresh: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, partition) in fresh {
            match start_at(c, &topic, partition, since) {
                Ok(offset) => {
                    let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(offset));
                    let _ = started.add_partition_offset(&topic, partition, Offset::Offset(offset));
                    tracing::info!(receiver = %self.receiver, %topic, partition, offset, since = %since, "new receiver: starts with the alerts raised since it was added");
                }
                Err(e) => {
                    tracing::warn!(receiver = %self.receiver, %topic, partition, error = %e, "new receiver's start not found; it starts at the oldest alert retained");
                }
            }
        }
        started
    }
}

/// The offset of the first record of `topic`/`partition` written at or after `since`, or
/// the partition's end as it stood before the lookup (any later record is after it).
fn start_at<C: ConsumerContext>(
    c: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    since: Timestamp,
) -> KafkaResult<i64> {
    let (_, high) = c.fetch_watermarks(topic, partition, LOOKUP_TIMEOUT)?;
    let mut q = TopicPartitionList::new();
    q.add_partition_offset(topic, partition, Offset::Offset(since.millis()))?;
    let found = c.offsets_for_times(q, LOOKUP_TIMEOUT)?;
    Ok(found
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .unwrap_or(high))
}
