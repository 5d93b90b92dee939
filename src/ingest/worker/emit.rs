//! What a worker writes besides state: alerts and reminders, dead letters for rejected
//! events, and records produced again after a failed delivery (strictly in sequence).

use super::*;

impl<C: rdkafka::consumer::ConsumerContext + 'static> Worker<C> {
    /// A rejected event: counted, logged, dead-lettered with its reason; processing goes on.
    pub(super) async fn reject<M: Message>(&mut self, m: &M, reject: &Reject) {
        self.counters.rejected.inc();
        if let Some(i) = Reject::CODES.iter().position(|c| *c == reject.code()) {
            self.counters.reasons[i].inc();
        }
        tracing::debug!(topic = %self.topic, partition = self.partition, offset = m.offset(), reason = reject.code(), "event rejected");
        let mut headers = output::copy_headers(m);
        let text = reject.to_string();
        let offset = m.offset().to_string();
        let partition = m.partition().to_string();
        let at = wall_now().to_string();
        let mut pairs = vec![
            ("regwatch.reason", reject.code()),
            ("regwatch.reason_text", text.as_str()),
            ("regwatch.source_topic", m.topic()),
            ("regwatch.source_partition", partition.as_str()),
            ("regwatch.source_offset", offset.as_str()),
            ("regwatch.rejected_at", at.as_str()),
        ];
        if let Some(field) = reject.field() {
            pairs.push(("regwatch.field", field.as_str()));
        }
        for (key, value) in pairs {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        // An oversized message is kept in part: the dead letter must fit the producer's
        // message limit, or it could never be delivered.
        let mut payload = m.payload();
        let original_size = payload.map_or(0, <[u8]>::len).to_string();
        if let (Reject::TooLarge { limit, .. }, Some(p)) = (reject, payload) {
            payload = Some(&p[..p.len().min(*limit)]);
            headers = headers.insert(Header {
                key: "regwatch.truncated_from",
                value: Some(original_size.as_str()),
            });
        }
        let shared = self.shared.clone();
        let record = Record {
            topic: &shared.kafka.dead_letter_topic,
            partition: None,
            key: m.key().unwrap_or_default(),
            payload,
            headers,
        };
        self.produce(Stream::DeadLetters, record).await;
        self.shared.metrics.dead_letters.inc();
    }

    /// Produces the alerts the engine emitted (keyed by participant). Reminders go to the
    /// reminders topic, with the same headers plus `regwatch.reminder` (their k), and are not
    /// counted as alerts.
    pub(super) async fn emit_alerts(&mut self, source_ms: Option<i64>) {
        if self.alerts.is_empty() {
            return;
        }
        let alerts = std::mem::take(&mut self.alerts);
        let shared = self.shared.clone();
        for a in &alerts {
            let payload = a.to_json();
            let status = a.status.as_str();
            let kind = match a.alert_type {
                crate::alert::AlertType::Incident => "incident",
                crate::alert::AlertType::TelemetryGap => "telemetry_gap",
            };
            let i = match (a.alert_type, a.status) {
                (crate::alert::AlertType::Incident, crate::alert::AlertStatus::Firing) => 0,
                (crate::alert::AlertType::Incident, crate::alert::AlertStatus::Resolved) => 1,
                (crate::alert::AlertType::TelemetryGap, crate::alert::AlertStatus::Firing) => 2,
                (crate::alert::AlertType::TelemetryGap, crate::alert::AlertStatus::Resolved) => 3,
            };
            // Decided by the trigger alone: a reminder never reaches the alerts topic.
            let reminder = (a.trigger == Trigger::Reminder).then(|| a.reminder.unwrap_or(0));
            if reminder.is_none() {
                self.counters.alerts[i].inc();
                self.telemetry.alert(a.alert_type, a.level);
            } else {
                self.telemetry.reminder();
            }
            let source = source_ms.map(|ms| ms.to_string());
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "regwatch.alert_id",
                    value: Some(a.alert_id.as_str()),
                })
                .insert(Header {
                    key: "regwatch.type",
                    value: Some(kind),
                })
                .insert(Header {
                    key: "regwatch.status",
                    value: Some(status),
                })
                .insert(Header {
                    key: "regwatch.level",
                    value: Some(a.level.as_str()),
                });
            if let Some(s) = &source {
                headers = headers.insert(Header {
                    key: "regwatch.source_timestamp",
                    value: Some(s.as_str()),
                });
            }
            let k = reminder.map(|k| k.to_string());
            let topic = match &k {
                Some(k) => {
                    headers = headers.insert(Header {
                        key: "regwatch.reminder",
                        value: Some(k.as_str()),
                    });
                    &shared.kafka.reminders_topic
                }
                None => &shared.kafka.alerts_topic,
            };
            if let Some(k) = &shared.kafka.record_key {
                let mac = crate::delivery::sign::record_mac(
                    k.expose().as_bytes(),
                    topic,
                    payload.as_bytes(),
                );
                headers = headers.insert(Header {
                    key: crate::delivery::sign::RECORD_MAC_HEADER,
                    value: Some(mac.as_str()),
                });
            }
            let record = Record {
                topic,
                partition: None,
                key: a.participant_id.as_bytes(),
                payload: Some(payload.as_bytes()),
                headers,
            };
            self.produce(Stream::Alerts, record).await;
            self.history_alert(a, payload.as_bytes()).await;
        }
        self.alerts = alerts;
        self.alerts.clear();
    }

    pub(super) async fn produce(&mut self, stream: Stream, record: Record<'_>) {
        let seq = self.ledger.issue();
        if !self.retries.is_empty() {
            // An earlier record waits to be produced again: this one goes out after it.
            self.retries.hold(Retry {
                seq,
                stream,
                record: OwnedRecord::of(&record),
                not_before: Instant::now(),
            });
            return;
        }
        match output::send(&self.shared.producer, &record).await {
            Ok(future) => self.pending.push(Tagged {
                seq,
                stream,
                future,
                sent: Instant::now(),
            }),
            Err(e) => self.retry_later(seq, stream, OwnedRecord::of(&record), &e.to_string()),
        }
    }

    /// Keeps a record that was not delivered, to produce it again: it stays unacknowledged,
    /// so no flush completes and no offset is committed past it until it is delivered.
    pub(super) fn retry_later(
        &mut self,
        seq: u64,
        stream: Stream,
        record: OwnedRecord,
        error: &str,
    ) {
        tracing::warn!(
            stream = stream.as_str(),
            error,
            "record not delivered; producing it again"
        );
        self.shared
            .metrics
            .produce_retries
            .with_label_values(&[stream.as_str()])
            .inc();
        self.retries.hold(Retry {
            seq,
            stream,
            record,
            not_before: Instant::now() + RETRY_BACKOFF,
        });
    }

    /// Produces again, in sequence order, the records whose back-off has passed; stops at
    /// the first that is not due yet or that the producer does not accept.
    pub(super) async fn retry_due(&mut self) {
        let now = Instant::now();
        while let Some(r) = self.retries.next_due(now) {
            match output::send(&self.shared.producer, &r.record.as_record()).await {
                Ok(future) => self.pending.push(Tagged {
                    seq: r.seq,
                    stream: r.stream,
                    future,
                    sent: Instant::now(),
                }),
                Err(e) => {
                    tracing::warn!(stream = r.stream.as_str(), error = %e, "record still not accepted by the producer");
                    self.retries.hold(Retry {
                        not_before: now + RETRY_BACKOFF * 4,
                        ..r
                    });
                    return;
                }
            }
        }
    }

    pub(super) async fn delivered(&mut self, seq: u64, stream: Stream, d: Delivered) {
        match d {
            Delivered::Acked => self.ledger.ack(seq),
            Delivered::Failed(e, message) => {
                let record = OwnedRecord::from_message(&message);
                self.retry_later(seq, stream, record, &e.to_string());
            }
            Delivered::Lost => {
                // The producer is gone: the record's fate is unknown, so it stays
                // unacknowledged and nothing after it is committed (the next owner
                // reprocesses from the last committed offset).
                tracing::error!(
                    stream = stream.as_str(),
                    "producer closed before a delivery report"
                );
            }
        }
    }
}
