//! Producing synthetic traffic to a cluster (`regwatch simulate`, the demo, the benchmark).

use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::FutureProducer;

use super::{client, output};
use crate::config::KafkaSettings;
use crate::simulate::Generator;
use crate::time::wall_now;

/// How much to send and how fast.
#[derive(Clone, Debug)]
pub struct Plan {
    pub topic: String,
    /// Events per second; 0 sends as fast as the cluster takes them.
    pub rate: f64,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
}

/// What was sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    pub events: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

/// Sends generated events (keyed by participant, event time = wall time) until the plan's
/// count or duration is reached, then waits for every delivery report.
pub async fn produce(
    k: &KafkaSettings,
    generator: &mut Generator,
    plan: &Plan,
) -> anyhow::Result<Sent> {
    let mut cfg = client::base(k);
    cfg.set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.kbytes", "262144");
    let producer: FutureProducer = cfg.create()?;
    let start = Instant::now();
    let mut sent = Sent::default();
    let mut inflight = FuturesUnordered::new();
    loop {
        if plan.count.is_some_and(|c| sent.events >= c)
            || plan.duration.is_some_and(|d| start.elapsed() >= d)
        {
            break;
        }
        if plan.rate > 0.0 {
            let due = Duration::from_secs_f64(sent.events as f64 / plan.rate);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let m = generator.next(wall_now());
        let record = output::Record {
            topic: &plan.topic,
            partition: None,
            key: m.key.as_bytes(),
            payload: Some(m.value),
            headers: OwnedHeaders::new(),
        };
        inflight.push(output::send(&producer, &record).await?);
        sent.events += 1;
        // Keep the report futures bounded; librdkafka batches underneath.
        while inflight.len() > 50_000 {
            if let Some(Ok(Err(_)) | Err(_)) = inflight.next().await {
                sent.failed += 1;
            }
        }
    }
    while let Some(r) = inflight.next().await {
        if !matches!(r, Ok(Ok(_))) {
            sent.failed += 1;
        }
    }
    sent.elapsed = start.elapsed();
    Ok(sent)
}
