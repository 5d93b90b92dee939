//! Skips: an operator gives up one alert a receiver keeps refusing (`regwatch act skip`,
//! `crate::actions`). The API writes the act to the audit topic only; every outbox reads
//! that topic from its beginning (no group: each instance reads it all, so whichever owns the
//! receiver's partition sees it, after restarts and rebalances alike) and keeps the skips
//! it found. A lane checks its alert against them before each attempt and when a skip
//! arrives during a back-off: a skipped alert is dead-lettered (reason `skipped`, naming who
//! and why) and the lane goes on. A skip applies to records written before it only: the
//! same alert redriven afterwards is delivered.
//!
//! Audit records without a valid `regwatch.mac` (when records are authenticated) are
//! ignored and logged: only regwatch's API writes the audit topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::actions::SkipRecord;
use crate::config::KafkaSettings;
use crate::ingest::closing::OffThread;
use crate::time::Timestamp;

/// One operator's skip.
#[derive(Clone, Debug)]
pub struct Skip {
    pub action_id: String,
    pub actor: String,
    pub why: String,
    pub at: Timestamp,
}

/// The skips found so far, by (receiver, alert id); `changed` ticks on each new one.
pub struct Skips {
    found: Mutex<HashMap<(String, String), Skip>>,
    changed: watch::Sender<u64>,
}

impl Default for Skips {
    fn default() -> Self {
        Skips {
            found: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl Skips {
    /// The skip of `alert_id` for `receiver` that covers a record written at `written`.
    pub fn of(&self, receiver: &str, alert_id: &str, written: Option<i64>) -> Option<Skip> {
        let found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        if found.is_empty() {
            return None;
        }
        found
            .get(&(receiver.to_string(), alert_id.to_string()))
            .filter(|s| written.is_none_or(|w| w <= s.at.millis()))
            .cloned()
    }

    /// Wakes when a skip arrives.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn add(&self, receiver: String, alert_id: String, skip: Skip) {
        self.found
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((receiver, alert_id), skip);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Reads a record of the audit topic; a `skip` is kept.
    fn fold(&self, value: &[u8]) {
        let Ok(r) = serde_json::from_slice::<SkipRecord>(value) else {
            return;
        };
        if r.schema != crate::audit::SCHEMA || r.action != "skip" {
            return;
        }
        let (Some(receiver), Some(alert_id)) = (r.receiver, r.alert_id) else {
            return;
        };
        tracing::info!(%receiver, %alert_id, actor = %r.actor, action_id = %r.action_id, "skip read from the audit topic");
        self.add(
            receiver,
            alert_id,
            Skip {
                action_id: r.action_id,
                actor: r.actor,
                why: r.why,
                at: r.at,
            },
        );
    }
}

/// Reads the audit topic into `skips` until `stop`.
pub async fn follow(
    k: KafkaSettings,
    skips: Arc<Skips>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut c = crate::ingest::client::reader(&k);
    c.set("group.id", format!("{}.skips", k.group_id))
        .set("enable.partition.eof", "false");
    let consumer = OffThread::new("audit reader", c.create::<StreamConsumer>()?);
    let topic = k.audit_topic.clone();
    let key = k.record_key.clone();
    let mut assigned = 0;
    loop {
        // Partitions the topic gained (or all of them, the first time it exists).
        let n = {
            let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5));
            md.ok()
                .and_then(|md| {
                    md.topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())
                        .map(|t| t.partitions().len())
                })
                .unwrap_or(0)
        };
        if n > assigned {
            let mut tpl = TopicPartitionList::new();
            for p in assigned..n {
                tpl.add_partition_offset(&topic, p as i32, Offset::Beginning)?;
            }
            consumer.incremental_assign(&tpl)?;
            assigned = n;
        }
        let look_again = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(look_again);
        loop {
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                () = &mut look_again => break,
                m = consumer.recv() => match m {
                    Ok(m) => {
                        let value = m.payload().unwrap_or_default();
                        if let Some(key) = &key {
                            let mac = crate::ingest::tail::header(&m, crate::delivery::sign::RECORD_MAC_HEADER).unwrap_or_default();
                            if !crate::delivery::sign::record_authentic(key.expose().as_bytes(), m.topic(), value, &mac) {
                                tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), "an audit record without a valid regwatch.mac ignored (only regwatch's API writes the audit topic)");
                                continue;
                            }
                        }
                        skips.fold(value);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "audit topic read");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_covers_records_written_before_it_only() {
        let skips = Skips::default();
        let mut rx = skips.subscribe();
        let record = serde_json::json!({"schema": crate::audit::SCHEMA, "action": "skip",
            "action_id": "x1", "actor": "alice", "why": "poison", "at": "2026-03-02T01:00:00Z",
            "participant": "", "receiver": "oncall", "alert_id": "a1", "to": []});
        skips.fold(&serde_json::to_vec(&record).unwrap());
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let at = Timestamp::parse_rfc3339("2026-03-02T01:00:00Z")
            .unwrap()
            .millis();
        assert_eq!(
            skips.of("oncall", "a1", Some(at - 5)).unwrap().actor,
            "alice"
        );
        assert!(
            skips.of("oncall", "a1", Some(at + 5)).is_none(),
            "redriven after"
        );
        assert!(skips.of("other", "a1", Some(at - 5)).is_none());
        // Another action on the audit topic is not a skip.
        let mut ack = record.clone();
        ack["action"] = "ack".into();
        ack["alert_id"] = "a2".into();
        skips.fold(&serde_json::to_vec(&ack).unwrap());
        assert!(skips.of("oncall", "a2", None).is_none());
        assert!(!rx.has_changed().unwrap());
    }
}
