//! The deployment's record key when `kafka.record_key` is not configured, so that regwatch
//! never trusts its internal topics blindly by default: alerts, reminders and state records
//! carry an HMAC (`regwatch.mac`) under a key only regwatch's principal can read.
//!
//! The key lives in the state topic (which the ACL matrix lets only regwatch read and write),
//! as a record keyed `regwatch.record_key|<id>` in partition 0. Every instance reads that
//! partition from its start and takes the first such record; an instance that finds none
//! proposes one (a random 256-bit key under a random id) and reads again. Instances starting
//! together may both propose, and all of them take the one the log ordered first: the log is
//! the consensus. Ids differ, so compaction never removes the winner.
//!
//! An operator-managed `kafka.record_key` (a file or environment secret) is stronger: it does
//! not depend on the state topic's read ACL.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::client;
use crate::config::{KafkaSettings, Secret};
use crate::delivery::sign::hex;

/// Key prefix of the deployment's record key in the state topic.
pub const KEY_PREFIX: &str = "regwatch.record_key|";

/// The deployment's record key, proposed first if there is none (blocking).
pub fn deployment_key(k: &KafkaSettings, timeout: Duration) -> anyhow::Result<Secret> {
    let deadline = Instant::now() + timeout;
    if let Some(key) = first_key(k, deadline)? {
        return Ok(key);
    }
    let mut bytes = [0u8; 40];
    openssl::rand::rand_bytes(&mut bytes)?;
    let id = hex(&bytes[..8]);
    let value = hex(&bytes[8..]);
    let producer: ThreadedProducer<_> = client::producer(k).create()?;
    let key = format!("{KEY_PREFIX}{id}");
    let record = BaseRecord::<str, str>::to(&k.state_topic)
        .partition(0)
        .key(&key)
        .payload(&value);
    producer.send(record).map_err(|(e, _)| e)?;
    producer.flush(deadline.saturating_duration_since(Instant::now()))?;
    tracing::info!(topic = %k.state_topic, %id, "proposed the deployment's record key (kafka.record_key is not set)");
    first_key(k, deadline)?.ok_or_else(|| {
        anyhow::anyhow!(
            "proposed a record key on {} but cannot read it back",
            k.state_topic
        )
    })
}

/// The first record key in partition 0 of the state topic, if any.
/// The deployment's key if one was proposed already (read only: nothing is written).
pub fn existing_key(k: &KafkaSettings, timeout: Duration) -> anyhow::Result<Option<Secret>> {
    first_key(k, Instant::now() + timeout)
}

/// The key regwatch's records are signed with, for a tool that reads or writes beside the
/// daemon: `kafka.record_key`, else the deployment's key if one was proposed (read only),
/// else none (also under `insecure_trust_internal_topics`).
pub fn record_key(k: &KafkaSettings, timeout: Duration) -> anyhow::Result<Option<Secret>> {
    match (&k.record_key, k.trust_internal_topics) {
        (Some(key), _) => Ok(Some(key.clone())),
        (None, true) => Ok(None),
        (None, false) => existing_key(k, timeout),
    }
}

fn first_key(k: &KafkaSettings, deadline: Instant) -> anyhow::Result<Option<Secret>> {
    let left = || deadline.saturating_duration_since(Instant::now());
    let reader: BaseConsumer = client::reader(k).create()?;
    let (low, high) = reader.fetch_watermarks(&k.state_topic, 0, left())?;
    if high <= low {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&k.state_topic, 0, Offset::Beginning)?;
    reader.assign(&tpl)?;
    loop {
        if left().is_zero() {
            anyhow::bail!("reading the record key from {}/0 timed out", k.state_topic);
        }
        let m = match reader.poll(left().min(Duration::from_millis(500))) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(None),
            // A broker failing over: librdkafka reconnects; read on until the deadline.
            Some(Err(e)) => {
                tracing::debug!(error = %e, "reading the record key: transient error");
                continue;
            }
            Some(Ok(m)) => m,
        };
        let is_key = m
            .key()
            .is_some_and(|key| key.starts_with(KEY_PREFIX.as_bytes()));
        if let (true, Some(value)) = (is_key, m.payload()) {
            if let Ok(text) = std::str::from_utf8(value) {
                if text.len() >= 32 {
                    return Ok(Some(Secret::new(text)));
                }
            }
        }
        if m.offset() >= high - 1 {
            return Ok(None);
        }
    }
}
