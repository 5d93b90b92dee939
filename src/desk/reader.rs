//! Reads the whole history topic into a [`Desk`]: a plain consumer with no group (every
//! instance reads every partition), from the beginning, following new partitions. A record
//! without a valid `regwatch.mac` (when records are authenticated) or of no known kind is
//! counted and skipped, never folded.
//!
//! Every 2 seconds, or at once when a question waits for it, it takes the topic's high watermarks at wall time t; once its position
//! has reached them all, everything written before t is folded and the desk is read to t.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{keys, Desk};
use crate::config::KafkaSettings;
use crate::ingest::closing::OffThread;
use crate::time::{wall_now, Timestamp};

/// How often the end of the topic is taken again while a question waits for it, and
/// otherwise.
const CHECK: Duration = Duration::from_millis(50);
const IDLE_CHECK: Duration = Duration::from_secs(2);
/// How often the partition count is looked up again.
const METADATA: Duration = Duration::from_secs(5);
const CALL: Duration = Duration::from_secs(5);

/// One reader of the history topic.
pub struct Reader {
    consumer: OffThread<BaseConsumer>,
    topic: String,
    key: Option<Vec<u8>>,
    assigned: i32,
    /// The ends taken at a wall time, still to be reached.
    target: Option<(Timestamp, HashMap<i32, i64>)>,
    last_check: Instant,
    last_metadata: Option<Instant>,
    metrics: Option<Arc<crate::telemetry::Metrics>>,
    /// The store's counts last exported (folded, refused, unreadable, evicted).
    exported: [u64; 4],
}

impl Reader {
    pub fn new(k: &KafkaSettings, topic: &str) -> anyhow::Result<Reader> {
        let mut c = crate::ingest::client::reader(k);
        // Follow the topic closely: a question waits for what was written before it.
        c.set("group.id", format!("{}.desk", k.group_id))
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "50")
            .set("fetch.error.backoff.ms", "20")
            .set("fetch.queue.backoff.ms", "20");
        Ok(Reader {
            consumer: OffThread::new("history reader", c.create()?),
            topic: topic.to_string(),
            key: k
                .record_key
                .as_ref()
                .map(|s| s.expose().as_bytes().to_vec()),
            assigned: 0,
            target: None,
            last_check: Instant::now() - CHECK,
            last_metadata: None,
            metrics: None,
            exported: [0; 4],
        })
    }

    /// Exports the desk's counts to these metrics.
    pub fn with_metrics(mut self, metrics: Arc<crate::telemetry::Metrics>) -> Reader {
        self.metrics = Some(metrics);
        self
    }

    fn export(&mut self, desk: &Desk) {
        let Some(m) = &self.metrics else { return };
        let (now, held) = desk.read(|s| {
            (
                [s.folded, s.refused, s.unreadable, s.evicted],
                s.stories.len() as i64,
            )
        });
        for (i, outcome) in ["folded", "refused", "unreadable"].iter().enumerate() {
            m.history_records
                .with_label_values(&[outcome])
                .inc_by(now[i].saturating_sub(self.exported[i]));
        }
        m.history_evicted
            .inc_by(now[3].saturating_sub(self.exported[3]));
        m.history_incidents.set(held);
        self.exported = now;
    }

    /// Assigns partitions the topic gained since the last look (from their beginning), at
    /// most every [`METADATA`] unless `now`. Returns whether the topic's metadata was whole
    /// (the topic exists and every partition has a leader): only then may an end be taken.
    fn follow_partitions(&mut self, now: bool) -> anyhow::Result<bool> {
        if !now && self.last_metadata.is_some_and(|t| t.elapsed() < METADATA) {
            return Ok(true);
        }
        self.last_metadata = Some(Instant::now());
        let md = self.consumer.fetch_metadata(Some(&self.topic), CALL)?;
        let Some(t) = md.topics().iter().find(|t| t.name() == self.topic) else {
            return Ok(false);
        };
        let whole = t.error().is_none()
            && !t.partitions().is_empty()
            && t.partitions()
                .iter()
                .all(|p| p.error().is_none() && p.leader() >= 0);
        let n = t.partitions().len() as i32;
        if n > self.assigned {
            let mut tpl = TopicPartitionList::new();
            for p in self.assigned..n {
                tpl.add_partition_offset(&self.topic, p, Offset::Beginning)?;
            }
            self.consumer.incremental_assign(&tpl)?;
            self.assigned = n;
        }
        Ok(whole)
    }

    /// Reads for up to `wait`, folding what arrives; moves the desk's read-to mark on when
    /// the ends taken earlier are reached.
    pub fn step(&mut self, desk: &Desk, wait: Duration) -> anyhow::Result<()> {
        self.follow_partitions(false)?;
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.consumer.poll(left.min(Duration::from_millis(20))) {
                Some(Ok(m)) => self.fold(desk, &m),
                Some(Err(e)) => tracing::debug!(error = %e, "history reader"),
                None => {}
            }
            self.check_end(desk)?;
            if Instant::now() >= until {
                self.export(desk);
                return Ok(());
            }
        }
    }

    fn fold(&self, desk: &Desk, m: &rdkafka::message::BorrowedMessage<'_>) {
        let mut kind = None;
        let mut mac = None;
        if let Some(headers) = m.headers() {
            for h in headers.iter() {
                match h.key {
                    keys::KIND_HEADER => kind = h.value.and_then(|v| std::str::from_utf8(v).ok()),
                    crate::delivery::sign::RECORD_MAC_HEADER => {
                        mac = h.value.and_then(|v| std::str::from_utf8(v).ok())
                    }
                    _ => {}
                }
            }
        }
        let Some(payload) = m.payload() else {
            return;
        };
        if let Some(key) = &self.key {
            let ok = mac.is_some_and(|mac| {
                crate::delivery::sign::record_authentic(key, &self.topic, payload, mac)
            });
            if !ok {
                desk.write(|s| s.refused += 1);
                tracing::warn!(partition = m.partition(), offset = m.offset(), "history record without a valid regwatch.mac refused: something other than regwatch writes the history topic (check its ACLs), or kafka.record_key changed");
                return;
            }
        }
        let kind = kind.unwrap_or("");
        desk.write(|s| s.fold(kind, payload));
    }

    /// Takes the topic's ends now and then, and marks the desk read once they are reached.
    fn check_end(&mut self, desk: &Desk) -> anyhow::Result<()> {
        let pace = if desk.is_wanted() { CHECK } else { IDLE_CHECK };
        if self.last_check.elapsed() < pace {
            return Ok(());
        }
        self.last_check = Instant::now();
        // An end is taken only over the whole topic as the broker knows it now: a partition
        // not yet assigned (the topic just created, or grown) would otherwise be skipped.
        let whole = self.follow_partitions(true)?;
        let positions = self.consumer.position()?;
        let at = |p: i32| {
            positions
                .find_partition(&self.topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
        };
        if let Some((t, ends)) = &self.target {
            let reached = ends
                .iter()
                .all(|(p, end)| at(*p).is_some_and(|pos| pos >= *end));
            if reached {
                desk.caught_up(*t);
                self.target = None;
            }
        }
        if self.target.is_none() && whole && self.assigned > 0 {
            let t = wall_now();
            let mut ends = HashMap::new();
            for p in 0..self.assigned {
                let (low, high) = self.consumer.fetch_watermarks(&self.topic, p, CALL)?;
                // An empty partition (or one compacted or aged to nothing) is reached.
                if high > low && at(p).is_none_or(|pos| pos < high) {
                    ends.insert(p, high);
                }
            }
            if ends.is_empty() {
                desk.caught_up(t);
            } else {
                self.target = Some((t, ends));
            }
        }
        Ok(())
    }
}

/// Runs a reader into `desk` on a blocking thread until `stop` is set; errors are logged
/// and retried.
pub fn spawn(
    k: KafkaSettings,
    topic: String,
    desk: Arc<Desk>,
    metrics: Arc<crate::telemetry::Metrics>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader: Option<Reader> = None;
        while !stop.load(Ordering::Relaxed) {
            let r = match reader.as_mut() {
                Some(r) => r,
                None => match Reader::new(&k, &topic) {
                    Ok(r) => reader.insert(r.with_metrics(metrics.clone())),
                    Err(e) => {
                        tracing::error!(error = %e, "history reader cannot start; retrying");
                        std::thread::sleep(Duration::from_secs(2));
                        continue;
                    }
                },
            };
            if let Err(e) = r.step(&desk, Duration::from_millis(250)) {
                tracing::warn!(error = %e, topic = %topic, "history reader: retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    })
}

/// Reads the history topic to its end once (for `regwatch report`), within `timeout`.
pub fn load(k: &KafkaSettings, topic: &str, desk: &Desk, timeout: Duration) -> anyhow::Result<()> {
    let started = wall_now();
    desk.want_fresh();
    let deadline = Instant::now() + timeout;
    let mut r = Reader::new(k, topic)?;
    while desk.read_to().is_none_or(|t| t < started) {
        if Instant::now() >= deadline {
            anyhow::bail!("the history topic {topic} was not read to its end within {timeout:?}");
        }
        if let Err(e) = r.step(desk, Duration::from_millis(200)) {
            tracing::debug!(error = %e, "history reader: retrying");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}
