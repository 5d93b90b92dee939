//! Action records on an events partition (see `crate::actions`): authenticated by regwatch's
//! record key, applied by the engine at the partition's time, written to the history topic
//! (the incident's timeline) applied or refused, and counted. A record that is not
//! authentic or not an action is a dead letter like any rejected event.

use rdkafka::message::Headers;

use super::*;
use crate::actions::{Action, Applied, ACTION_HEADER};

/// Whether `m` carries the action header.
pub(super) fn is_action<M: Message>(m: &M) -> bool {
    m.headers()
        .is_some_and(|h| h.iter().any(|x| x.key == ACTION_HEADER))
}

impl<C: rdkafka::consumer::ConsumerContext + 'static> Worker<C> {
    pub(super) async fn on_action<M: Message>(&mut self, m: &M) {
        let bytes = m.payload().unwrap_or_default();
        // Without a record key nothing tells regwatch's actions from a participant's forgery:
        // none is applied (the API refuses them too).
        let authentic = self.shared.kafka.record_key.as_ref().is_some_and(|k| {
            let mac = crate::ingest::tail::header(m, crate::delivery::sign::RECORD_MAC_HEADER)
                .unwrap_or_default();
            crate::delivery::sign::record_authentic(k.expose().as_bytes(), m.topic(), bytes, &mac)
        });
        if !authentic {
            tracing::warn!(topic = %self.topic, partition = self.partition, offset = m.offset(), "an action record without a valid regwatch.mac (or no record key: insecure_trust_internal_topics): refused and dead-lettered (only regwatch's API writes actions)");
            self.reject(m, &Reject::UntrustedAction).await;
            return;
        }
        let action = match Action::parse(bytes) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(topic = %self.topic, partition = self.partition, offset = m.offset(), reason = %why, "a malformed action record dead-lettered");
                self.reject(m, &Reject::BadAction).await;
                return;
            }
        };
        let (outcome, refusal, applied_at) = match self.engine.act(&action, &mut self.alerts) {
            Ok(at) => ("applied", None, at),
            Err(why) => (
                "refused",
                Some(why),
                self.engine.clock().unwrap_or(action.at),
            ),
        };
        self.shared
            .metrics
            .actions
            .with_label_values(&[action.action.as_str(), outcome])
            .inc();
        tracing::info!(topic = %self.topic, partition = self.partition, action = action.action.as_str(), action_id = %action.action_id, participant = %action.participant_id, incident = %action.incident_id, actor = %action.actor, outcome, refusal = refusal.as_deref().unwrap_or(""), "action");
        let topic = self.topic.clone();
        let applied = Applied {
            action: &action,
            outcome,
            refusal,
            applied_at,
            topic: &topic,
            partition: self.partition,
        };
        self.history_action(&applied).await;
    }
}
