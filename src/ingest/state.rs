//! The state topic: where each partition worker keeps the engine state of its partition, so
//! that whoever owns the partition next (this instance after a crash, or another one after a
//! rebalance) resumes with the open incidents, their deadlines and the alerts already sent.
//!
//! Layout: key `<source topic>|<source partition>|<record key>` (record keys are
//! `i|<participant>|<incident>` and `p|<participant>`), value the JSON of a
//! [`StateRecord`], or a tombstone for what the engine forgot (an evicted incident, a
//! participant's liveness past its retention, records that can never load again). All records of one source
//! partition go to one state partition, chosen by a stable hash, so a restore reads one
//! partition of a compacted topic.
//!
//! Consistency with offsets: a worker takes a snapshot of what changed, waits until every
//! alert and dead letter produced before it is acknowledged, then writes the snapshot and
//! commits the offset it covers in one transaction (`txn.rs`; or, without transactions,
//! commits once the snapshot is acknowledged). Restores read committed records only. Restoring the state and
//! resuming from the committed offset therefore loses nothing; events after the offset are
//! processed again, which grading absorbs (cumulative maxima, alerts only on transitions).
//!
//! Authenticity: with `kafka.record_key`, every record written carries `regwatch.mac`, an
//! HMAC over the state topic, the record's key and its value (or its being a tombstone). A
//! restore uses only records whose MAC checks out; anything else (a record written by
//! another client, a record copied under another key, a forged tombstone) is skipped,
//! logged and counted (`regwatch_state_records_unauthenticated_total`), and the latest
//! authentic value of its key stands. Unsigned records written before the partition's first
//! signed one (a state topic from before record keys) are legacy: restored, and written
//! again signed at the partition's first flush. Every partition gets a signed record at its
//! first flush after its first restore (the topic record), so an unsigned record after it is
//! refused.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::{KafkaSettings, Secret};
use crate::delivery::sign;
use crate::score::StateRecord;

use super::client;
use super::closing::OffThread;

/// The state partition holding a source partition's records (FNV-1a of `topic|partition`).
pub fn state_partition(topic: &str, partition: i32, state_partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in topic
        .bytes()
        .chain(*b"|")
        .chain(partition.to_string().bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % state_partitions.max(1) as u32) as i32
}

/// The prefix of every state key of a source partition.
pub fn key_prefix(topic: &str, partition: i32) -> String {
    format!("{topic}|{partition}|")
}

/// One message of the state topic as a restore reads it, for the source partition whose keys
/// start with `prefix` ([`key_prefix`]): `None` when the key is another partition's (or not
/// UTF-8); otherwise the record key and its value: a record, `None` for a tombstone, or why
/// the value is unreadable. Never panics, whatever the bytes (`fuzz/`: `state_record`).
pub fn decode_entry<'k>(
    prefix: &str,
    key: Option<&'k [u8]>,
    payload: Option<&[u8]>,
) -> Option<(&'k str, Result<Option<StateRecord>, serde_json::Error>)> {
    let record_key = std::str::from_utf8(key?).ok()?.strip_prefix(prefix)?;
    let value = payload
        .map(serde_json::from_slice::<StateRecord>)
        .transpose();
    Some((record_key, value))
}

/// The header that authenticates a record regwatch wrote (`kafka.record_key`).
pub const MAC_HEADER: &str = "regwatch.mac";

/// The headers of a state record: its MAC with `record_key`, none without.
pub fn mac_headers(
    record_key: Option<&Secret>,
    state_topic: &str,
    key: &str,
    value: Option<&[u8]>,
) -> OwnedHeaders {
    let headers = OwnedHeaders::new();
    match record_key {
        Some(secret) => {
            let mac = sign::state_mac(secret.expose().as_bytes(), state_topic, key, value);
            headers.insert(Header {
                key: MAC_HEADER,
                value: Some(mac.as_bytes()),
            })
        }
        None => headers,
    }
}

/// Whether a restore may use a state message: authentic (or nothing to check), unsigned,
/// or carrying a MAC that does not check out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trust {
    Authentic,
    Unsigned,
    Forged,
}

fn trust<M: Message>(k: &KafkaSettings, m: &M) -> Trust {
    let Some(secret) = &k.record_key else {
        return Trust::Authentic;
    };
    let mac = m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == MAC_HEADER)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    });
    let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
    match (mac, key) {
        (None, _) => Trust::Unsigned,
        (Some(mac), Some(key))
            if sign::state_authentic(
                secret.expose().as_bytes(),
                &k.state_topic,
                key,
                m.payload(),
                mac,
            ) =>
        {
            Trust::Authentic
        }
        _ => Trust::Forged,
    }
}

/// What a restore read.
#[derive(Debug, Default)]
pub struct Loaded {
    pub records: Vec<StateRecord>,
    /// Keys (without the partition prefix) whose latest value could not be parsed: logged,
    /// skipped, and deleted by the caller.
    pub unreadable: Vec<String>,
    /// Keys whose latest record was refused because it could not be authenticated
    /// (`kafka.record_key`).
    pub unauthenticated: u64,
    /// Records to write again, signed, by key (without the partition prefix) with their
    /// value: legacy unsigned ones (before the partition's first signed record), and authentic ones
    /// that a refused record came after (compaction would keep the refused one).
    pub resign: Vec<(String, Vec<u8>)>,
}

/// The end a restore reads to, and the partition's start. The end is the high watermark
/// when the restore begins; reading `read_committed` (snapshots are transactions, see
/// `txn.rs`), only offsets below the last stable offset are readable, which stays below that
/// watermark while a transaction open at that instant is still open: another source
/// partition's snapshot being written, or one a crashed owner left open, aborted when its
/// transactional id is initialised again (at that partition's takeover) or after
/// `transaction.timeout.ms`. So this waits, within the restore's deadline, until the last
/// stable offset reaches the watermark.
fn stable_end(
    k: &KafkaSettings,
    reader: &BaseConsumer,
    sp: i32,
    deadline: Instant,
) -> anyhow::Result<(i64, i64)> {
    let left = || deadline.saturating_duration_since(Instant::now());
    let probe = OffThread::new(
        "state watermark probe",
        client::reader(k)
            .set("isolation.level", "read_uncommitted")
            .create::<BaseConsumer>()?,
    );
    let (_, watermark) = probe.fetch_watermarks(&k.state_topic, sp, left())?;
    loop {
        // A read_committed client's watermark query answers the last stable offset.
        let (low, stable) = reader.fetch_watermarks(&k.state_topic, sp, left())?;
        if stable >= watermark {
            return Ok((low, stable));
        }
        if left().is_zero() {
            anyhow::bail!(
                "state partition {}/{sp}: a transaction left open keeps offsets {stable}..{watermark} \
                 unreadable (it ends when its owner's partition is taken over, or after \
                 transaction.timeout.ms)",
                k.state_topic
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads the latest state of one source partition (blocking; run it off the async runtime).
///
/// The restore ends: it reads the state partition from its start to the high watermark
/// taken when it began, once every transaction open then has ended (`stable_end`), and
/// stops there (at that offset, or at the partition's end, which librdkafka reports as EOF). Records written after that instant belong to a later owner's flushes, which
/// this worker cannot have made: it owns the partition now and writes only after the
/// restore.
pub fn read(
    k: &KafkaSettings,
    state_partitions: i32,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> anyhow::Result<Loaded> {
    let deadline = Instant::now() + timeout;
    let sp = state_partition(topic, partition, state_partitions);
    let reader = OffThread::new("state reader", client::reader(k).create::<BaseConsumer>()?);
    let (low, high) = stable_end(k, &reader, sp, deadline)?;
    let mut loaded = Loaded::default();
    if high <= low {
        return Ok(loaded);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&k.state_topic, sp, Offset::Beginning)?;
    reader.assign(&tpl)?;
    let prefix = key_prefix(topic, partition);
    let mut latest: BTreeMap<String, Option<StateRecord>> = BTreeMap::new();
    let mut unreadable = std::collections::BTreeSet::new();
    let mut resign: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // Whether a signed record of this source partition came yet: unsigned ones before it
    // are legacy, after it forged.
    let mut signed_seen = false;
    // Keys whose latest message was refused: compaction would keep that one and drop the
    // authentic value, so the authentic value is written again.
    let mut shadowed = std::collections::BTreeSet::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            anyhow::bail!(
                "reading state partition {}/{sp} timed out before its high watermark {high}",
                k.state_topic
            );
        }
        let m = match reader.poll(left.min(Duration::from_millis(500))) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => m,
        };
        let last = m.offset() >= high - 1;
        let entry = decode_entry(&prefix, m.key(), m.payload());
        let trust = trust(k, &m);
        let trusted = match (&entry, trust) {
            (None, _) | (_, Trust::Authentic) => true,
            (Some((record_key, _)), Trust::Unsigned) if !signed_seen => {
                match m.payload() {
                    Some(v) => resign.insert(record_key.to_string(), v.to_vec()),
                    None => resign.remove(*record_key),
                };
                true
            }
            (Some((record_key, _)), _) => {
                shadowed.insert(record_key.to_string());
                false
            }
        };
        if let Some((record_key, value)) = entry.filter(|_| trusted) {
            shadowed.remove(record_key);
            if trust == Trust::Authentic && k.record_key.is_some() {
                signed_seen = true;
                resign.remove(record_key);
            }
            // The latest value of each key wins; an unreadable latest value is skipped,
            // and deleted by the caller.
            match value {
                Err(e) => {
                    tracing::warn!(key = record_key, error = %e, "unreadable state record skipped");
                    latest.remove(record_key);
                    unreadable.insert(record_key.to_string());
                }
                Ok(value) => {
                    unreadable.remove(record_key);
                    latest.insert(record_key.to_string(), value);
                }
            }
        }
        if last {
            break;
        }
    }
    // Counted per key whose latest message was refused: refused messages an authentic one
    // superseded (an old unsigned record, say) change nothing and wait for compaction.
    loaded.unauthenticated = shadowed.len() as u64;
    for key in shadowed {
        tracing::warn!(key = %key, "state record refused: the latest one of its key carries no valid regwatch.mac (not written by regwatch with this kafka.record_key); the latest authentic value, if any, stands");
        if let Some(Some(record)) = latest.get(&key) {
            if let Ok(value) = serde_json::to_vec(record) {
                resign.insert(key, value);
            }
        }
    }
    loaded.records = latest.into_values().flatten().collect();
    loaded.resign = resign
        .into_iter()
        .filter(|(key, _)| !unreadable.contains(key))
        .collect();
    loaded.unreadable = unreadable.into_iter().collect();
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_partition_is_stable_and_in_range() {
        assert_eq!(
            state_partition("sandbox.events", 3, 12),
            state_partition("sandbox.events", 3, 12)
        );
        for p in 0..64 {
            let sp = state_partition("sandbox.events", p, 12);
            assert!((0..12).contains(&sp));
        }
        let spread: std::collections::HashSet<i32> =
            (0..64).map(|p| state_partition("t", p, 12)).collect();
        assert!(spread.len() > 6, "partitions spread over the state topic");
    }
}
