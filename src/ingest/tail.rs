//! Reading a topic from outside the group: the demo's alert printer and the tests' checks.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message;

use super::client;
use crate::config::KafkaSettings;

/// A consumer of `topic` in its own group, from the earliest offset.
pub fn follower(k: &KafkaSettings, topic: &str, group: &str) -> anyhow::Result<StreamConsumer> {
    let mut cfg = client::base(k);
    cfg.set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("enable.partition.eof", "false");
    let c: StreamConsumer = cfg.create()?;
    c.subscribe(&[topic])?;
    Ok(c)
}

/// Receives the next message, or `None` after `idle` without one.
pub async fn next(c: &StreamConsumer, idle: Duration) -> Option<OwnedMessage> {
    match tokio::time::timeout(idle, c.recv()).await {
        Ok(Ok(m)) => Some(m.detach()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "follower error");
            None
        }
        Err(_) => None,
    }
}

/// The value of header `name`, as text.
pub fn header<M: Message>(m: &M, name: &str) -> Option<String> {
    let h = m.headers()?;
    (0..h.count())
        .map(|i| h.get(i))
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
