//! Settings of the long-running daemon: Kafka (topics, consumer group, delivery, security),
//! the daemon's own timing, and its HTTP endpoint. Raw serde structs here, validated into
//! types the rest of the daemon can trust; secrets are read from files or environment
//! variables at load time and never printed.
//!
//! ```toml
//! [kafka]
//! brokers = "localhost:9092"
//! group_id = "regwatch"
//! topics = ["sandbox.events"]            # or: topic_pattern = "^sandbox\\..*"
//! alerts_topic = "regwatch.alerts"
//! dead_letter_topic = "regwatch.dead-letters"
//! state_topic = "regwatch.state"         # compacted; regwatch's own durable state
//! reminders_topic = "regwatch.reminders" # reminders of unresolved incidents (not alerts)
//! audit_topic = "regwatch.audit"         # append-only record of people's acts (redrives, ...)
//! topic_partitions = 12                  # partitions of each topic regwatch creates
//! replication_factor = 3                 # of each topic regwatch creates (default: the cluster's default.replication.factor; more than the brokers: start-up error)
//! min_insync_replicas = 2                # of each topic regwatch creates (default: replication_factor - 1, at least 1; the cluster's default when neither is set)
//! state_topic_config = ["segment.ms=600000"]   # over the state topic's compaction defaults
//! transactional_state = true             # snapshots + offsets in one transaction per partition (fences old owners)
//! record_key = { file = "/run/secrets/regwatch-record-key" }   # HMAC of alert, reminder and state records (default: a key kept in the state topic)
//! insecure_trust_internal_topics = false # true: no HMAC; the internal topics are trusted
//! create_topics = true                   # create the four topics above if missing
//! commit_interval = "1s"                 # state flush + offset commit cadence
//! fetch_queue_kbytes = 16384             # prefetch bound per partition (queued.max.messages.kbytes)
//! fetch_max_bytes = 52428800
//! max_partition_fetch_bytes = 1048576
//! max_in_flight_events = 20000           # per partition, awaiting broker acks
//! session_timeout = "10s"
//! librdkafka = ["socket.keepalive.enable=true"]   # any other property, passed through
//!
//! [kafka.security]
//! protocol = "sasl_ssl"                  # plaintext | ssl | sasl_plaintext | sasl_ssl
//! ca_file = "/etc/regwatch/ca.pem"
//! sasl_mechanism = "SCRAM-SHA-512"       # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
//! username = "regwatch"
//! password = { file = "/run/secrets/kafka-password" }   # or { env = "KAFKA_PASSWORD" }
//!
//! [daemon]
//! tick = "1s"                            # how often the clock advances with no message
//! shutdown_grace = "30s"
//!
//! [http]                                 # see config/web.rs: listen, TLS, tokens
//!
//! [log]
//! format = "text"                        # text | json (one JSON object per line); level: REGWATCH_LOG
//! ```

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::{duration_or, invalid, ConfigError};

/// A secret value: read once, never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicSelection {
    List(Vec<String>),
    /// A librdkafka regex subscription (starts with `^`).
    Pattern(String),
}

impl TopicSelection {
    /// Which topic names this selection consumes, with the pattern compiled once. The pattern
    /// is matched with Rust's regex, librdkafka's being POSIX: the two agree on the anchored
    /// patterns a configuration uses.
    pub fn matcher(&self) -> Result<TopicMatcher, regex::Error> {
        Ok(match self {
            TopicSelection::List(list) => TopicMatcher::List(list.clone()),
            TopicSelection::Pattern(p) => TopicMatcher::Pattern(regex::Regex::new(p)?),
        })
    }
}

/// A [`TopicSelection`] ready to test topic names.
#[derive(Clone, Debug)]
pub enum TopicMatcher {
    List(Vec<String>),
    Pattern(regex::Regex),
}

impl TopicMatcher {
    pub fn consumes(&self, topic: &str) -> bool {
        match self {
            TopicMatcher::List(list) => list.iter().any(|t| t == topic),
            TopicMatcher::Pattern(re) => re.is_match(topic),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Security {
    pub protocol: Protocol,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_password: Option<Secret>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, with `username` and `password`.
    pub sasl: Option<(String, String, Secret)>,
}

/// The state topic's configs when regwatch creates it: compacted, in segments that close
/// (the cleaner never touches the active one) at least hourly, cleaned once a tenth of the
/// log is superseded and at the latest an hour after a write, tombstones kept a day so a
/// reader that started before the cleaner still sees them.
pub const STATE_TOPIC_DEFAULTS: [(&str, &str); 5] = [
    ("cleanup.policy", "compact"),
    ("segment.ms", "3600000"),
    ("min.cleanable.dirty.ratio", "0.1"),
    ("max.compaction.lag.ms", "3600000"),
    ("delete.retention.ms", "86400000"),
];

#[derive(Clone, Debug, PartialEq)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_id: String,
    pub topics: TopicSelection,
    pub alerts_topic: String,
    pub dead_letter_topic: String,
    pub state_topic: String,
    /// Where reminders go (`[alerts] reminder_interval`); never the alerts topic.
    pub reminders_topic: String,
    /// The append-only record of what people did (who, when, what, why).
    pub audit_topic: String,
    pub topic_partitions: i32,
    /// Replication factor of every topic regwatch creates; a cluster with fewer brokers is a
    /// start-up error. `None`: the cluster's `default.replication.factor` (as Kafka Streams'
    /// `replication.factor = -1`), so a configuration of participants alone runs anywhere.
    pub replication_factor: Option<i16>,
    /// `min.insync.replicas` of every topic regwatch creates; `None`: the cluster's default.
    pub min_insync_replicas: Option<i16>,
    /// Topic configs of the state topic when regwatch creates it: the compaction defaults
    /// (`STATE_TOPIC_DEFAULTS`) with `kafka.state_topic_config` over them.
    pub state_topic_config: Vec<(String, String)>,
    /// State snapshots and offset commits go through a transactional producer per partition,
    /// which fences a previous owner (see `ingest::txn`).
    pub transactional_state: bool,
    /// Key of the HMAC every alert, reminder and state record carries (`regwatch.mac`):
    /// with it, the outbox delivers only records regwatch produced and a restore reads only
    /// state regwatch wrote. `None` in the file: the deployment's own key, kept in the state
    /// topic (`ingest::trust`), is filled in at start-up.
    pub record_key: Option<Secret>,
    /// `kafka.insecure_trust_internal_topics`: no record key at all; whatever is on the
    /// alerts, reminders and state topics is taken as regwatch's own.
    pub trust_internal_topics: bool,
    pub create_topics: bool,
    pub commit_interval_ms: i64,
    pub fetch_queue_kbytes: u32,
    pub fetch_max_bytes: u32,
    pub max_partition_fetch_bytes: u32,
    pub max_in_flight_events: usize,
    pub session_timeout_ms: i64,
    pub security: Security,
    /// Further librdkafka properties, passed through as given.
    pub librdkafka: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DaemonSettings {
    pub tick_ms: i64,
    pub shutdown_grace_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct LogSettings {
    /// JSON lines instead of human-readable text.
    pub json: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKafka {
    brokers: Option<String>,
    group_id: Option<String>,
    topics: Option<Vec<String>>,
    topic_pattern: Option<String>,
    alerts_topic: Option<String>,
    dead_letter_topic: Option<String>,
    state_topic: Option<String>,
    reminders_topic: Option<String>,
    audit_topic: Option<String>,
    topic_partitions: Option<i32>,
    replication_factor: Option<i16>,
    min_insync_replicas: Option<i16>,
    #[serde(default)]
    state_topic_config: Vec<String>,
    transactional_state: Option<bool>,
    record_key: Option<RawSecret>,
    #[serde(default)]
    insecure_trust_internal_topics: bool,
    create_topics: Option<bool>,
    commit_interval: Option<String>,
    fetch_queue_kbytes: Option<u32>,
    fetch_max_bytes: Option<u32>,
    max_partition_fetch_bytes: Option<u32>,
    max_in_flight_events: Option<usize>,
    session_timeout: Option<String>,
    #[serde(default)]
    librdkafka: Vec<String>,
    #[serde(default)]
    security: RawSecurity,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    protocol: Option<String>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    key_password: Option<RawSecret>,
    sasl_mechanism: Option<String>,
    username: Option<String>,
    password: Option<RawSecret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecret {
    file: Option<PathBuf>,
    env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    tick: Option<String>,
    shutdown_grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    format: Option<String>,
}

impl RawLog {
    pub(super) fn validate(self) -> Result<LogSettings, ConfigError> {
        match self.format.as_deref() {
            None | Some("text") => Ok(LogSettings { json: false }),
            Some("json") => Ok(LogSettings { json: true }),
            Some(other) => Err(invalid(
                "log.format",
                format!("{other:?} (known: text, json)"),
            )),
        }
    }
}

/// librdkafka properties regwatch sets itself: overriding them would break its guarantees.
const MANAGED: [&str; 11] = [
    "bootstrap.servers",
    "transactional.id",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "partition.assignment.strategy",
    "isolation.level",
    "sasl.password",
    "ssl.key.password",
    "security.protocol",
];

pub(super) fn topic_name(key: &str, name: String) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(name)
    } else {
        Err(invalid(
            key,
            format!("{name:?} is not a Kafka topic name (1..249 of [a-zA-Z0-9._-])"),
        ))
    }
}

pub(super) fn secret(key: &str, raw: RawSecret) -> Result<Secret, ConfigError> {
    match (raw.file, raw.env) {
        (Some(path), None) => std::fs::read_to_string(&path)
            .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| {
                invalid(
                    key,
                    format!("cannot read secret file {}: {e}", path.display()),
                )
            }),
        (None, Some(var)) => std::env::var(&var)
            .map(Secret)
            .map_err(|_| invalid(key, format!("environment variable {var} is not set"))),
        _ => Err(invalid(key, "give exactly one of `file` or `env`")),
    }
}

impl RawKafka {
    pub(super) fn validate(self) -> Result<KafkaSettings, ConfigError> {
        let topics = match (self.topics, self.topic_pattern) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "kafka.topic_pattern",
                    "give either `topics` or `topic_pattern`, not both",
                ))
            }
            (None, Some(p)) if p.starts_with('^') && p.len() > 1 => TopicSelection::Pattern(p),
            (None, Some(p)) => {
                return Err(invalid(
                    "kafka.topic_pattern",
                    format!("{p:?}: a pattern must start with ^ (librdkafka regex)"),
                ))
            }
            (Some(list), None) if list.is_empty() => {
                return Err(invalid("kafka.topics", "name at least one topic"))
            }
            (Some(list), None) => TopicSelection::List(
                list.into_iter()
                    .map(|t| topic_name("kafka.topics", t))
                    .collect::<Result<_, _>>()?,
            ),
            (None, None) => TopicSelection::List(vec!["sandbox.events".into()]),
        };
        let librdkafka = self
            .librdkafka
            .into_iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    invalid(
                        "kafka.librdkafka",
                        format!("{kv:?} is not \"property=value\""),
                    )
                })?;
                let k = k.trim();
                if MANAGED.contains(&k) {
                    return Err(invalid(
                        "kafka.librdkafka",
                        format!("{k} is set by regwatch (use the matching [kafka] key)"),
                    ));
                }
                Ok((k.to_string(), v.trim().to_string()))
            })
            .collect::<Result<_, _>>()?;
        let topic_partitions = self.topic_partitions.unwrap_or(12);
        if !(1..=10_000).contains(&topic_partitions) {
            return Err(invalid(
                "kafka.topic_partitions",
                "must be within 1..=10000",
            ));
        }
        let replication_factor = self.replication_factor;
        if replication_factor.is_some_and(|rf| !(1..=32).contains(&rf)) {
            return Err(invalid("kafka.replication_factor", "must be within 1..=32"));
        }
        // With an explicit replication factor, one replica may be down without stopping writes.
        let min_insync_replicas = self
            .min_insync_replicas
            .or(replication_factor.map(|rf| (rf - 1).max(1)));
        if let Some(isr) = min_insync_replicas {
            let most = replication_factor.unwrap_or(32);
            if !(1..=most).contains(&isr) {
                return Err(invalid(
                    "kafka.min_insync_replicas",
                    format!("must be within 1..={most} (kafka.replication_factor)"),
                ));
            }
        }
        let mut state_topic_config: Vec<(String, String)> = STATE_TOPIC_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for kv in self.state_topic_config {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                invalid(
                    "kafka.state_topic_config",
                    format!("{kv:?} is not \"config=value\""),
                )
            })?;
            let (k, v) = (k.trim(), v.trim());
            if k == "cleanup.policy" && v != "compact" {
                return Err(invalid(
                    "kafka.state_topic_config",
                    "the state topic must stay compacted (cleanup.policy=compact)",
                ));
            }
            state_topic_config.retain(|(key, _)| key != k);
            state_topic_config.push((k.to_string(), v.to_string()));
        }
        let commit_interval_ms = duration_or("kafka.commit_interval", self.commit_interval, 1_000)?;
        if commit_interval_ms < 10 {
            return Err(invalid("kafka.commit_interval", "must be at least 10ms"));
        }
        let max_in_flight_events = self.max_in_flight_events.unwrap_or(20_000);
        if max_in_flight_events == 0 {
            return Err(invalid("kafka.max_in_flight_events", "must be at least 1"));
        }
        if self.insecure_trust_internal_topics && self.record_key.is_some() {
            return Err(invalid(
                "kafka.insecure_trust_internal_topics",
                "contradicts kafka.record_key: give one or the other",
            ));
        }
        let settings = KafkaSettings {
            brokers: self.brokers.unwrap_or_else(|| "localhost:9092".into()),
            group_id: self.group_id.unwrap_or_else(|| "regwatch".into()),
            topics,
            alerts_topic: topic_name(
                "kafka.alerts_topic",
                self.alerts_topic
                    .unwrap_or_else(|| "regwatch.alerts".into()),
            )?,
            dead_letter_topic: topic_name(
                "kafka.dead_letter_topic",
                self.dead_letter_topic
                    .unwrap_or_else(|| "regwatch.dead-letters".into()),
            )?,
            state_topic: topic_name(
                "kafka.state_topic",
                self.state_topic.unwrap_or_else(|| "regwatch.state".into()),
            )?,
            reminders_topic: topic_name(
                "kafka.reminders_topic",
                self.reminders_topic
                    .unwrap_or_else(|| "regwatch.reminders".into()),
            )?,
            audit_topic: topic_name(
                "kafka.audit_topic",
                self.audit_topic.unwrap_or_else(|| "regwatch.audit".into()),
            )?,
            topic_partitions,
            replication_factor,
            min_insync_replicas,
            state_topic_config,
            transactional_state: self.transactional_state.unwrap_or(true),
            record_key: self
                .record_key
                .map(|raw| secret("kafka.record_key", raw))
                .transpose()?,
            trust_internal_topics: self.insecure_trust_internal_topics,
            create_topics: self.create_topics.unwrap_or(true),
            commit_interval_ms,
            fetch_queue_kbytes: self.fetch_queue_kbytes.unwrap_or(16_384),
            fetch_max_bytes: self.fetch_max_bytes.unwrap_or(52_428_800),
            max_partition_fetch_bytes: self.max_partition_fetch_bytes.unwrap_or(1_048_576),
            max_in_flight_events,
            session_timeout_ms: duration_or("kafka.session_timeout", self.session_timeout, 10_000)?,
            security: self.security.validate()?,
            librdkafka,
        };
        // Reminders are not alerts (CONTRACT.md section 3): they never share a topic.
        let r = &settings.reminders_topic;
        if [
            &settings.alerts_topic,
            &settings.dead_letter_topic,
            &settings.state_topic,
        ]
        .contains(&r)
        {
            return Err(invalid(
                "kafka.reminders_topic",
                format!("{r:?} is already the alerts, dead-letter or state topic"),
            ));
        }
        let a = &settings.audit_topic;
        if [
            &settings.alerts_topic,
            &settings.dead_letter_topic,
            &settings.state_topic,
            &settings.reminders_topic,
        ]
        .contains(&a)
        {
            return Err(invalid(
                "kafka.audit_topic",
                format!("{a:?} is already the alerts, dead-letter, state or reminders topic"),
            ));
        }
        Ok(settings)
    }
}

impl RawSecurity {
    fn validate(self) -> Result<Security, ConfigError> {
        let protocol = match self.protocol.as_deref().unwrap_or("plaintext") {
            "plaintext" => Protocol::Plaintext,
            "ssl" => Protocol::Ssl,
            "sasl_plaintext" => Protocol::SaslPlaintext,
            "sasl_ssl" => Protocol::SaslSsl,
            other => {
                return Err(invalid(
                    "kafka.security.protocol",
                    format!("{other:?} (known: plaintext, ssl, sasl_plaintext, sasl_ssl)"),
                ))
            }
        };
        let sasl = if protocol.uses_sasl() {
            let mechanism = self.sasl_mechanism.ok_or_else(|| {
                invalid(
                    "kafka.security.sasl_mechanism",
                    "required with a sasl_* protocol",
                )
            })?;
            if !matches!(
                mechanism.as_str(),
                "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
            ) {
                return Err(invalid(
                    "kafka.security.sasl_mechanism",
                    format!("{mechanism:?} (known: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"),
                ));
            }
            let username = self.username.ok_or_else(|| {
                invalid("kafka.security.username", "required with a sasl_* protocol")
            })?;
            let password = self.password.ok_or_else(|| {
                invalid("kafka.security.password", "required with a sasl_* protocol")
            })?;
            Some((
                mechanism,
                username,
                secret("kafka.security.password", password)?,
            ))
        } else {
            if self.sasl_mechanism.is_some() || self.username.is_some() || self.password.is_some() {
                return Err(invalid(
                    "kafka.security.protocol",
                    "SASL settings given, but the protocol is not sasl_plaintext or sasl_ssl",
                ));
            }
            None
        };
        Ok(Security {
            protocol,
            ca_file: self.ca_file,
            cert_file: self.cert_file,
            key_file: self.key_file,
            key_password: self
                .key_password
                .map(|s| secret("kafka.security.key_password", s))
                .transpose()?,
            sasl,
        })
    }
}

impl RawDaemon {
    pub(super) fn validate(self) -> Result<DaemonSettings, ConfigError> {
        let tick_ms = duration_or("daemon.tick", self.tick, 1_000)?;
        if !(10..=60_000).contains(&tick_ms) {
            return Err(invalid("daemon.tick", "must be within 10ms..=1m"));
        }
        Ok(DaemonSettings {
            tick_ms,
            shutdown_grace_ms: duration_or("daemon.shutdown_grace", self.shutdown_grace, 30_000)?,
        })
    }
}
