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

use crate::ingest::closing::detached;
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
    /// Holds a participant's telemetry gaps and its incidents' reminders for a window.
    Silence,
    /// Ends a silence before its time (it is kept, expired, naming who ended it).
    Unsilence,
    /// Gives up one alert a receiver keeps refusing: it is dead-lettered (reason `skipped`)
    /// and the receiver's lane goes on. Read by the outboxes from the audit topic.
    Skip,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Ack,
        Kind::Annotate,
        Kind::Close,
        Kind::Silence,
        Kind::Unsilence,
        Kind::Skip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ack => "ack",
            Kind::Annotate => "annotate",
            Kind::Close => "close",
            Kind::Silence => "silence",
            Kind::Unsilence => "unsilence",
            Kind::Skip => "skip",
        }
    }

    /// Whether it acts on one incident (else on a participant, or a receiver's alert).
    pub fn on_incident(self) -> bool {
        matches!(self, Kind::Ack | Kind::Annotate | Kind::Close)
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
    /// The incident (`ack`, `annotate`, `close`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub incident_id: String,
    /// Who: the client certificate's subject or the token's name, as the API saw it.
    pub actor: String,
    /// Why (for `annotate`: the note).
    pub reason: String,
    /// When the API accepted it (wall time).
    pub at: Timestamp,
    /// A silence's window, `[starts_at, ends_at)` (`silence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    /// The silence ended early (`unsilence`): the `action_id` of its `silence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_id: Option<String>,
    /// The receiver and the alert it keeps refusing (`skip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
}

/// The longest silence window.
pub const MAX_SILENCE_MS: i64 = 31 * 24 * 3_600_000;

impl Action {
    /// The shape every action must have; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        if self.schema != SCHEMA {
            return Err(format!("schema: expected {SCHEMA:?}"));
        }
        fn opt(o: &Option<String>) -> &str {
            o.as_deref().unwrap_or_default()
        }
        let mut fields: Vec<(&str, &str, usize)> = vec![
            ("action_id", &self.action_id, 128),
            ("actor", &self.actor, 512),
            ("reason", &self.reason, MAX_TEXT),
        ];
        if self.action != Kind::Skip || !self.participant_id.is_empty() {
            fields.push(("participant_id", &self.participant_id, 256));
        }
        match self.action {
            Kind::Ack | Kind::Annotate | Kind::Close => {
                fields.push(("incident_id", &self.incident_id, 256))
            }
            Kind::Silence => {}
            Kind::Unsilence => fields.push(("silence_id", opt(&self.silence_id), 128)),
            Kind::Skip => {
                fields.push(("receiver", opt(&self.receiver), 256));
                fields.push(("alert_id", opt(&self.alert_id), 256));
            }
        }
        for (name, v, max) in fields {
            if v.trim().is_empty() {
                return Err(format!("{name}: must not be empty"));
            }
            if v.len() > max {
                return Err(format!("{name}: longer than {max} bytes"));
            }
        }
        if self.action == Kind::Silence {
            let (Some(s), Some(e)) = (self.starts_at, self.ends_at) else {
                return Err("ends_at: a silence needs its window's end (and start)".into());
            };
            if e <= s {
                return Err(format!("ends_at: {e} is not after starts_at {s}"));
            }
            if e.millis().saturating_sub(s.millis()) > MAX_SILENCE_MS {
                return Err(format!(
                    "ends_at: a silence lasts at most {} days",
                    MAX_SILENCE_MS / 86_400_000
                ));
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
            starts_at: None,
            ends_at: None,
            silence_id: None,
            receiver: None,
            alert_id: None,
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

/// Where the API sends accepted actions: the partitions they act on, then the audit topic.
///
/// With `kafka.transactional_state` (the default) the action records and the audit record
/// are one Kafka transaction of a producer of this instance's own (`transactional.id`
/// `<group_id>.state.actions.<host>/<pid>`, under the state writers' ACL prefix): the
/// partitions read committed records only, so an action is applied only if its audit record
/// is written too. Without it they are written one after the other.
pub struct Sink {
    producer: rdkafka::producer::FutureProducer,
    /// Brokers, the events topics and the audit topic.
    kafka: crate::config::KafkaSettings,
    /// The record key that signs actions and audit records, once the daemon has it (`None`
    /// inside: `insecure_trust_internal_topics`).
    pub key: std::sync::OnceLock<Option<crate::config::Secret>>,
    /// The configured receivers' names (a `skip` names one).
    pub receivers: Vec<String>,
    /// The transactional producer, made on first use; one action at a time.
    txn: tokio::sync::Mutex<Option<rdkafka::producer::FutureProducer>>,
    /// This instance's name (its transactional id).
    instance: String,
}

/// How long one transactional call may take.
const TXN_CALL: std::time::Duration = std::time::Duration::from_secs(30);

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
    #[serde(skip_serializing_if = "str::is_empty")]
    incident: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    starts_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    silence_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receiver: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_id: Option<&'a str>,
    /// `topic/partition/offset` of each action record (none for `skip`: the audit record is
    /// the action).
    to: Vec<String>,
}

/// What a `skip` audit record says, as the outboxes read it back.
#[derive(Deserialize)]
pub struct SkipRecord {
    pub schema: String,
    pub action: String,
    pub action_id: String,
    pub actor: String,
    pub why: String,
    pub at: Timestamp,
    #[serde(default)]
    pub receiver: Option<String>,
    #[serde(default)]
    pub alert_id: Option<String>,
}

impl Sink {
    pub fn new(
        kafka: &crate::config::KafkaSettings,
        receivers: Vec<String>,
        instance: String,
    ) -> anyhow::Result<Sink> {
        Ok(Sink {
            producer: crate::ingest::client::producer(kafka).create()?,
            kafka: kafka.clone(),
            key: std::sync::OnceLock::new(),
            receivers,
            txn: tokio::sync::Mutex::new(None),
            instance,
        })
    }

    fn key(&self) -> anyhow::Result<Option<&crate::config::Secret>> {
        match self.key.get() {
            Some(k) => Ok(k.as_ref()),
            None => anyhow::bail!("regwatch is still starting (no record key yet): try again"),
        }
    }

    /// Every events partition a participant's records live on: its bound topics, or (not
    /// bound) the consumed topics no participant is bound to.
    pub async fn partitions_of(
        &self,
        registry: &crate::registry::Registry,
        participant: crate::registry::ParticipantIdx,
    ) -> anyhow::Result<Vec<(String, i32)>> {
        use rdkafka::producer::Producer;
        let matcher = self.kafka.topics.matcher()?;
        let pattern = matches!(self.kafka.topics, crate::config::TopicSelection::Pattern(_));
        let producer = self.producer.clone();
        let md = detached("regwatch-metadata", move || {
            producer
                .client()
                .fetch_metadata(None, std::time::Duration::from_secs(10))
        })
        .await??;
        let bound = &registry.get(participant).topics;
        let mut out = Vec::new();
        for t in md.topics() {
            let name = t.name();
            if !crate::ingest::client::subscribed(&matcher, pattern, name) {
                continue;
            }
            let ours = if bound.is_empty() {
                registry.owner_of(name).is_none()
            } else {
                bound.iter().any(|b| &**b == name)
            };
            if ours {
                out.extend(t.partitions().iter().map(|p| (name.to_string(), p.id())));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Writes `a` to each of `targets` (keyed by participant, marked and signed), then its
    /// audit record, in one transaction when it can; returns each action record's
    /// `topic/partition/offset`.
    pub async fn submit(
        &self,
        a: &Action,
        targets: &[(String, i32)],
    ) -> anyhow::Result<Vec<String>> {
        if !self.kafka.transactional_state {
            return self.write(&self.producer, a, targets).await;
        }
        let mut held = self.txn.lock().await;
        let producer = match held.as_ref() {
            Some(p) => p.clone(),
            None => {
                let mut c = crate::ingest::client::producer(&self.kafka);
                c.set(
                    "transactional.id",
                    format!("{}.state.actions.{}", self.kafka.group_id, self.instance),
                )
                .set("transaction.timeout.ms", "60000");
                let p: rdkafka::producer::FutureProducer = c.create()?;
                let init = p.clone();
                detached("regwatch-txn", move || {
                    use rdkafka::producer::Producer;
                    init.init_transactions(TXN_CALL)
                })
                .await?
                .map_err(|e| anyhow::anyhow!("cannot initialise the actions' transactions: {e}"))?;
                held.insert(p).clone()
            }
        };
        let blocking = |p: rdkafka::producer::FutureProducer, commit: bool| async move {
            detached("regwatch-txn", move || {
                use rdkafka::producer::Producer;
                if commit {
                    p.commit_transaction(TXN_CALL)
                } else {
                    p.abort_transaction(TXN_CALL)
                }
            })
            .await
        };
        {
            use rdkafka::producer::Producer;
            if let Err(e) = producer.begin_transaction() {
                *held = None;
                anyhow::bail!("cannot begin the action's transaction: {e}");
            }
        }
        let written = self.write(&producer, a, targets).await;
        let ended = match &written {
            Ok(_) => blocking(producer.clone(), true).await?,
            Err(_) => blocking(producer.clone(), false).await?,
        };
        if let Err(e) = ended {
            // A producer that cannot end its transaction is made anew for the next action.
            let _ = blocking(producer, false).await;
            *held = None;
            anyhow::bail!("the action's transaction did not commit: {e}");
        }
        written
    }

    /// The records of `a`: one to each target, then the audit record.
    async fn write(
        &self,
        producer: &rdkafka::producer::FutureProducer,
        a: &Action,
        targets: &[(String, i32)],
    ) -> anyhow::Result<Vec<String>> {
        use rdkafka::message::{Header, OwnedHeaders};
        let key = self.key()?;
        let value = serde_json::to_vec(a)?;
        let mut to = Vec::with_capacity(targets.len());
        for (topic, partition) in targets {
            let mut headers = OwnedHeaders::new().insert(Header {
                key: ACTION_HEADER,
                value: Some(a.action.as_str()),
            });
            let mac = key
                .map(|k| crate::delivery::sign::record_mac(k.expose().as_bytes(), topic, &value));
            if let Some(mac) = &mac {
                headers = headers.insert(Header {
                    key: crate::delivery::sign::RECORD_MAC_HEADER,
                    value: Some(mac.as_str()),
                });
            }
            let record = rdkafka::producer::FutureRecord::to(topic)
                .partition(*partition)
                .key(a.participant_id.as_str())
                .payload(value.as_slice())
                .headers(headers);
            let delivered = producer
                .send(record, std::time::Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)?;
            to.push(format!(
                "{topic}/{}/{}",
                delivered.partition, delivered.offset
            ));
        }
        let audit = AuditRecord {
            schema: crate::audit::SCHEMA,
            action: a.action.as_str(),
            action_id: &a.action_id,
            actor: &a.actor,
            why: &a.reason,
            at: a.at,
            participant: &a.participant_id,
            incident: &a.incident_id,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            silence_id: a.silence_id.as_deref(),
            receiver: a.receiver.as_deref(),
            alert_id: a.alert_id.as_deref(),
            to: to.clone(),
        };
        let by = if a.participant_id.is_empty() {
            a.receiver.as_deref().unwrap_or_default()
        } else {
            &a.participant_id
        };
        crate::audit::write(&self.kafka, producer, key, by, &serde_json::to_vec(&audit)?).await?;
        Ok(to)
    }
}
