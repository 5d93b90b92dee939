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

/// Creates the alerts, dead-letter and state topics when missing (the state topic
/// compacted). Existing topics are left as they are.
pub async fn ensure_topics(k: &KafkaSettings) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base(k).create()?;
    let partitions = k.topic_partitions;
    let topics = [
        (k.alerts_topic.as_str(), "delete"),
        (k.dead_letter_topic.as_str(), "delete"),
        (k.state_topic.as_str(), "compact"),
    ];
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
