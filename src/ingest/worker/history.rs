//! What a worker writes to the history topic (`[history]`), read back by every instance's
//! desk (`desk/`): at each flush, one record per report that changed an incident and the
//! view of every incident that changed; with each alert, the alert; and now and then the
//! partition's watermark (how far its story is written, by whom, and whether the owner
//! still holds it). All before the snapshot, so a committed offset never runs ahead of the
//! history it caused.
//!
//! The topic is compacted and time-limited (`compact,delete`): every record's key is unique
//! to what it says (`desk::keys`), so compaction drops only redeliveries, superseded views
//! and superseded watermarks, and retention drops what is older than `history.retention`.

use serde::Serialize;

use super::*;
use crate::desk::keys;

/// A report as written to the history topic.
#[derive(Serialize)]
struct ReportRecord<'a> {
    participant_id: &'a str,
    incident_id: &'a str,
    event_id: &'a str,
    at: crate::time::Timestamp,
    occurred_at: crate::time::Timestamp,
    changed: std::collections::BTreeMap<&'static str, f64>,
    investor_loss: crate::score::Level,
    market_order: crate::score::Level,
    exemption: crate::score::Exemption,
    opened: bool,
    resolved: bool,
}

/// An incident's view, with the partition it is graded on (whose watermark's clock the
/// desk counts an open incident's duration to).
#[derive(Serialize)]
struct ViewRecord<'a> {
    #[serde(flatten)]
    view: &'a crate::score::IncidentView,
    topic: &'a str,
    partition: i32,
}

/// How far a partition was graded when a flush began.
#[derive(Clone, Copy)]
pub(super) struct Mark {
    offset: Option<i64>,
    clock: Option<crate::time::Timestamp>,
    at: crate::time::Timestamp,
}

/// How far a partition's story is written.
#[derive(Serialize)]
pub(super) struct WatermarkRecord<'a> {
    topic: &'a str,
    partition: i32,
    /// The next offset to grade (everything before it is in the history).
    offset: Option<i64>,
    /// The partition's engine clock.
    clock: Option<crate::time::Timestamp>,
    /// Wall time of the flush whose history is all written.
    at: crate::time::Timestamp,
    /// `owned`, or `released` by the last flush of an owner that let the partition go.
    status: &'static str,
    instance: &'a str,
}

impl<C: rdkafka::consumer::ConsumerContext + 'static> Worker<C> {
    /// Produces the history gathered since the last flush (after `take_changes`), then
    /// takes the partition's mark (published once acknowledged), or publishes its release.
    pub(super) async fn write_history(&mut self, released: bool) {
        let Some(topic) = self.shared.history_topic.clone() else {
            return;
        };
        // (partition key, record key, kind, value)
        let mut records: Vec<(String, String, &'static str, Vec<u8>)> = Vec::new();
        self.engine.drain_reports(|r| {
            let value = serde_json::to_vec(&ReportRecord {
                participant_id: r.participant_id,
                incident_id: r.incident_id,
                event_id: r.event_id,
                at: r.at,
                occurred_at: r.occurred_at,
                changed: r.changed.into_iter().collect(),
                investor_loss: r.investor_loss,
                market_order: r.market_order,
                exemption: r.exemption,
                opened: r.opened,
                resolved: r.resolved,
            })
            .unwrap_or_default();
            let key = keys::report(r.participant_id, r.incident_id, r.event_id);
            records.push((r.participant_id.to_string(), key, keys::REPORT, value));
        });
        for view in self.engine.take_views() {
            let key = keys::view(&view.participant_id, &view.incident_id);
            let record = ViewRecord {
                view: &view,
                topic: &self.topic,
                partition: self.partition,
            };
            let value = serde_json::to_vec(&record).unwrap_or_default();
            records.push((view.participant_id.clone(), key, keys::VIEW, value));
        }
        for (by, key, kind, value) in &records {
            self.produce_history(&topic, by, key, kind, value).await;
        }
        // The mark of this flush: how far the partition is graded, vouched for once every
        // record produced so far (this flush's history among them) is acknowledged. A
        // release is published at once: it only takes coverage away.
        let mark = Mark {
            offset: self.ledger.next_offset().or(self.start_offset),
            clock: self.engine.clock(),
            at: wall_now(),
        };
        if released {
            self.pending_mark = None;
            self.produce_watermark(&topic, mark, "released").await;
        } else {
            self.pending_mark = Some((mark, self.ledger.issued()));
            self.publish_mark().await;
        }
    }

    /// Publishes the pending mark as the partition's watermark once everything produced up
    /// to it is acknowledged (a watermark never runs ahead of the story it vouches for), at
    /// most every `history_watermark_ms` (the first at once). Called at each flush and tick.
    pub(super) async fn publish_mark(&mut self) {
        let Some(topic) = self.shared.history_topic.clone() else {
            return;
        };
        let Some((mark, seq)) = self.pending_mark else {
            return;
        };
        let due = self
            .last_watermark
            .is_none_or(|t| t.elapsed().as_millis() as i64 >= self.shared.history_watermark_ms);
        if due && self.ledger.acked_below(seq) && !self.ledger.is_fenced() {
            self.pending_mark = None;
            self.produce_watermark(&topic, mark, "owned").await;
        }
    }

    async fn produce_watermark(&mut self, topic: &str, m: Mark, status: &'static str) {
        self.last_watermark = Some(Instant::now());
        let value = serde_json::to_vec(&WatermarkRecord {
            topic: &self.topic,
            partition: self.partition,
            offset: m.offset,
            clock: m.clock,
            at: m.at,
            status,
            instance: &self.shared.instance,
        })
        .unwrap_or_default();
        let key = keys::watermark(&self.topic, self.partition);
        self.produce_history(topic, &key, &key, keys::WATERMARK, &value)
            .await;
    }

    /// Produces an alert or a reminder to the history topic too.
    pub(super) async fn history_alert(&mut self, a: &Alert, payload: &[u8]) {
        let Some(topic) = self.shared.history_topic.clone() else {
            return;
        };
        let key = keys::alert(&a.participant_id, a.incident_id.as_deref(), &a.alert_id);
        self.produce_history(&topic, &a.participant_id, &key, keys::ALERT, payload)
            .await;
    }

    /// A person's action, as the owner applied or refused it: part of the incident's
    /// timeline.
    pub(super) async fn history_action(&mut self, a: &crate::actions::Applied<'_>) {
        let Some(topic) = self.shared.history_topic.clone() else {
            return;
        };
        let key = if a.action.action.on_incident() {
            keys::action(
                &a.action.participant_id,
                &a.action.incident_id,
                &a.action.action_id,
            )
        } else {
            keys::participant_action(&a.action.participant_id, &a.action.action_id)
        };
        let value = serde_json::to_vec(a).unwrap_or_default();
        self.produce_history(&topic, &a.action.participant_id, &key, keys::ACTION, &value)
            .await;
    }

    /// Produces one record to the partition of `by` (a participant id, or the watermark's
    /// key).
    async fn produce_history(
        &mut self,
        topic: &str,
        by: &str,
        key: &str,
        kind: &str,
        value: &[u8],
    ) {
        let mut headers = OwnedHeaders::new().insert(Header {
            key: keys::KIND_HEADER,
            value: Some(kind),
        });
        let shared = self.shared.clone();
        if let Some(k) = &shared.kafka.record_key {
            let mac = crate::delivery::sign::record_mac(k.expose().as_bytes(), topic, value);
            headers = headers.insert(Header {
                key: crate::delivery::sign::RECORD_MAC_HEADER,
                value: Some(mac.as_str()),
            });
        }
        let record = Record {
            topic,
            partition: Some(keys::partition_of(by, shared.history_partitions)),
            key: key.as_bytes(),
            payload: Some(value),
            headers,
        };
        self.produce(Stream::History, record).await;
    }
}
