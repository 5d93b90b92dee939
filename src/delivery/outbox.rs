//! The outbox: every receiver reads the alerts (and reminders) topics as a consumer group
//! of its own, `<group>.<receiver>`, and an alert's offset is stored for commit only once
//! that receiver answered 2xx or the alert was dead-lettered for it. A receiver that is
//! down therefore holds back only its own offsets: the others go on, and a daemon
//! restarted in the middle of the outage resumes from the receiver's last committed
//! offset and delivers everything once it is back (at least once; a repeat carries the
//! same `Idempotency-Key`).
//!
//! Inside one receiver, each partition is a lane: alerts of one partition (one participant
//! key) are delivered one after another, in order; partitions proceed in parallel. A lane
//! holding `LANE_DEPTH` records has its partition paused until it drains to half, so the
//! consumer keeps polling (and keeps its group membership) through any outage. Offsets
//! are committed by librdkafka's auto-commit from the offsets the lanes store (explicit
//! store, so nothing is committed before it is done), and synchronously at shutdown.
//!
//! On a rebalance, a revoked partition's lane stops at once (`lanes.rs`): the new owner
//! delivers what it held from the committed offset, with the same `Idempotency-Key`, and the
//! old owner sends nothing more. A partition the receiver's group never committed starts
//! with the alerts raised since the outbox started, unless the receiver asks to `catch_up`.
//!
//! An alert the receiver keeps refusing with a retryable status (5xx, 408) for
//! `max_retry_age` is dead-lettered (reason `retry_age`), so one poison alert cannot hold
//! its partition's lane forever; an operator can give it up sooner by an audited `skip`
//! (`skips.rs`: reason `skipped`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter, IntGauge};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, TopicPartitionList};
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use tokio::sync::{mpsc, watch};

use super::lanes::{OutboxContext, Switches};
use super::payload::{self, Parsed};
use super::policy::{self, Breaker, Cause, Rng, Verdict};
use super::sign::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::skips::Skips;
use crate::alert::AlertStatus;
use crate::config::{DeliverySettings, KafkaSettings, PayloadFormat, Receiver, Route};
use crate::ingest::{client, closing::OffThread, output};
use crate::telemetry::Metrics;
use crate::time::wall_now;

/// Alerts a lane holds before its partition is paused (per receiver and partition); it is
/// resumed once the lane is down to half. The dispatcher itself never waits on a lane, so
/// the consumer keeps polling (and stays in its group) through the longest outage.
const LANE_DEPTH: usize = 256;
/// How much of a rejecting response's body the dead letter keeps.
const EXCERPT_BYTES: usize = 512;

/// The running outbox; [`Outbox::stop`] ends it.
pub struct Outbox {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Whether `route` sends `alert` (reminders only where the route lets them through).
/// The receiver's HTTP client: its timeouts, no redirects (a signed request goes where it
/// was configured to, nowhere else), and its TLS: only its CA when `ca_file` is given, its
/// client certificate when one is.
pub fn http_client(receiver: &Receiver) -> reqwest::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_millis(receiver.timeout_ms as u64))
        .connect_timeout(Duration::from_millis(receiver.timeout_ms.min(5_000) as u64))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = &receiver.ca_pem {
        b = b.tls_built_in_root_certs(false);
        for ca in reqwest::Certificate::from_pem_bundle(pem)? {
            b = b.add_root_certificate(ca);
        }
    }
    if let Some((cert, key)) = &receiver.client_identity {
        b = b.identity(reqwest::Identity::from_pkcs8_pem(
            cert,
            key.expose().as_bytes(),
        )?);
    }
    b.build()
}

pub fn route_matches(route: &Route, alert: &Parsed) -> bool {
    alert.level >= route.min_level
        && route
            .types
            .as_ref()
            .is_none_or(|t| t.contains(&alert.alert_type))
        && route
            .participants
            .as_ref()
            .is_none_or(|p| p.contains(&alert.participant_id))
        && route.exemption.is_none_or(|e| e == alert.exemption)
        && (alert.reminder.is_none() || route.reminders)
}

/// Whether receiver `index` gets `alert` under `settings`.
pub fn is_routed(settings: &DeliverySettings, index: usize, alert: &Parsed) -> bool {
    let receiver = &settings.receivers[index];
    if alert.status == AlertStatus::Resolved && !receiver.send_resolved {
        return false;
    }
    settings.routes.is_empty()
        || settings
            .routes
            .iter()
            .any(|r| r.receivers.contains(&index) && route_matches(r, alert))
}

/// One receiver's delivery machinery, shared by its lanes.
struct Lane {
    receiver: Receiver,
    index: usize,
    settings: Arc<DeliverySettings>,
    http: reqwest::Client,
    breaker: Breaker,
    consumer: OffThread<StreamConsumer<OutboxContext>>,
    /// How long a stop waits for the final commit and the consumer's close.
    close_within: Duration,
    switches: Arc<Switches>,
    producer: FutureProducer,
    m: Handles,
    /// Operators' skips (`skips.rs`).
    skips: Arc<Skips>,
    /// With `kafka.record_key`, only records carrying its HMAC are delivered.
    record_key: Option<crate::config::Secret>,
}

/// Metric handles of one receiver, resolved once.
struct Handles {
    attempts: IntCounter,
    delivered: IntCounter,
    reminders: IntCounter,
    failures: Vec<(Cause, IntCounter)>,
    retries: IntCounter,
    dead_http: IntCounter,
    dead_malformed: IntCounter,
    dead_untrusted: IntCounter,
    dead_aged: IntCounter,
    dead_skipped: IntCounter,
    revoked: IntCounter,
    skipped: IntCounter,
    pending: IntGauge,
    circuit: IntGauge,
    latency: Histogram,
    request: Histogram,
}

impl Handles {
    fn new(metrics: &Metrics, name: &str) -> Handles {
        let w = &metrics.webhook;
        w.touch(name);
        Handles {
            attempts: w.attempts.with_label_values(&[name]),
            delivered: w.delivered.with_label_values(&[name]),
            reminders: w.reminders.with_label_values(&[name]),
            failures: Cause::ALL
                .iter()
                .map(|c| (*c, w.failures.with_label_values(&[name, c.as_str()])))
                .collect(),
            retries: w.retries.with_label_values(&[name]),
            dead_http: w.dead_letters.with_label_values(&[name, "http_status"]),
            dead_malformed: w.dead_letters.with_label_values(&[name, "malformed_alert"]),
            dead_untrusted: w.dead_letters.with_label_values(&[name, "untrusted"]),
            dead_aged: w.dead_letters.with_label_values(&[name, "retry_age"]),
            dead_skipped: w.dead_letters.with_label_values(&[name, "skipped"]),
            revoked: w.revoked.with_label_values(&[name]),
            skipped: w.skipped.with_label_values(&[name]),
            pending: w.pending.with_label_values(&[name]),
            circuit: w.circuit.with_label_values(&[name]),
            latency: w.latency.with_label_values(&[name]),
            request: w.request.with_label_values(&[name]),
        }
    }

    fn failed(&self, cause: Cause) {
        if let Some((_, c)) = self.failures.iter().find(|(k, _)| *k == cause) {
            c.inc();
        }
    }
}

/// The answer to one request.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    excerpt: String,
}

impl Outbox {
    /// Starts one consumer group per receiver over `topics`. Must run inside a Tokio runtime.
    /// A stop waits up to `close_within` for each receiver's final commit and close.
    pub fn start(
        kafka: &KafkaSettings,
        settings: &DeliverySettings,
        topics: &[&str],
        metrics: &Metrics,
        close_within: Duration,
    ) -> anyhow::Result<Outbox> {
        let (stop, stop_rx) = watch::channel(false);
        // A receiver new to the group starts with the alerts raised from now on.
        let started = wall_now();
        let settings = Arc::new(settings.clone());
        let producer: FutureProducer = client::producer(kafka).create()?;
        let mut tasks = Vec::new();
        let skips = Arc::new(Skips::default());
        if !settings.receivers.is_empty() {
            let (k, skips, stop) = (kafka.clone(), skips.clone(), stop_rx.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = super::skips::follow(k, skips, stop).await {
                    tracing::error!(error = %e, "the audit topic cannot be read: operators' skips will not reach this instance's outbox");
                }
            }));
        }
        for (index, receiver) in settings.receivers.iter().enumerate() {
            let group = settings.group_of(&kafka.group_id, receiver);
            let mut cfg = client::base(kafka);
            cfg.set("group.id", &group)
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "500")
                .set("enable.auto.offset.store", "false")
                .set("enable.partition.eof", "false")
                .set("isolation.level", "read_committed")
                .set("session.timeout.ms", kafka.session_timeout_ms.to_string())
                // Where a partition never committed starts when the lookup by time fails
                // (see `lanes.rs`), and with `catch_up`: the oldest alert, nothing skipped.
                .set("auto.offset.reset", "earliest");
            let switches = Arc::new(Switches::default());
            let consumer: StreamConsumer<OutboxContext> =
                cfg.create_with_context(OutboxContext {
                    receiver: receiver.name.clone(),
                    since: (!receiver.catch_up).then_some(started),
                    topics: topics.iter().map(|t| t.to_string()).collect(),
                    switches: switches.clone(),
                })?;
            consumer.subscribe(topics)?;
            let http = http_client(receiver)?;
            let lane = Arc::new(Lane {
                receiver: receiver.clone(),
                index,
                settings: settings.clone(),
                http,
                breaker: Breaker::new(
                    receiver.breaker_failures,
                    Duration::from_millis(receiver.breaker_cooldown_ms as u64),
                ),
                consumer: OffThread::new("outbox consumer", consumer),
                close_within,
                switches,
                producer: producer.clone(),
                m: Handles::new(metrics, &receiver.name),
                skips: skips.clone(),
                record_key: kafka.record_key.clone(),
            });
            tracing::info!(receiver = %receiver.name, %group, format = receiver.format.as_str(), "webhook outbox started");
            tasks.push(tokio::spawn(dispatch(lane, stop_rx.clone())));
        }
        Ok(Outbox { stop, tasks })
    }

    /// Stops every receiver: requests in flight are abandoned (their alerts stay
    /// uncommitted and are delivered after the restart), stored offsets are committed and
    /// each consumer leaves its group, or is left closing in the background after the
    /// shutdown grace (the cluster unreachable).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A partition's lane as the dispatcher sees it.
struct LaneQueue {
    tx: mpsc::UnboundedSender<OwnedMessage>,
    /// Records handed to the lane and not yet done with.
    depth: Arc<AtomicUsize>,
    paused: bool,
    /// Turned on when the partition is revoked: the lane has stopped.
    off: watch::Receiver<bool>,
}

/// Reads a receiver's consumer and hands each alert to its partition's lane; pauses a
/// partition whose lane is full and resumes it when the lane has drained to half.
async fn dispatch(lane: Arc<Lane>, mut stop: watch::Receiver<bool>) {
    let mut lanes: HashMap<(String, i32), LaneQueue> = HashMap::new();
    let mut workers = Vec::new();
    let mut seed = wall_now().millis() as u64 ^ ((lane.index as u64) << 32);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let m = tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                resume_drained(&lane, &mut lanes);
                continue;
            }
            m = lane.consumer.recv() => m,
        };
        let m = match m {
            Ok(m) => m.detach(),
            Err(e) => {
                tracing::warn!(receiver = %lane.receiver.name, error = %e, "outbox consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let key = (m.topic().to_string(), m.partition());
        // A lane stopped by a revocation is replaced when its partition comes back.
        if lanes.get(&key).is_some_and(|q| *q.off.borrow()) {
            lanes.remove(&key);
        }
        let q = lanes.entry(key).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let depth = Arc::new(AtomicUsize::new(0));
            let off = lane.switches.register(m.topic(), m.partition());
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            workers.push(tokio::spawn(run_lane(
                lane.clone(),
                rx,
                depth.clone(),
                stop.clone(),
                off.clone(),
                Rng::seeded(seed),
            )));
            LaneQueue {
                tx,
                depth,
                paused: false,
                off,
            }
        });
        let (topic, partition) = (m.topic().to_string(), m.partition());
        q.depth.fetch_add(1, Ordering::AcqRel);
        lane.m.pending.inc();
        if q.tx.send(m).is_err() {
            if *q.off.borrow() {
                // Revoked between the check above and now: the record belongs to the new
                // owner, which reads it from the committed offset.
                lane.m.pending.dec();
                continue;
            }
            // A lane ends only at shutdown, by revocation or by a defect; its unfinished
            // record was never stored, so it is read again after a restart.
            tracing::error!(receiver = %lane.receiver.name, %topic, partition, "delivery lane ended; this receiver stops");
            break;
        }
        if !q.paused && q.depth.load(Ordering::Acquire) >= LANE_DEPTH {
            q.paused = set_paused(&lane, &topic, partition, true);
        }
    }
    drop(lanes);
    for w in workers {
        let _ = w.await;
    }
    lane.m.pending.set(0);
    // The lanes are done, so this is the last handle on the lane (else the consumer is
    // closed, off the runtime, by whichever is dropped last, without the final commit).
    let Ok(lane) = Arc::try_unwrap(lane) else {
        return;
    };
    let within = lane.close_within;
    let name = lane.receiver.name;
    let _ = tokio::task::spawn_blocking(move || {
        lane.consumer.close(within, move |c| {
            if let Err(e) = c.commit_consumer_state(CommitMode::Sync) {
                // Nothing stored since the last auto-commit is not an error worth more.
                tracing::debug!(receiver = %name, error = %e, "final outbox commit");
            }
        })
    })
    .await;
}

fn resume_drained(lane: &Lane, lanes: &mut HashMap<(String, i32), LaneQueue>) {
    for ((topic, partition), q) in lanes.iter_mut() {
        if q.paused && q.depth.load(Ordering::Acquire) <= LANE_DEPTH / 2 {
            q.paused = !set_paused(lane, topic, *partition, false);
        }
    }
}

/// Pauses or resumes fetching one partition; returns whether it took effect.
fn set_paused(lane: &Lane, topic: &str, partition: i32, pause: bool) -> bool {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let r = if pause {
        lane.consumer.pause(&tpl)
    } else {
        lane.consumer.resume(&tpl)
    };
    match r {
        Ok(()) => {
            tracing::debug!(receiver = %lane.receiver.name, topic, partition, pause, "lane flow control");
            true
        }
        Err(e) => {
            tracing::debug!(receiver = %lane.receiver.name, topic, partition, error = %e, "pause/resume refused");
            false
        }
    }
}

/// Delivers one partition's alerts in order.
async fn run_lane(
    lane: Arc<Lane>,
    mut rx: mpsc::UnboundedReceiver<OwnedMessage>,
    depth: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
    mut off: watch::Receiver<bool>,
    mut rng: Rng,
) {
    loop {
        let m = tokio::select! {
            _ = stop.changed() => return,
            _ = off.changed() => return revoked(&lane, &depth),
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        tokio::select! {
            _ = stop.changed() => return,
            _ = off.changed() => return revoked(&lane, &depth),
            () = lane.handle(&m, &mut rng) => {}
        }
        depth.fetch_sub(1, Ordering::AcqRel);
        lane.m.pending.dec();
        // `rd_kafka_offset_store` commits offset + 1, the next record to read.
        if let Err(e) = lane
            .consumer
            .store_offset(m.topic(), m.partition(), m.offset())
        {
            // The partition moved to another instance, which delivers from its committed
            // offset (the receiver sees a repeat with the same Idempotency-Key).
            tracing::debug!(receiver = %lane.receiver.name, partition = m.partition(), error = %e, "offset not stored");
        }
    }
}

/// A lane whose partition was revoked gives up what it held, unstored: the new owner
/// delivers it from the committed offset.
fn revoked(lane: &Lane, depth: &AtomicUsize) {
    let dropped = depth.swap(0, Ordering::AcqRel);
    lane.m.pending.sub(dropped as i64);
    lane.m.revoked.inc_by(dropped as u64);
    tracing::info!(receiver = %lane.receiver.name, alerts = dropped, "lane stopped: its partition was revoked; the new owner delivers what it held");
}

impl Lane {
    /// Delivers one record to this receiver, dead-letters it, or skips it if not routed.
    /// Returns only when the record is done with.
    async fn handle(&self, m: &OwnedMessage, rng: &mut Rng) {
        let Some(bytes) = m.payload() else {
            return;
        };
        if let Some(k) = &self.record_key {
            let mac = crate::ingest::tail::header(m, sign::RECORD_MAC_HEADER).unwrap_or_default();
            if !sign::record_authentic(k.expose().as_bytes(), m.topic(), bytes, &mac) {
                let why = "the record carries no valid regwatch.mac: it was not produced by regwatch (kafka.record_key)";
                tracing::warn!(receiver = %self.receiver.name, topic = m.topic(), partition = m.partition(), offset = m.offset(), "untrusted record on the alerts topic dead-lettered, not delivered");
                self.dead_letter(m, "untrusted", None, why, rng).await;
                self.m.dead_untrusted.inc();
                return;
            }
        }
        let alert = match payload::parse(bytes) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(receiver = %self.receiver.name, topic = m.topic(), partition = m.partition(), offset = m.offset(), reason = %why, "malformed alert dead-lettered");
                self.dead_letter(m, "malformed_alert", None, &why, rng)
                    .await;
                self.m.dead_malformed.inc();
                return;
            }
        };
        // A redriven alert is for the receiver that could not take it (whatever the routes
        // say now); the others had it already.
        match crate::ingest::tail::header(m, crate::redrive::REDRIVE_FOR_HEADER) {
            Some(only) if only != self.receiver.name => {
                self.m.skipped.inc();
                return;
            }
            Some(_) => {}
            None if !is_routed(&self.settings, self.index, &alert) => {
                self.m.skipped.inc();
                return;
            }
            None => {}
        }
        let body = match self.receiver.format {
            PayloadFormat::Native => bytes.to_vec(),
            PayloadFormat::Alertmanager => {
                payload::alertmanager(&alert, &self.receiver.name, &self.settings.external_url)
            }
        };
        let initial = Duration::from_millis(self.receiver.retry_initial_ms as u64);
        let max = Duration::from_millis(self.receiver.retry_max_ms as u64);
        let mut attempt: u32 = 0;
        // When the receiver first refused this alert with a retryable status.
        let mut refused_since: Option<Instant> = None;
        let max_age = Duration::from_millis(self.receiver.max_retry_age_ms as u64);
        let mut skipped = self.skips.subscribe();
        let written = m.timestamp().to_millis();
        loop {
            if let Some(skip) = self.skips.of(&self.receiver.name, &alert.alert_id, written) {
                let why = format!(
                    "skipped by {} (action {}): {}; {} attempts made",
                    skip.actor, skip.action_id, skip.why, attempt
                );
                tracing::warn!(receiver = %self.receiver.name, alert_id = %alert.alert_id, actor = %skip.actor, action_id = %skip.action_id, "alert skipped by an operator: dead-lettered");
                self.dead_letter(m, "skipped", None, &why, rng).await;
                self.m.dead_skipped.inc();
                return;
            }
            let permit = self.breaker.acquire().await;
            self.m.circuit.set(self.breaker.state().gauge());
            let wait = match self.attempt(&alert.alert_id, &body, attempt).await {
                Ok(answer) => match policy::judge(answer.status) {
                    Verdict::Delivered => {
                        permit.success();
                        self.m.circuit.set(self.breaker.state().gauge());
                        self.m.delivered.inc();
                        if alert.reminder.is_some() {
                            self.m.reminders.inc();
                        }
                        if let Some(written) = m.timestamp().to_millis() {
                            let secs = (wall_now().millis() - written).max(0) as f64 / 1000.0;
                            self.m.latency.observe(secs);
                        }
                        tracing::debug!(receiver = %self.receiver.name, alert_id = %alert.alert_id, attempts = attempt + 1, "delivered");
                        return;
                    }
                    Verdict::Permanent => {
                        permit.success();
                        self.m.circuit.set(self.breaker.state().gauge());
                        self.m.failed(Cause::Rejected);
                        tracing::warn!(receiver = %self.receiver.name, alert_id = %alert.alert_id, status = answer.status, "receiver refused the alert: dead-lettered");
                        self.dead_letter(
                            m,
                            "http_status",
                            Some(answer.status),
                            &answer.excerpt,
                            rng,
                        )
                        .await;
                        self.m.dead_http.inc();
                        return;
                    }
                    Verdict::Retry(cause) => {
                        self.m.failed(cause);
                        if cause == Cause::Status5xx && !max_age.is_zero() {
                            let since = *refused_since.get_or_insert_with(Instant::now);
                            if since.elapsed() >= max_age {
                                permit.failure();
                                self.m.circuit.set(self.breaker.state().gauge());
                                let why = format!(
                                    "refused with retryable statuses for {}s (max_retry_age), {} attempts; last {}: {}",
                                    since.elapsed().as_secs(),
                                    attempt + 1,
                                    answer.status,
                                    answer.excerpt
                                );
                                tracing::warn!(receiver = %self.receiver.name, alert_id = %alert.alert_id, status = answer.status, attempts = attempt + 1, "alert refused past max_retry_age: dead-lettered");
                                self.dead_letter(m, "retry_age", Some(answer.status), &why, rng)
                                    .await;
                                self.m.dead_aged.inc();
                                return;
                            }
                        }
                        if cause.is_unhealthy() {
                            permit.failure();
                        } else {
                            permit.alive();
                        }
                        let wait = match (cause, answer.retry_after) {
                            (Cause::Throttled, Some(after)) => after.clamp(initial, max),
                            _ => policy::backoff(attempt, initial, max, rng),
                        };
                        tracing::warn!(receiver = %self.receiver.name, alert_id = %alert.alert_id, status = answer.status, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, "delivery failed; retrying");
                        wait
                    }
                },
                Err((cause, text)) => {
                    self.m.failed(cause);
                    permit.failure();
                    let wait = policy::backoff(attempt, initial, max, rng);
                    tracing::warn!(receiver = %self.receiver.name, alert_id = %alert.alert_id, cause = cause.as_str(), error = %text, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, "delivery failed; retrying");
                    wait
                }
            };
            self.m.circuit.set(self.breaker.state().gauge());
            self.m.retries.inc();
            attempt = attempt.saturating_add(1);
            // A skip arriving during the back-off ends it.
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = skipped.changed() => {}
            }
        }
    }

    /// One signed request. Errors carry a cause and a text without the URL.
    async fn attempt(
        &self,
        alert_id: &str,
        body: &[u8],
        attempt: u32,
    ) -> Result<Answer, (Cause, String)> {
        let timestamp = wall_now().millis().div_euclid(1000);
        let mut req = self
            .http
            .post(self.receiver.url.expose())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("regwatch/", env!("CARGO_PKG_VERSION")))
            .header("idempotency-key", alert_id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header("x-regwatch-attempt", (attempt + 1).to_string());
        if let Some(sig) = sign::sign_v2(&self.receiver.signing_keys, timestamp, alert_id, body) {
            req = req.header(sign::SIGNATURE_V2_HEADER, sig);
        }
        if let Some(sig) = sign::sign(&self.receiver.signing_keys, timestamp, body) {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        for (name, value) in &self.receiver.headers {
            // Both were validated when the configuration was loaded.
            if let (Ok(n), Ok(mut v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.expose()),
            ) {
                v.set_sensitive(true);
                req = req.header(n, v);
            }
        }
        self.m.attempts.inc();
        let started = Instant::now();
        let sent = req.body(body.to_vec()).send().await;
        let outcome = match sent {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| policy::retry_after(v, wall_now()));
                let mut excerpt = Vec::new();
                while excerpt.len() < EXCERPT_BYTES {
                    match resp.chunk().await {
                        Ok(Some(c)) => excerpt.extend_from_slice(&c),
                        _ => break,
                    }
                }
                excerpt.truncate(EXCERPT_BYTES);
                Ok(Answer {
                    status,
                    retry_after,
                    excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
                })
            }
            Err(e) => {
                let cause = if e.is_timeout() {
                    Cause::Timeout
                } else if e.is_connect() {
                    Cause::Connect
                } else {
                    Cause::Other
                };
                Err((cause, error_chain(&e.without_url())))
            }
        };
        self.m.request.observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// Writes `m` to the alert dead-letter topic with why this receiver could not take it;
    /// retried until the broker acknowledges it (an alert is never dropped silently).
    async fn dead_letter(
        &self,
        m: &OwnedMessage,
        reason: &str,
        status: Option<u16>,
        detail: &str,
        rng: &mut Rng,
    ) {
        let status = status.map(|s| s.to_string());
        let partition = m.partition().to_string();
        let offset = m.offset().to_string();
        let at = wall_now().to_string();
        let mut headers: OwnedHeaders = output::copy_headers(m);
        let mut pairs = vec![
            ("regwatch.receiver", self.receiver.name.as_str()),
            ("regwatch.reason", reason),
            ("regwatch.reason_text", detail),
            ("regwatch.source_topic", m.topic()),
            ("regwatch.source_partition", partition.as_str()),
            ("regwatch.source_offset", offset.as_str()),
            ("regwatch.dead_lettered_at", at.as_str()),
        ];
        if let Some(s) = &status {
            pairs.push(("regwatch.http_status", s.as_str()));
        }
        for (key, value) in pairs {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let topic = &self.settings.dead_letter_topic;
        let mut n = 0;
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers.clone());
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(p) = m.payload() {
                record = record.payload(p);
            }
            match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => return,
                Err((e, _)) => {
                    let wait = policy::backoff(
                        n,
                        Duration::from_millis(200),
                        Duration::from_secs(10),
                        rng,
                    );
                    tracing::warn!(receiver = %self.receiver.name, %topic, error = %e, "alert dead letter not written; retrying");
                    n = n.saturating_add(1);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const KEY: &str = "signing_keys = [{ id = \"k\", secret = \"0123456789abcdef\" }]\n";

    fn settings(routes: &str) -> DeliverySettings {
        Config::from_toml(
            &format!(
                "[[delivery.receivers]]\nname = \"a\"\nurl = \"https://x/a\"\n{KEY}[[delivery.receivers]]\nname = \"b\"\nurl = \"https://x/b\"\nsend_resolved = false\n{KEY}{routes}\n[[participants]]\nid = \"P\"\nkind = \"broker\"\n"
            ),
            None,
            false,
        )
        .unwrap()
        .delivery
    }

    fn alert(kind: &str, level: &str, exemption: &str, status: &str, extra: &str) -> Parsed {
        payload::parse(
            format!(
                r#"{{"alert_id":"x","type":"{kind}","participant_id":"P","status":"{status}","level":"{level}","exemption":"{exemption}"{extra}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn every_receiver_gets_everything_without_routes_but_send_resolved_holds() {
        let s = settings("");
        let firing = alert("incident", "general", "eligible", "firing", "");
        let resolved = alert("incident", "general", "eligible", "resolved", "");
        assert!(is_routed(&s, 0, &firing) && is_routed(&s, 1, &firing));
        assert!(is_routed(&s, 0, &resolved));
        assert!(!is_routed(&s, 1, &resolved), "b does not want resolutions");
    }

    #[test]
    fn route_filters_all_hold() {
        let s = settings(
            "[[delivery.routes]]\nreceivers = [\"b\"]\nmin_level = \"major\"\ntypes = [\"incident\"]\nparticipants = [\"P\"]\nexemption = \"ineligible\"\nreminders = false\n[[delivery.routes]]\nreceivers = [\"a\"]\ntypes = [\"telemetry_gap\"]\n",
        );
        let major = alert("incident", "major", "ineligible", "firing", "");
        assert!(is_routed(&s, 1, &major));
        assert!(!is_routed(&s, 0, &major), "a only takes gaps");
        for (a, why) in [
            (
                alert("incident", "larger", "ineligible", "firing", ""),
                "level",
            ),
            (
                alert("incident", "major", "eligible", "firing", ""),
                "exemption",
            ),
            (
                alert("telemetry_gap", "major", "ineligible", "firing", ""),
                "type",
            ),
            (
                alert(
                    "incident",
                    "extraordinary",
                    "ineligible",
                    "firing",
                    r#","reminder":2"#,
                ),
                "reminders",
            ),
        ] {
            assert!(!is_routed(&s, 1, &a), "{why}");
        }
        let mut other = alert("incident", "major", "ineligible", "firing", "");
        other.participant_id = "Q".into();
        assert!(!is_routed(&s, 1, &other), "participant");
        assert!(is_routed(
            &s,
            0,
            &alert("telemetry_gap", "general", "eligible", "firing", "")
        ));
    }

    #[test]
    fn malformed_alerts_say_what_is_wrong() {
        assert!(payload::parse(b"{")
            .unwrap_err()
            .contains("not a JSON alert"));
        let e = payload::parse(br#"{"alert_id":"x","type":"incident"}"#).unwrap_err();
        assert!(e.contains("participant_id"), "{e}");
        let e = payload::parse(
            br#"{"alert_id":"x","type":"page","participant_id":"P","status":"firing","level":"major","exemption":"eligible"}"#,
        )
        .unwrap_err();
        assert!(e.contains("page"), "{e}");
    }
}
