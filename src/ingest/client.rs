//! librdkafka client settings from the validated configuration, and creation of the topics
//! regwatch writes to. Secrets go into librdkafka properties only; a `ClientConfig` is never
//! logged (its `Debug` would show them).

use std::time::Duration;

use std::sync::{Arc, Mutex};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::KafkaSettings;
use crate::telemetry::{Health, Metrics};

/// Connection and security settings shared by every client.
pub fn base(k: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("security.protocol", k.security.protocol.as_librdkafka())
        .set("client.id", "regwatch");
    let s = &k.security;
    if let Some(p) = &s.ca_file {
        c.set("ssl.ca.location", p.display().to_string());
    }
    if let Some(p) = &s.cert_file {
        c.set("ssl.certificate.location", p.display().to_string());
    }
    if let Some(p) = &s.key_file {
        c.set("ssl.key.location", p.display().to_string());
    }
    if let Some(secret) = &s.key_password {
        c.set("ssl.key.password", secret.expose());
    }
    if let Some((mechanism, username, password)) = &s.sasl {
        c.set("sasl.mechanism", mechanism)
            .set("sasl.username", username)
            .set("sasl.password", password.expose());
    }
    for (key, value) in &k.librdkafka {
        c.set(key, value);
    }
    c
}

/// The group consumer: cooperative-sticky assignment, manual commits, bounded prefetch.
pub fn consumer(k: &KafkaSettings) -> ClientConfig {
    let mut c = base(k);
    c.set("group.id", &k.group_id)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", k.session_timeout_ms.to_string())
        .set(
            "queued.max.messages.kbytes",
            k.fetch_queue_kbytes.to_string(),
        )
        .set("fetch.max.bytes", k.fetch_max_bytes.to_string())
        .set(
            "max.partition.fetch.bytes",
            k.max_partition_fetch_bytes.to_string(),
        );
    c
}

/// The producer of alerts, dead letters and state: idempotent, so a retried batch is never
/// written twice, and ordered per partition.
pub fn producer(k: &KafkaSettings) -> ClientConfig {
    let mut c = base(k);
    c.set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000");
    c
}

/// A plain consumer for reading the state topic back (no group, no commits).
pub fn reader(k: &KafkaSettings) -> ClientConfig {
    let mut c = base(k);
    c.set("group.id", format!("{}.state-reader", k.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    c
}

/// The producer's context: logs librdkafka's errors, and turns a fatal one (the idempotent
/// producer can no longer guarantee order or no duplicates) into a daemon failure: counted,
/// readiness red, the daemon stops and exits non-zero.
pub struct Watched {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

impl ClientContext for Watched {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            self.metrics
                .worker_failures
                .with_label_values(&["producer_fatal"])
                .inc();
            tracing::error!(error = %error, reason, "fatal producer error; stopping the daemon");
            self.health
                .fail(format!("fatal producer error: {error}: {reason}"));
        } else {
            // Transient (a broker down, a connection reset): the broker probe, /readyz and
            // regwatch_broker_up report outages; librdkafka retries on its own.
            tracing::debug!(error = %error, reason, "kafka client error");
        }
    }
}

/// Records the errors librdkafka reports while the start-up check runs.
#[derive(Default)]
struct Capture(Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>);

impl Capture {
    /// The first error that waiting cannot cure: authentication, TLS, a bad setting.
    fn fatal(&self) -> Option<String> {
        let errors = self.0.lock().unwrap_or_else(|p| p.into_inner());
        errors
            .iter()
            .find(|(code, _)| {
                matches!(
                    code,
                    Some(RDKafkaErrorCode::Authentication)
                        | Some(RDKafkaErrorCode::SaslAuthenticationFailed)
                        | Some(RDKafkaErrorCode::SSL)
                        | Some(RDKafkaErrorCode::InvalidArgument)
                        | Some(RDKafkaErrorCode::ClusterAuthorizationFailed)
                )
            })
            .map(|(_, text)| text.clone())
    }

    fn last(&self) -> Option<String> {
        let errors = self.0.lock().unwrap_or_else(|p| p.into_inner());
        errors.last().map(|(_, text)| text.clone())
    }
}

impl rdkafka::consumer::ConsumerContext for Capture {}

impl ClientContext for Capture {
    fn error(&self, error: KafkaError, reason: &str) {
        let mut errors = self.0.lock().unwrap_or_else(|p| p.into_inner());
        errors.push((error.rdkafka_error_code(), format!("{error}: {reason}")));
    }
}

/// Checks at start-up that the cluster answers with these settings, and returns how many
/// brokers it has. A failed authentication (wrong password, unknown user, bad mechanism) or a
/// TLS failure is an error at once, naming the cause, rather than a daemon that waits.
pub fn preflight(k: &KafkaSettings, timeout: Duration) -> anyhow::Result<usize> {
    let consumer: BaseConsumer<Capture> = base(k).create_with_context(Capture::default())?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let result = consumer.fetch_metadata(None, Duration::from_millis(1_000));
        // Serves librdkafka's error events (the context records them); a consumer-side
        // error comes back here instead.
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            consumer.context().error(e, "");
        }
        if let Some(why) = consumer.context().fatal() {
            anyhow::bail!(
                "cannot use the Kafka cluster at {} (kafka.brokers, kafka.security): {why}",
                k.brokers
            );
        }
        match result {
            Ok(md) if !md.brokers().is_empty() => return Ok(md.brokers().len()),
            Ok(_) | Err(_) if std::time::Instant::now() < deadline => continue,
            Ok(_) => anyhow::bail!("the Kafka cluster at {} lists no broker", k.brokers),
            Err(e) => anyhow::bail!(
                "cannot reach the Kafka cluster at {} within {timeout:?} (kafka.brokers): {e}; {}",
                k.brokers,
                consumer.context().last().as_deref().unwrap_or("no answer")
            ),
        }
    }
}

/// The partition count of `topic` as the broker knows it now; `None` while it does not
/// exist (or has no partitions yet).
pub fn topic_partitions(
    c: &BaseConsumer,
    topic: &str,
    timeout: std::time::Duration,
) -> Result<Option<i32>, KafkaError> {
    let md = c.fetch_metadata(Some(topic), timeout)?;
    Ok(md
        .topics()
        .first()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// Partitions of the subscribed events topics in `md`.
pub fn subscribed_partitions(
    md: &rdkafka::metadata::Metadata,
    matcher: Option<&crate::config::TopicMatcher>,
    pattern: bool,
) -> i64 {
    md.topics()
        .iter()
        .filter(|t| matcher.is_some_and(|m| subscribed(m, pattern, t.name())))
        .map(|t| t.partitions().len() as i64)
        .sum()
}

/// Whether the consumer group's subscription takes `topic` (a pattern never takes Kafka's
/// internal `__` topics).
pub fn subscribed(matcher: &crate::config::TopicMatcher, pattern: bool, topic: &str) -> bool {
    !(pattern && topic.starts_with("__")) && matcher.consumes(topic)
}

/// The topic configs of the alerts, dead-letter and reminders topics.
const PLAIN: &[(&str, &str)] = &[("cleanup.policy", "delete")];
/// The audit topic's: what people did is kept until an operator decides otherwise.
const KEPT: &[(&str, &str)] = &[("cleanup.policy", "delete"), ("retention.ms", "-1")];

/// Creates the alerts, dead-letter, state, reminders and audit topics when missing (the state
/// topic compacted, with `kafka.state_topic_config`), each with `kafka.replication_factor`
/// replicas and `kafka.min_insync_replicas` (the cluster's defaults when unset). Existing topics are left as they are, except
/// that an existing state topic must be compacted.
pub async fn ensure_topics(k: &KafkaSettings, brokers: usize) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base(k).create()?;
    let state: Vec<(&str, &str)> = k
        .state_topic_config
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    create_topics(
        &admin,
        k,
        brokers,
        &[
            (k.alerts_topic.as_str(), PLAIN),
            (k.dead_letter_topic.as_str(), PLAIN),
            (k.state_topic.as_str(), &state),
            (k.reminders_topic.as_str(), PLAIN),
            (k.audit_topic.as_str(), KEPT),
        ],
    )
    .await?;
    check_compacted(&admin, k).await
}

/// Creates the participants' bound topics that are missing (`kafka.create_topics`), so that a
/// new participant is one registry entry: its topic exists before the consumer subscribes.
pub async fn ensure_bound_topics(
    k: &KafkaSettings,
    brokers: usize,
    topics: &[&str],
) -> anyhow::Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = base(k).create()?;
    let list: Vec<(&str, &[(&str, &str)])> = topics.iter().map(|t| (*t, PLAIN)).collect();
    create_topics(&admin, k, brokers, &list).await
}

/// Creates the history topic when missing: compacted and time-limited (`compact,delete`,
/// `retention.ms` from `history.retention`), its segments rolled hourly so superseded views
/// and watermarks are compacted away (see `desk::keys`).
pub async fn ensure_history_topic(
    k: &KafkaSettings,
    brokers: usize,
    history: &crate::config::HistorySettings,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base(k).create()?;
    let retention = history.retention_ms.to_string();
    let configs: &[(&str, &str)] = &[
        ("cleanup.policy", "compact,delete"),
        ("retention.ms", &retention),
        ("segment.ms", "3600000"),
        ("min.cleanable.dirty.ratio", "0.1"),
    ];
    create_topics(&admin, k, brokers, &[(history.topic.as_str(), configs)]).await
}

/// Creates one topic (`cleanup.policy=delete`) when missing.
/// Creates the audit topic when missing (kept forever: `retention.ms=-1`).
pub async fn ensure_audit_topic(k: &KafkaSettings, brokers: usize) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base(k).create()?;
    create_topics(&admin, k, brokers, &[(k.audit_topic.as_str(), KEPT)]).await
}

pub async fn ensure_topic(k: &KafkaSettings, brokers: usize, name: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base(k).create()?;
    create_topics(&admin, k, brokers, &[(name, PLAIN)]).await
}

/// Creates `(name, configs)` topics with `kafka.topic_partitions` partitions and
/// `kafka.replication_factor` replicas; existing ones are left as they are.
async fn create_topics(
    admin: &AdminClient<DefaultClientContext>,
    k: &KafkaSettings,
    brokers: usize,
    topics: &[(&str, &[(&str, &str)])],
) -> anyhow::Result<()> {
    if let Some(rf) = k.replication_factor.filter(|rf| *rf as usize > brokers) {
        anyhow::bail!(
            "kafka.replication_factor is {rf} but the cluster at {} has {brokers} broker(s): \
             lower it (1 for a single test broker) or add brokers",
            k.brokers
        );
    }
    // -1: the cluster's default.replication.factor.
    let rf = k.replication_factor.map_or(-1, i32::from);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let isr = k.min_insync_replicas.map(|isr| isr.to_string());
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, configs)| {
            let mut t = NewTopic::new(name, k.topic_partitions, TopicReplication::Fixed(rf));
            if let Some(isr) = &isr {
                t = t.set("min.insync.replicas", isr);
            }
            configs.iter().fold(t, |t, (key, value)| t.set(key, value))
        })
        .collect();
    for r in admin.create_topics(new.iter(), &opts).await? {
        match r {
            Ok(topic) => {
                tracing::info!(%topic, partitions = k.topic_partitions, replication_factor = rf, "topic created")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, RDKafkaErrorCode::InvalidReplicationFactor)) => anyhow::bail!(
                "cannot create topic {topic}: the cluster at {} refused replication factor {} \
                 (kafka.replication_factor; -1 is the cluster's default.replication.factor)",
                k.brokers,
                rf
            ),
            Err((topic, code)) => anyhow::bail!("cannot create topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// An existing state topic that is not compacted would grow without end and restore ever
/// more slowly: refused at start-up.
async fn check_compacted(
    admin: &AdminClient<DefaultClientContext>,
    k: &KafkaSettings,
) -> anyhow::Result<()> {
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let resources = [ResourceSpecifier::Topic(&k.state_topic)];
    // A topic just created may be described before its configs are known to the broker
    // asked: an answer without a policy is asked again, for a few seconds.
    for _ in 0..50 {
        let policy = admin
            .describe_configs(&resources, &opts)
            .await?
            .into_iter()
            .flatten()
            .find_map(|resource| resource.get("cleanup.policy").and_then(|e| e.value.clone()))
            .filter(|p| !p.is_empty());
        match policy {
            Some(p) if p.split(',').any(|p| p.trim() == "compact") => return Ok(()),
            Some(policy) => anyhow::bail!(
                "the state topic {} has cleanup.policy={policy}: it must be compacted \
                 (kafka-configs --alter --entity-type topics --entity-name {} --add-config cleanup.policy=compact)",
                k.state_topic,
                k.state_topic
            ),
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    anyhow::bail!(
        "the cleanup.policy of the state topic {} could not be read",
        k.state_topic
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn settings(security: &str) -> Result<KafkaSettings, crate::config::ConfigError> {
        let text = format!(
            "[kafka]\nbrokers = \"kafka-1:9093,kafka-2:9093\"\nlibrdkafka = [\"socket.keepalive.enable=true\"]\n{security}\n[[participants]]\nid = \"A\"\nkind = \"broker\"\n"
        );
        Config::from_toml(&text, None, false).map(|c| c.kafka)
    }

    #[test]
    fn sasl_scram_over_tls_with_a_password_from_a_file() {
        let dir = std::env::temp_dir().join(format!("regwatch-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cr3t-from-file\n").unwrap();
        let k = settings(&format!(
            "[kafka.security]\nprotocol = \"sasl_ssl\"\nca_file = \"/etc/ca.pem\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nusername = \"regwatch\"\npassword = {{ file = {:?} }}\n",
            file.display().to_string()
        ))
        .unwrap();
        let c = consumer(&k);
        for (key, value) in [
            ("bootstrap.servers", "kafka-1:9093,kafka-2:9093"),
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", "/etc/ca.pem"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "regwatch"),
            ("sasl.password", "s3cr3t-from-file"),
            ("socket.keepalive.enable", "true"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("enable.auto.commit", "false"),
        ] {
            assert_eq!(c.get(key), Some(value), "{key}");
        }
        assert_eq!(producer(&k).get("enable.idempotence"), Some("true"));
        let shown = format!("{k:?}");
        assert!(
            !shown.contains("s3cr3t"),
            "secrets never appear in Debug output: {shown}"
        );
    }

    #[test]
    fn plain_sasl_with_a_password_from_the_environment() {
        std::env::set_var("REGWATCH_TEST_KAFKA_PASSWORD", "from-env");
        let k = settings("[kafka.security]\nprotocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nusername = \"u\"\npassword = { env = \"REGWATCH_TEST_KAFKA_PASSWORD\" }\n").unwrap();
        assert_eq!(base(&k).get("sasl.password"), Some("from-env"));
        assert_eq!(base(&k).get("sasl.mechanism"), Some("PLAIN"));
    }

    #[test]
    fn bad_security_settings_name_the_key() {
        for (security, key) in [
            ("[kafka.security]\nprotocol = \"sasl_ssl\"\n", "kafka.security.sasl_mechanism"),
            ("[kafka.security]\nprotocol = \"sasl_ssl\"\nsasl_mechanism = \"GSSAPI\"\n", "kafka.security.sasl_mechanism"),
            ("[kafka.security]\nprotocol = \"sasl_ssl\"\nsasl_mechanism = \"PLAIN\"\nusername = \"u\"\npassword = { env = \"REGWATCH_TEST_UNSET_VAR\" }\n", "kafka.security.password"),
            ("[kafka.security]\nprotocol = \"sasl_ssl\"\nsasl_mechanism = \"PLAIN\"\nusername = \"u\"\npassword = { file = \"/nonexistent/p\", env = \"X\" }\n", "kafka.security.password"),
            ("[kafka.security]\nprotocol = \"tls\"\n", "kafka.security.protocol"),
            ("[kafka.security]\nusername = \"u\"\n", "kafka.security.protocol"),
        ] {
            let err = settings(security).unwrap_err().to_string();
            assert!(err.contains(key), "{err:?} names {key}");
            assert!(!err.contains("from-env"));
        }
        let err = settings("[kafka.security]\n").map(|_| ());
        assert!(err.is_ok(), "plaintext by default");
        let managed = Config::from_toml(
            "[kafka]\nlibrdkafka = [\"enable.auto.commit=true\"]\n",
            None,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            managed.contains("enable.auto.commit is set by regwatch"),
            "{managed}"
        );
    }
}
