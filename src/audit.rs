//! The audit topic (`kafka.audit_topic`): an append-only record of what people did (who,
//! when, what, why, where it went), one record per act, keyed by participant and signed like
//! regwatch's other records. Actions (`crate::actions`) and redrives (`crate::redrive`)
//! write it.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::{KafkaSettings, Secret};
use crate::delivery::sign;

/// The `schema` of every audit record.
pub const SCHEMA: &str = "regwatch.audit.v1";

/// Appends one record to the audit topic, keyed by participant and signed with the record
/// key when there is one.
pub async fn write(
    k: &KafkaSettings,
    producer: &FutureProducer,
    record_key: Option<&Secret>,
    key: &str,
    value: &[u8],
) -> anyhow::Result<()> {
    let mac = record_key.map(|s| sign::record_mac(s.expose().as_bytes(), &k.audit_topic, value));
    let mut record = FutureRecord::<str, [u8]>::to(&k.audit_topic)
        .key(key)
        .payload(value);
    if let Some(mac) = &mac {
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: sign::RECORD_MAC_HEADER,
            value: Some(mac.as_str()),
        }));
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}
