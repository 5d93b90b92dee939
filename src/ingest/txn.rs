//! Fencing of state writes and offset commits with Kafka transactions.
//!
//! Each partition worker writes its state snapshots and commits its offsets through a
//! transactional producer of its own, whose `transactional.id` names the source partition
//! (`<group>.state.<topic>.<partition>`). A snapshot and the offset it covers are one
//! transaction. Whoever takes the partition over initialises the same transactional id
//! before it restores: the broker then aborts what the previous owner left open and refuses
//! anything that owner still tries to write or commit (`ProducerFenced`), even from another
//! process that is paused, partitioned away or not yet told it lost the partition. Restores
//! read `read_committed`, so an aborted or fenced snapshot is never restored.
//!
//! Alerts and dead letters stay on the shared idempotent producer (no transaction, no added
//! latency): a fenced owner may still send an alert the new owner sends too, under the same
//! deterministic `alert_id`, which receivers deduplicate.
//!
//! Everything here blocks (librdkafka's transactional calls are synchronous): run it off the
//! async runtime.

use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::client;
use super::ledger::StateWrite;
use crate::config::KafkaSettings;

/// How long one transactional call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a snapshot was not written.
#[derive(Debug)]
pub enum TxnError {
    /// Another owner has initialised this partition's transactional id: this worker must
    /// never write or commit for the partition again.
    Fenced(String),
    /// Aborted (or never begun): nothing of it is visible; write it again later.
    Retry(String),
}

/// One partition's transactional state writer.
#[derive(Clone)]
pub struct StateTxn {
    producer: ThreadedProducer<DefaultProducerContext>,
    /// `kafka.record_key`: every record written carries its `regwatch.mac`.
    record_key: Option<crate::config::Secret>,
}

/// The transactional id of a source partition's state writer.
pub fn transactional_id(k: &KafkaSettings, topic: &str, partition: i32) -> String {
    format!("{}.state.{topic}.{partition}", k.group_id)
}

fn classify(e: KafkaError) -> TxnError {
    let fenced = matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::ProducerFenced)
            | Some(RDKafkaErrorCode::InvalidProducerEpoch)
            | Some(RDKafkaErrorCode::Fenced)
            | Some(RDKafkaErrorCode::Fatal)
    ) || matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
    if fenced {
        TxnError::Fenced(e.to_string())
    } else {
        TxnError::Retry(e.to_string())
    }
}

impl StateTxn {
    /// Creates the producer and initialises its transactional id, fencing any earlier
    /// holder of it and aborting the transaction that holder left open.
    pub fn init(k: &KafkaSettings, topic: &str, partition: i32) -> anyhow::Result<StateTxn> {
        let mut c = client::producer(k);
        // A transaction a crashed owner leaves open blocks restores of its state partition
        // until its id is taken over or this timeout aborts it: kept short, as a snapshot
        // takes milliseconds.
        c.set("transactional.id", transactional_id(k, topic, partition))
            .set("message.timeout.ms", "10000")
            // A snapshot is sent whole right away; transactional calls answered "busy" (the
            // previous commit's markers still being written) are retried soon.
            .set("linger.ms", "0")
            .set("retry.backoff.ms", "10")
            .set("transaction.timeout.ms", "15000");
        let producer: ThreadedProducer<DefaultProducerContext> = c.create()?;
        producer.init_transactions(CALL_TIMEOUT).map_err(|e| {
            anyhow::anyhow!(
                "cannot initialise the state transactions of {topic}/{partition} (the cluster \
                 needs its transaction log: transaction.state.log.replication.factor and \
                 min.isr within the broker count; or set kafka.transactional_state = false): {e}"
            )
        })?;
        Ok(StateTxn {
            producer,
            record_key: k.record_key.clone(),
        })
    }

    /// Writes `records` to `state_topic`/`state_partition` and, with `offset`, commits the
    /// source partition's offset for the consumer `group`, all in one transaction. On an
    /// error the transaction is aborted (when it can be) and nothing of it becomes visible.
    pub fn write(
        &self,
        state_topic: &str,
        state_partition: i32,
        records: &[StateWrite],
        source: (&str, i32),
        offset: Option<i64>,
        group: Option<&ConsumerGroupMetadata>,
    ) -> Result<(), TxnError> {
        if offset.is_some() && group.is_none() {
            return Err(TxnError::Retry(
                "no consumer group metadata to commit the offset with".into(),
            ));
        }
        self.producer.begin_transaction().map_err(classify)?;
        match self.fill(state_topic, state_partition, records, source, offset, group) {
            Ok(()) => match self.producer.commit_transaction(CALL_TIMEOUT) {
                Ok(()) => Ok(()),
                Err(e) => Err(self.abort(e)),
            },
            Err(e) => Err(self.abort(e)),
        }
    }

    fn fill(
        &self,
        state_topic: &str,
        state_partition: i32,
        records: &[StateWrite],
        (topic, partition): (&str, i32),
        offset: Option<i64>,
        group: Option<&ConsumerGroupMetadata>,
    ) -> Result<(), KafkaError> {
        for (key, value) in records {
            let mut r = BaseRecord::<[u8], [u8]>::to(state_topic)
                .partition(state_partition)
                .key(key.as_bytes())
                .headers(super::state::mac_headers(
                    self.record_key.as_ref(),
                    state_topic,
                    key,
                    value.as_deref(),
                ));
            if let Some(v) = value {
                r = r.payload(v.as_slice());
            }
            loop {
                match self.producer.send(r) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        r = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        if let (Some(offset), Some(group)) = (offset, group) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
            self.producer
                .send_offsets_to_transaction(&tpl, group, CALL_TIMEOUT)?;
        }
        Ok(())
    }

    fn abort(&self, e: KafkaError) -> TxnError {
        let error = classify(e);
        if matches!(error, TxnError::Retry(_)) {
            if let Err(abort) = self.producer.abort_transaction(CALL_TIMEOUT) {
                return match classify(abort) {
                    TxnError::Fenced(why) => TxnError::Fenced(why),
                    TxnError::Retry(why) => TxnError::Retry(format!("{error:?}; abort: {why}")),
                };
            }
        }
        error
    }
}
