//! librdkafka client settings from the validated configuration, and creation of the topics
//! regwatch writes to. Secrets go into librdkafka properties only; a `ClientConfig` is never
//! logged (its `Debug` would show them).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;

use crate::config::KafkaSettings;

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
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    c
}

/// Creates the alerts, dead-letter, state and reminders topics when missing (the state
/// topic compacted). Existing topics are left as they are.
pub async fn ensure_topics(k: &KafkaSettings) -> anyhow::Result<()> {
    create_topics(
        k,
        &[
            (k.alerts_topic.as_str(), "delete"),
            (k.dead_letter_topic.as_str(), "delete"),
            (k.state_topic.as_str(), "compact"),
            (k.reminders_topic.as_str(), "delete"),
        ],
    )
    .await
}

/// Creates one topic (with `cleanup.policy` = `policy`) when missing.
pub async fn ensure_topic(k: &KafkaSettings, name: &str, policy: &str) -> anyhow::Result<()> {
    create_topics(k, &[(name, policy)]).await
}

/// Creates `(name, cleanup.policy)` topics with `kafka.topic_partitions` partitions; existing
/// ones are left as they are.
async fn create_topics(k: &KafkaSettings, topics: &[(&str, &str)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base(k).create()?;
    let partitions = k.topic_partitions;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    // -1 asks for the broker's default replication factor; brokers without it take 1.
    for replication in [-1, 1] {
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, policy)| {
                NewTopic::new(name, partitions, TopicReplication::Fixed(replication))
                    .set("cleanup.policy", policy)
            })
            .collect();
        let results = admin.create_topics(new.iter(), &opts).await?;
        let mut retry = false;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, RDKafkaErrorCode::InvalidReplicationFactor)) if replication == -1 => {
                    retry = true
                }
                Err((topic, code)) => anyhow::bail!("cannot create topic {topic}: {code}"),
            }
        }
        if !retry {
            break;
        }
    }
    Ok(())
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
