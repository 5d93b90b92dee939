//! People's acts on incidents: acknowledge (reminders stop, the grade stays), annotate, close
//! with a reason (a `resolved` alert with trigger `closed` naming who and why).
//!
//! An action travels the way the incident's events do: the HTTP API (role `operator`) writes
//! it, as a `regwatch.action.v1` record carrying the `regwatch.action` header and regwatch's
//! `regwatch.mac`, to the events topic and partition the incident lives in (the desk knows
//! them). So it reaches whichever instance owns that partition, in order with the
//! participant's reports; its effect is part of the partition's state, committed with the
//! offset that covers it, so it survives restarts and follows rebalances; and `regwatch
//! replay` of the partition reproduces it. A participant cannot forge one (no record key). The
//! owner writes each applied or refused action to the history topic (the incident's timeline),
//! and the API writes who, when, what and why to the audit topic when it accepts it.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The header that marks an action record on an events topic.
pub const ACTION_HEADER: &str = "regwatch.action";
pub const SCHEMA: &str = "regwatch.action.v1";
/// Longest reason or note kept.
pub const MAX_TEXT: usize = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Stops the incident's reminders; the grade and the verdict stay.
    Ack,
    /// Adds a note to the incident's timeline.
    Annotate,
    /// Resolves the incident at once, as a `resolved` report would, with trigger `closed`.
    Close,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Ack, Kind::Annotate, Kind::Close];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ack => "ack",
            Kind::Annotate => "annotate",
            Kind::Close => "close",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One action record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub schema: String,
    pub action_id: String,
    pub action: Kind,
    pub participant_id: String,
    pub incident_id: String,
    /// Who: the client certificate's subject or the token's name, as the API saw it.
    pub actor: String,
    /// Why (for `annotate`: the note).
    pub reason: String,
    /// When the API accepted it (wall time).
    pub at: Timestamp,
}

impl Action {
    /// The shape every action must have; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        if self.schema != SCHEMA {
            return Err(format!("schema: expected {SCHEMA:?}"));
        }
        for (name, v, max) in [
            ("action_id", &self.action_id, 128),
            ("participant_id", &self.participant_id, 256),
            ("incident_id", &self.incident_id, 256),
            ("actor", &self.actor, 512),
            ("reason", &self.reason, MAX_TEXT),
        ] {
            if v.trim().is_empty() {
                return Err(format!("{name}: must not be empty"));
            }
            if v.len() > max {
                return Err(format!("{name}: longer than {max} bytes"));
            }
        }
        Ok(())
    }

    /// Parses and checks an action record's value.
    pub fn parse(bytes: &[u8]) -> Result<Action, String> {
        let a: Action =
            serde_json::from_slice(bytes).map_err(|e| format!("not an action record: {e}"))?;
        a.check()?;
        Ok(a)
    }
}

/// What the owning partition did with an action, for the timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Applied<'a> {
    #[serde(flatten)]
    pub action: &'a Action,
    /// `applied`, or `refused`.
    pub outcome: &'static str,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The engine time it took effect at.
    pub applied_at: Timestamp,
    pub topic: &'a str,
    pub partition: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action() -> Action {
        Action {
            schema: SCHEMA.into(),
            action_id: "a1".into(),
            action: Kind::Close,
            participant_id: "P".into(),
            incident_id: "I".into(),
            actor: "CN=alice".into(),
            reason: "abandoned: the participant confirmed by phone".into(),
            at: Timestamp(1_000),
        }
    }

    #[test]
    fn an_action_reads_back_as_written_and_bad_ones_name_the_field() {
        let a = action();
        let bytes = serde_json::to_vec(&a).unwrap();
        assert_eq!(Action::parse(&bytes).unwrap(), a);
        let mut b = a.clone();
        b.reason = " ".into();
        assert!(b.check().unwrap_err().starts_with("reason"));
        let mut b = a.clone();
        b.actor = "x".repeat(600);
        assert!(b.check().unwrap_err().starts_with("actor"));
        assert!(Action::parse(b"{\"schema\":\"regwatch.action.v1\"}")
            .unwrap_err()
            .contains("not an action record"));
        let text = String::from_utf8(bytes).unwrap().replace("close", "erase");
        assert!(Action::parse(text.as_bytes()).is_err());
    }
}

/// Where the API sends accepted actions: the incident's events partition, then the audit
/// topic.
pub struct Sink {
    pub producer: rdkafka::producer::FutureProducer,
    /// Brokers and the audit topic.
    pub kafka: crate::config::KafkaSettings,
    /// The record key that signs actions and audit records, once the daemon has it (`None`
    /// inside: `insecure_trust_internal_topics`).
    pub key: std::sync::OnceLock<Option<crate::config::Secret>>,
}

/// The audit record of an accepted action.
#[derive(Serialize)]
struct AuditRecord<'a> {
    schema: &'static str,
    action: &'static str,
    action_id: &'a str,
    actor: &'a str,
    why: &'a str,
    at: Timestamp,
    participant: &'a str,
    incident: &'a str,
    /// `topic/partition/offset` of the action record.
    to: String,
}

impl Sink {
    /// Writes `a` to `topic`/`partition` (keyed by participant, marked and signed), then
    /// its audit record; returns the action record's `topic/partition/offset`.
    pub async fn submit(&self, a: &Action, topic: &str, partition: i32) -> anyhow::Result<String> {
        use rdkafka::message::{Header, OwnedHeaders};
        let Some(key) = self.key.get() else {
            anyhow::bail!("regwatch is still starting (no record key yet): try again");
        };
        let value = serde_json::to_vec(a)?;
        let mut headers = OwnedHeaders::new().insert(Header {
            key: ACTION_HEADER,
            value: Some(a.action.as_str()),
        });
        let mac = key
            .as_ref()
            .map(|k| crate::delivery::sign::record_mac(k.expose().as_bytes(), topic, &value));
        if let Some(mac) = &mac {
            headers = headers.insert(Header {
                key: crate::delivery::sign::RECORD_MAC_HEADER,
                value: Some(mac.as_str()),
            });
        }
        let record = rdkafka::producer::FutureRecord::to(topic)
            .partition(partition)
            .key(a.participant_id.as_str())
            .payload(value.as_slice())
            .headers(headers);
        let delivered = self
            .producer
            .send(record, std::time::Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)?;
        let to = format!("{topic}/{}/{}", delivered.partition, delivered.offset);
        let audit = AuditRecord {
            schema: crate::audit::SCHEMA,
            action: a.action.as_str(),
            action_id: &a.action_id,
            actor: &a.actor,
            why: &a.reason,
            at: a.at,
            participant: &a.participant_id,
            incident: &a.incident_id,
            to: to.clone(),
        };
        crate::audit::write(
            &self.kafka,
            &self.producer,
            key.as_ref(),
            &a.participant_id,
            &serde_json::to_vec(&audit)?,
        )
        .await?;
        Ok(to)
    }
}
