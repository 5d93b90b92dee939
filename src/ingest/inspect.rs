//! `regwatch state dump` / `verify`: one source partition's state as a restore would read
//! it (its latest authentic record per key), read-only: nothing is proposed, re-signed or
//! deleted.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::BaseConsumer;

use super::{client, state, trust};
use crate::config::KafkaSettings;

/// Reads the state of events partition `partition` of `topic`, with the configured record
/// key, or the deployment's key found in the state topic (never proposed here).
pub fn read(k: &KafkaSettings, topic: &str, partition: i32) -> anyhow::Result<state::Loaded> {
    let mut k = k.clone();
    if k.record_key.is_none() && !k.trust_internal_topics {
        k.record_key = trust::record_key(&k, Duration::from_secs(30))?;
        anyhow::ensure!(
            k.record_key.is_some(),
            "the state topic {} holds no deployment record key: nothing regwatch wrote is there yet",
            k.state_topic
        );
    }
    let c: BaseConsumer = client::reader(&k).create()?;
    let partitions = client::topic_partitions(&c, &k.state_topic, Duration::from_secs(10))
        .context("state topic metadata")?
        .with_context(|| format!("state topic {} not found", k.state_topic))?;
    state::read(&k, partitions, topic, partition, Duration::from_secs(60))
}
