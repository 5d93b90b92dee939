//! `regwatch dead-letters list | redrive`: the two dead-letter topics, read whole, and chosen
//! records put back where they came from, audited.
//!
//! - A rejected event (`kafka.dead_letter_topic`) goes back to its source topic and partition
//!   (the participant's home: another partition would be a `partition_conflict`), with its
//!   key, payload and the participant's own headers; typically after the cause was fixed
//!   (a participant registered, a calendar added).
//! - An alert a receiver could not take (`delivery.dead_letter_topic`) goes back to the alerts
//!   (or reminders) topic and partition it came from, with its `regwatch.mac`, marked
//!   `regwatch.redrive_for: <receiver>`: only that receiver's outbox delivers it again (the
//!   others skip it), with the same `Idempotency-Key`.
//!
//! Every record put back carries `regwatch.redrive_of` (`topic/partition/offset` of the dead
//! letter), `regwatch.redriven_by` and `regwatch.redriven_at`, and leaves one record on the
//! audit topic (`kafka.audit_topic`: who, when, what, why, where it went), signed like
//! regwatch's other records. A dead letter already redriven is skipped unless asked again.
//! Truncated events (too large) and alerts dead-lettered as `untrusted` or
//! `malformed_alert` are never put back: they would only come back.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::{KafkaSettings, Secret};
use crate::ingest::client;
use crate::ingest::closing::OffThread;
use crate::ingest::tail::header;
use crate::time::wall_now;

/// The header that limits a redriven alert to one receiver.
pub const REDRIVE_FOR_HEADER: &str = "regwatch.redrive_for";
/// Headers regwatch adds when it dead-letters a record: not put back.
const DEAD_LETTER_HEADERS: &[&str] = &[
    "regwatch.reason",
    "regwatch.reason_text",
    "regwatch.source_topic",
    "regwatch.source_partition",
    "regwatch.source_offset",
    "regwatch.rejected_at",
    "regwatch.dead_lettered_at",
    "regwatch.field",
    "regwatch.truncated_from",
    "regwatch.receiver",
    "regwatch.http_status",
    "regwatch.redrive_of",
    "regwatch.redriven_by",
    "regwatch.redriven_at",
    REDRIVE_FOR_HEADER,
];
/// Dead-letter reasons of alerts that are never put back.
const NEVER_AGAIN: &[&str] = &["untrusted", "malformed_alert"];

/// One dead letter, as read.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The reason code (`unregistered_participant`, `http_status`, `retry_age`, ...).
    pub reason: String,
    pub reason_text: String,
    /// The receiver that could not take it (alert dead letters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// The record key: the participant id.
    pub participant: String,
    pub source_topic: String,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    /// When it was dead-lettered.
    pub at: String,
    /// Why it cannot be put back, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unfit: Option<String>,
    /// Redriven already (per the audit topic).
    pub redriven: bool,
    #[serde(skip)]
    key: Option<Vec<u8>>,
    #[serde(skip)]
    payload: Option<Vec<u8>>,
    #[serde(skip)]
    headers: Vec<(String, Vec<u8>)>,
}

/// Which dead letters to take.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub reason: Option<String>,
    pub receiver: Option<String>,
    pub participant: Option<String>,
    pub partition: Option<i32>,
    /// Offsets `from..=to` of the dead-letter partition.
    pub offsets: Option<(i64, i64)>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.reason.is_none()
            && self.receiver.is_none()
            && self.participant.is_none()
            && self.partition.is_none()
            && self.offsets.is_none()
    }

    pub fn admits(&self, d: &DeadLetter) -> bool {
        self.reason.as_ref().is_none_or(|r| *r == d.reason)
            && self
                .receiver
                .as_ref()
                .is_none_or(|r| d.receiver.as_ref() == Some(r))
            && self
                .participant
                .as_ref()
                .is_none_or(|p| *p == d.participant)
            && self.partition.is_none_or(|p| p == d.partition)
            && self
                .offsets
                .is_none_or(|(a, b)| (a..=b).contains(&d.offset))
    }
}

/// Every record of `topic` up to its end as it stood when the read began.
pub fn read_all(
    k: &KafkaSettings,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<OwnedMessage>> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let c = OffThread::new(
        "dead-letter reader",
        client::reader(k).create::<BaseConsumer>()?,
    );
    let Some(partitions) = client::topic_partitions(&c, topic, left())? else {
        return Ok(Vec::new());
    };
    let mut tpl = TopicPartitionList::new();
    let mut open = 0;
    let mut ends = Vec::new();
    for p in 0..partitions {
        let (low, high) = c.fetch_watermarks(topic, p, left())?;
        ends.push(high);
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            open += 1;
        }
    }
    let mut out = Vec::new();
    if open == 0 {
        return Ok(out);
    }
    c.assign(&tpl)?;
    let mut done: Vec<bool> = (0..partitions)
        .map(|p| !tpl.elements().iter().any(|e| e.partition() == p))
        .collect();
    while done.iter().any(|d| !d) {
        anyhow::ensure!(!left().is_zero(), "reading {topic} timed out");
        match c.poll(left().min(Duration::from_millis(500))) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => tracing::debug!(error = %e, %topic, "reading: transient error"),
            Some(Ok(m)) => {
                let p = m.partition() as usize;
                if m.offset() < ends[p] {
                    out.push(m.detach());
                }
                if m.offset() + 1 >= ends[p] {
                    done[p] = true;
                }
            }
        }
    }
    out.sort_by_key(|m| (m.partition(), m.offset()));
    Ok(out)
}

/// The dead letters of `topic` (the events' or the alerts' dead-letter topic), marked as
/// redriven when `done` holds their coordinates.
pub fn read(
    k: &KafkaSettings,
    topic: &str,
    alerts: bool,
    done: &HashSet<String>,
) -> anyhow::Result<Vec<DeadLetter>> {
    let records = read_all(k, topic, Duration::from_secs(120))?;
    Ok(records
        .iter()
        .map(|m| {
            let reason = header(m, "regwatch.reason").unwrap_or_default();
            let unfit = if header(m, "regwatch.truncated_from").is_some() {
                Some("truncated (too large): the original is not kept".to_string())
            } else if alerts && NEVER_AGAIN.contains(&reason.as_str()) {
                Some(format!("{reason}: it would only be dead-lettered again"))
            } else if header(m, "regwatch.source_topic").is_none() {
                Some("no regwatch.source_topic: not a regwatch dead letter".to_string())
            } else {
                None
            };
            let coordinates = format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .filter(|x| !DEAD_LETTER_HEADERS.contains(&x.key))
                        .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            DeadLetter {
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                reason_text: header(m, "regwatch.reason_text").unwrap_or_default(),
                receiver: header(m, "regwatch.receiver"),
                participant: m
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default(),
                source_topic: header(m, "regwatch.source_topic").unwrap_or_default(),
                source_partition: header(m, "regwatch.source_partition")
                    .and_then(|p| p.parse().ok()),
                source_offset: header(m, "regwatch.source_offset").and_then(|p| p.parse().ok()),
                at: header(m, "regwatch.rejected_at")
                    .or_else(|| header(m, "regwatch.dead_lettered_at"))
                    .unwrap_or_default(),
                unfit,
                redriven: done.contains(&coordinates),
                reason,
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers,
            }
        })
        .collect())
}

/// One audit record: who did what, when, why, and where it went.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Audit {
    pub schema: String,
    pub action: String,
    pub actor: String,
    pub why: String,
    pub at: String,
    /// `topic/partition/offset` of the dead letter.
    pub dead_letter: String,
    pub dead_letter_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    pub participant: String,
    /// `topic/partition/offset` of the record put back.
    pub to: String,
}

/// The dead letters redriven before, per the audit topic (`topic/partition/offset`).
pub fn redriven(k: &KafkaSettings) -> anyhow::Result<HashSet<String>> {
    Ok(read_all(k, &k.audit_topic, Duration::from_secs(120))?
        .iter()
        .filter_map(|m| serde_json::from_slice::<Audit>(m.payload()?).ok())
        .filter(|a| a.action == "redrive")
        .map(|a| a.dead_letter)
        .collect())
}

/// Who redrives, and why.
pub struct Act {
    pub actor: String,
    pub why: String,
}

/// Puts `d` back where it came from and records it on the audit topic; returns the audit
/// record.
pub async fn redrive_one(
    k: &KafkaSettings,
    producer: &FutureProducer,
    record_key: Option<&Secret>,
    d: &DeadLetter,
    act: &Act,
) -> anyhow::Result<Audit> {
    if let Some(why) = &d.unfit {
        anyhow::bail!("{}/{}/{}: {why}", d.topic, d.partition, d.offset);
    }
    let at = wall_now().to_string();
    let of = format!("{}/{}/{}", d.topic, d.partition, d.offset);
    let mut headers = OwnedHeaders::new();
    for (key, value) in &d.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_slice()),
        });
    }
    let mut extra = vec![
        ("regwatch.redrive_of", of.as_str()),
        ("regwatch.redriven_by", act.actor.as_str()),
        ("regwatch.redriven_at", at.as_str()),
    ];
    if let Some(r) = &d.receiver {
        extra.push((REDRIVE_FOR_HEADER, r.as_str()));
    }
    for (key, value) in extra {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut record = FutureRecord::<[u8], [u8]>::to(&d.source_topic).headers(headers);
    if let Some(p) = d.source_partition {
        record = record.partition(p);
    }
    if let Some(key) = &d.key {
        record = record.key(key);
    }
    if let Some(payload) = &d.payload {
        record = record.payload(payload);
    }
    let delivered = producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("putting {of} back on {}", d.source_topic))?;
    let audit = Audit {
        schema: crate::audit::SCHEMA.into(),
        action: "redrive".into(),
        actor: act.actor.clone(),
        why: act.why.clone(),
        at,
        dead_letter: of.clone(),
        dead_letter_reason: d.reason.clone(),
        receiver: d.receiver.clone(),
        participant: d.participant.clone(),
        to: format!(
            "{}/{}/{}",
            d.source_topic, delivered.partition, delivered.offset
        ),
    };
    crate::audit::write(
        k,
        producer,
        record_key,
        &audit.participant,
        &serde_json::to_vec(&audit)?,
    )
    .await
    .with_context(|| format!("{of} was put back, but its audit record was not written"))?;
    Ok(audit)
}
