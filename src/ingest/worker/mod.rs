//! A partition worker: the single owner of one event partition's engine state.
//!
//! It restores the partition's state from the state topic, then runs one `select!` over a
//! closed set of inputs (a stop request, delivery acknowledgements, the clock tick, messages
//! of its partition) and calls one method per input. No lock is taken per event: the engine
//! belongs to this task alone.
//!
//! At least once: every alert, reminder and dead letter is numbered (`ledger.rs`); a state
//! flush waits for all earlier records to be acknowledged, then is written with the offset
//! it covers in one transaction (`txn.rs`; without `kafka.transactional_state`: written, and
//! once acknowledged the offset is committed). Blocking work (transactions, commits) runs in
//! the background, one piece at a time, and reports back. A stop (revocation or shutdown)
//! drains deliveries, writes a last flush and commits synchronously.
//!
//! Reminders the engine emits (trigger `reminder`) go to `kafka.reminders_topic`, never to
//! the alerts topic, and are not counted in `regwatch_alerts_total`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use prometheus::IntCounter;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::clock::{Anomaly, PartitionClock};
use super::closing::{OffThread, Runner};
use super::ledger::{Ledger, StateWrite, Step};
use super::output::{self, Delivered, OwnedRecord, Record, Resend, Retry, Stream, Tagged};
use super::state;
use super::telemetry::{Stage, Telemetry};
use super::txn::{StateTxn, TxnError};
use crate::alert::{Alert, Trigger};
use crate::config::KafkaSettings;
use crate::decode::{check_key, decode, Reject};
use crate::registry::Registry;
use crate::score::{Engine, EngineSettings, Outcome, Rules, StateChange, StateRecord};
use crate::telemetry::Metrics;
use crate::time::wall_now;

mod act;
mod emit;
mod flush;
mod history;

/// Messages taken from the partition queue in one go when they are already fetched.
const BATCH: usize = 256;

/// One event in this many has its decode and score stages timed
/// (`regwatch_stage_latency_seconds`): a clock read costs about as much as a tenth of the hot
/// path, so every event timed would slow what is measured.
const STAGE_SAMPLE: u32 = 32;

/// Wait before producing a failed record again.
const RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// What every worker of one daemon shares (read-only).
pub struct Shared {
    pub kafka: KafkaSettings,
    pub engine: EngineSettings,
    pub registry: Arc<Registry>,
    /// The rules in force; a reload sends new ones and every worker regrades its open
    /// incidents under them (`Engine::set_rules`).
    pub rules: tokio::sync::watch::Receiver<Arc<Rules>>,
    /// Questions from the incident API; every worker answers for its own partition.
    pub queries: tokio::sync::broadcast::Sender<IncidentQuery>,
    pub producer: FutureProducer<super::client::Watched>,
    pub metrics: Arc<Metrics>,
    /// Where a fatal failure is reported (the daemon then stops and exits non-zero).
    pub health: Arc<crate::telemetry::Health>,
    pub state_partitions: i32,
    /// Where each participant is heard, shared by this instance's workers.
    pub homes: Arc<super::homes::Homes>,
    pub tick: Duration,
    /// How long a stop may take to drain, flush and commit.
    pub stop_timeout: Duration,
    /// The history topic (`[history]` enabled), and how often a partition's watermark is
    /// written there.
    pub history_topic: Option<String>,
    pub history_watermark_ms: i64,
    /// Partitions of the history topic: a participant's records all go to one, in order.
    pub history_partitions: i32,
    /// This instance's name in watermarks (host and process id).
    pub instance: String,
}

/// A question from the incident API: the open incidents of this worker's engine that match.
#[derive(Clone)]
pub struct IncidentQuery {
    pub participant: Option<String>,
    pub min_level: crate::score::Level,
    pub reply: mpsc::UnboundedSender<Vec<crate::score::IncidentView>>,
}

/// Asks a worker to stop; it replies once its offsets are committed. A worker whose
/// partition was lost is fenced before it gets this, and then writes and commits nothing.
pub struct Stop {
    pub reply: std::sync::mpsc::Sender<()>,
}

/// Pre-resolved metric handles: the hot path only increments.
struct Counters {
    graded: IntCounter,
    heartbeat: IntCounter,
    duplicate: IntCounter,
    after_resolution: IntCounter,
    rejected: IntCounter,
    /// By position in `Reject::CODES`.
    reasons: Vec<IntCounter>,
    /// incident firing, incident resolved, gap firing, gap resolved.
    alerts: [IntCounter; 4],
    /// By position in `Anomaly::ALL`.
    anomalies: [IntCounter; 3],
}

impl Counters {
    fn new(m: &Metrics) -> Counters {
        let e = |o: &str| m.events.with_label_values(&[o]);
        Counters {
            graded: e("graded"),
            heartbeat: e("heartbeat"),
            duplicate: e("duplicate"),
            after_resolution: e("after_resolution"),
            rejected: e("rejected"),
            reasons: Reject::CODES
                .iter()
                .map(|c| m.rejected.with_label_values(&[c]))
                .collect(),
            alerts: [
                ("incident", "firing"),
                ("incident", "resolved"),
                ("telemetry_gap", "firing"),
                ("telemetry_gap", "resolved"),
            ]
            .map(|(t, st)| m.alerts.with_label_values(&[t, st])),
            anomalies: Anomaly::ALL
                .map(|a| m.ops.record_time_anomalies.with_label_values(&[a.as_str()])),
        }
    }
}

struct Worker<C: rdkafka::consumer::ConsumerContext + 'static> {
    shared: Arc<Shared>,
    consumer: OffThread<Arc<StreamConsumer<C>>>,
    topic: String,
    partition: i32,
    engine: Engine,
    ledger: Ledger,
    /// Set by the consumer group when the partition is lost or its stop timed out: from then
    /// on this worker writes no state and commits no offset.
    fenced: Arc<AtomicBool>,
    /// State keys to delete at the next flush (records the restore could not use).
    forget: Vec<String>,
    /// State records to write again, signed, at the next flush (see `state::Loaded::resign`).
    resign: Vec<(String, Vec<u8>)>,
    /// The transactional writer of this partition's snapshots and offsets
    /// (`kafka.transactional_state`), set up before the restore.
    txn: Option<Arc<StateTxn>>,
    /// Runs the blocking calls (restore, commits, snapshot transactions) off the runtime.
    runner: Runner,
    /// Where blocking work done in the background (commits, snapshot transactions) reports.
    background_tx: mpsc::UnboundedSender<Background>,
    background: mpsc::UnboundedReceiver<Background>,
    /// A background commit or snapshot transaction is under way (one at a time, so offsets
    /// reach the group coordinator in order).
    busy: bool,
    /// A snapshot whose transaction was aborted, to write again after a back-off.
    unwritten: Option<(Vec<StateWrite>, Instant)>,
    pending: FuturesUnordered<Tagged>,
    retries: Resend,
    last_flush: Instant,
    alerts: Vec<Alert>,
    counters: Counters,
    open_reported: i64,
    telemetry: Telemetry,
    /// Record timestamp of the last message read (for the lag in seconds).
    last_message_ms: i64,
    /// The partition's event-time clock: the engine's time.
    clock: PartitionClock,
    /// The wall time last read for the clock: read again only for a record not older than
    /// it (a backlog's records are older, so a backlog reads the clock once per batch).
    wall: crate::time::Timestamp,
    /// Events read, to time one in [`STAGE_SAMPLE`].
    sampled: u32,
    /// The topic as librdkafka takes it (for the cached watermarks).
    topic_c: std::ffi::CString,
    /// The participant this partition's topic is bound to, if any (topic binding).
    owner: Option<crate::registry::ParticipantIdx>,
    /// The topic's partition count, to write with the next snapshot (none was recorded).
    record_partitions: Option<i32>,
    /// The group's committed offset when the partition was taken over: where reading
    /// starts, the position until a message is read (`None`: none committed, from the start).
    start_offset: Option<i64>,
    /// This partition as a participant's home (see [`super::homes`]).
    home: super::homes::Home,
    /// By registry position: this partition is the participant's home (claimed).
    claimed: Vec<bool>,
    /// By registry position: a conflict was already logged for the participant.
    conflicted: Vec<bool>,
    /// When this partition's watermark was last written to the history topic.
    last_watermark: Option<Instant>,
    /// How far the partition was graded at the last flush, and the sequence number every
    /// record it vouches for is below: published once they are all acknowledged.
    pending_mark: Option<(history::Mark, u64)>,
}

/// Shows `home` as participant `p`'s home in `regwatch_participant_partitions`.
fn show_home(shared: &Shared, p: crate::registry::ParticipantIdx, home: &super::homes::Home) {
    shared
        .metrics
        .ops
        .participant_partitions
        .with_label_values(&[
            &*shared.registry.get(p).id,
            &*home.topic,
            &home.partition.to_string(),
        ])
        .set(1);
}

/// Blocking work the worker ran in the background, done.
enum Background {
    /// A commit of this offset, and the broker's answer.
    Committed(i64, Result<(), TxnError>),
    /// A snapshot's transaction: its records, and how it ended.
    Snapshot((Vec<StateWrite>, Result<(), TxnError>)),
}

/// What the consumer group hands a new worker: its partition, and the channels through
/// which the group talks to it.
///
/// The worker's handle on the consumer is released off the runtime ([`OffThread`]). The
/// partition queue, which holds a handle too, is dropped before it, in the worker: so it never
/// closes the consumer itself, and its drop (which turns off the queue's wake-up) can never
/// come after the next owner's split of the same partition.
pub struct Assignment<C: rdkafka::consumer::ConsumerContext + 'static> {
    pub consumer: OffThread<Arc<StreamConsumer<C>>>,
    pub queue: StreamPartitionQueue<C>,
    pub topic: String,
    pub partition: i32,
    pub stop: mpsc::UnboundedReceiver<Stop>,
    /// Messages of this partition that arrived on the consumer's main queue before the
    /// partition queue was split.
    pub stray: mpsc::UnboundedReceiver<OwnedMessage>,
    pub fenced: Arc<AtomicBool>,
}

/// Runs a worker until it is stopped.
pub async fn run<C: rdkafka::consumer::ConsumerContext + 'static>(
    shared: Arc<Shared>,
    a: Assignment<C>,
) {
    let Assignment {
        consumer,
        queue,
        topic,
        partition,
        mut stop,
        mut stray,
        fenced,
    } = a;
    let metrics = shared.metrics.clone();
    metrics.partitions.inc();
    let (background_tx, background) = mpsc::unbounded_channel();
    let rules = shared.rules.borrow().clone();
    let topic_c = std::ffi::CString::new(topic.as_str()).unwrap_or_default();
    let owner = shared.registry.owner_of(&topic);
    let home = super::homes::Home {
        topic: topic.as_str().into(),
        partition,
    };
    let participants = shared.registry.len();
    let runner = match Runner::new(format!("rw-{partition}-{topic}")) {
        Ok(r) => r,
        Err(e) => {
            let why = format!("no thread for the worker of {topic}/{partition}: {e}");
            tracing::error!(%topic, partition, error = %e, "cannot start a partition worker; stopping the daemon");
            shared.health.fail(why);
            metrics.partitions.dec();
            return;
        }
    };
    let mut w = Worker {
        runner,
        home,
        claimed: vec![false; participants],
        conflicted: vec![false; participants],
        engine: Engine::new(shared.registry.clone(), rules, shared.engine.clone()),
        counters: Counters::new(&metrics),
        telemetry: Telemetry::new(&metrics, &shared.registry),
        shared,
        consumer,
        topic,
        partition,
        ledger: Ledger::default(),
        fenced,
        forget: Vec::new(),
        resign: Vec::new(),
        txn: None,
        background_tx,
        background,
        busy: false,
        unwritten: None,
        pending: FuturesUnordered::new(),
        retries: Resend::default(),
        last_flush: Instant::now(),
        alerts: Vec::new(),
        open_reported: 0,
        last_message_ms: 0,
        clock: PartitionClock::default(),
        wall: wall_now(),
        sampled: 0,
        topic_c,
        start_offset: None,
        owner,
        record_partitions: None,
        last_watermark: None,
        pending_mark: None,
    };
    // Declared after the worker, so dropped before it even when the task is cancelled (see
    // `Assignment`).
    let queue = queue;
    metrics.restoring.inc();
    let restored = w.restore(&mut stop).await;
    metrics.restoring.dec();
    let reply = match restored {
        Err(reply) => reply,
        Ok(()) => w.run(&queue, &mut stop, &mut stray).await,
    };
    drop(queue);
    w.shared.metrics.open_incidents.sub(w.open_reported);
    w.telemetry.withdraw(&w.topic, w.partition);
    w.give_up_homes();
    metrics.partitions.dec();
    if let Some(reply) = reply {
        let _ = reply.send(());
    }
}

impl<C: rdkafka::consumer::ConsumerContext + 'static> Worker<C> {
    /// Loads the partition's state, retrying until it succeeds or a stop arrives (then the
    /// stop's reply is returned as the error).
    async fn restore(
        &mut self,
        stop: &mut mpsc::UnboundedReceiver<Stop>,
    ) -> Result<(), Option<std::sync::mpsc::Sender<()>>> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let (k, sp, topic, partition) = (
                self.shared.kafka.clone(),
                self.shared.state_partitions,
                self.topic.clone(),
                self.partition,
            );
            let need_txn = k.transactional_state && self.txn.is_none();
            let consumer = self.consumer.clone();
            let read = self.runner.run(move || {
                // The previous owner is fenced first: what it left open is aborted before
                // the state is read (read_committed), and it can write nothing more.
                let txn = match need_txn {
                    true => Some(StateTxn::init(&k, &topic, partition)?),
                    false => None,
                };
                let loaded = state::read(&k, sp, &topic, partition, Duration::from_secs(30))?;
                let start = committed_offset(&*consumer, &topic, partition)?;
                let partitions = partition_count(&*consumer, &topic)?;
                anyhow::Ok((txn, loaded, start, partitions))
            });
            let result = tokio::select! {
                s = stop.recv() => return Err(s.map(|s| s.reply)),
                r = read => r,
            };
            match result {
                Ok(Ok((txn, mut loaded, start, partitions))) => {
                    self.start_offset = start;
                    let recorded = loaded.records.iter().find_map(|r| match r {
                        StateRecord::Topic(t) => Some(t.partitions),
                        _ => None,
                    });
                    match recorded {
                        Some(n) if n != partitions => {
                            // Participants are keyed to partitions by the count: grading on
                            // would split one participant's incidents over two partitions.
                            let why = format!(
                                "topic {} has {partitions} partitions, but its partition {} was graded when it had {n}: participants' events now land on other partitions than their incidents' state. Set the partition count back to {n}, or start a new consumer group (kafka.group_id) and state topic (kafka.state_topic) after the open incidents are resolved",
                                self.topic, self.partition
                            );
                            tracing::error!(topic = %self.topic, partition = self.partition, recorded = n, now = partitions, "the partition count of an events topic changed; stopping the daemon");
                            return Err(self
                                .refuse_state("partition_count_changed", why, stop)
                                .await);
                        }
                        Some(_) => {}
                        None => self.record_partitions = Some(partitions),
                    }
                    loaded
                        .records
                        .retain(|r| !matches!(r, StateRecord::Topic(_)));
                    if let Some(txn) = txn {
                        self.txn = Some(Arc::new(txn));
                    }
                    let n = loaded.records.len();
                    let unreadable = loaded.unreadable.len();
                    if loaded.unauthenticated > 0 {
                        self.shared
                            .metrics
                            .state_unauthenticated
                            .inc_by(loaded.unauthenticated);
                        tracing::error!(topic = %self.topic, partition = self.partition, refused = loaded.unauthenticated, "state records without a valid regwatch.mac were refused: something other than regwatch writes the state topic (check its ACLs), or kafka.record_key changed");
                    }
                    self.resign = std::mem::take(&mut loaded.resign);
                    let summary = self.engine.restore(loaded.records);
                    self.engine.queue_open_views();
                    if let Err(why) = self.claim_restored() {
                        return Err(self.refuse_state("participant_split", why, stop).await);
                    }
                    self.shared.metrics.state_restored.inc_by(n as u64);
                    for problem in &summary.skipped {
                        tracing::warn!(topic = %self.topic, partition = self.partition, %problem, "state record skipped");
                    }
                    // What can never be restored is deleted, so compaction forgets it too.
                    self.forget = loaded.unreadable;
                    self.forget.extend(summary.forgotten);
                    tracing::info!(
                        topic = %self.topic,
                        partition = self.partition,
                        incidents = summary.incidents,
                        participants = summary.participants,
                        unreadable,
                        forgotten = self.forget.len(),
                        "partition state restored"
                    );
                    self.report_open();
                    return Ok(());
                }
                Ok(Err(e)) => {
                    self.shared.metrics.restore_failures.inc();
                    tracing::error!(topic = %self.topic, partition = self.partition, error = %e, retry_in = ?backoff, "state restore failed; the partition is not consumed until it succeeds")
                }
                Err(e) => {
                    self.shared.metrics.restore_failures.inc();
                    tracing::error!(error = %e, retry_in = ?backoff, "state restore task failed")
                }
            }
            tokio::select! {
                s = stop.recv() => return Err(s.map(|s| s.reply)),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// State this partition must not be graded on: counted as a worker failure of `cause`,
    /// reported as the daemon's fatal failure (it stops, saying `why`), and the worker waits
    /// for its stop.
    async fn refuse_state(
        &mut self,
        cause: &str,
        why: String,
        stop: &mut mpsc::UnboundedReceiver<Stop>,
    ) -> Option<std::sync::mpsc::Sender<()>> {
        self.shared
            .metrics
            .worker_failures
            .with_label_values(&[cause])
            .inc();
        self.shared.health.fail(why);
        stop.recv().await.map(|s| s.reply)
    }

    /// Claims every participant the restored state holds incidents of. Another partition of
    /// this instance holding the same participant means two copies of its incidents exist
    /// already: an error saying so (the daemon stops).
    fn claim_restored(&mut self) -> Result<(), String> {
        let held: Vec<_> = self.engine.participants_held().collect();
        for p in held {
            if let Err(home) = self.shared.homes.claim(p, &self.home) {
                let id = &self.shared.registry.get(p).id;
                let why = format!(
                    "participant {id} has incidents in the state of both {home} and {}: its events were split over two partitions (mixed partitioners or keys). Stop its producers, make them use key = participant_id and one partitioner, and delete the state of one partition for it (regwatch keeps no two copies of an incident)",
                    self.home
                );
                tracing::error!(participant = %id, home = %home, partition = %self.home, "participant split over two partitions; stopping the daemon");
                return Err(why);
            }
            self.claimed[p.get()] = true;
            show_home(&self.shared, p, &self.home);
        }
        Ok(())
    }

    /// The partition leaves this instance: its participants are free to be heard elsewhere.
    fn give_up_homes(&mut self) {
        self.shared.homes.release(&self.home);
        let partition = self.partition.to_string();
        for (i, claimed) in self.claimed.iter().enumerate() {
            if *claimed {
                let id = &self
                    .shared
                    .registry
                    .get(crate::registry::ParticipantIdx(i as u32))
                    .id;
                let _ = self
                    .shared
                    .metrics
                    .ops
                    .participant_partitions
                    .remove_label_values(&[&**id, self.topic.as_str(), &partition]);
            }
        }
    }

    async fn run(
        &mut self,
        queue: &StreamPartitionQueue<C>,
        stop: &mut mpsc::UnboundedReceiver<Stop>,
        stray: &mut mpsc::UnboundedReceiver<OwnedMessage>,
    ) -> Option<std::sync::mpsc::Sender<()>> {
        let mut rules = self.shared.rules.clone();
        // A reload while this worker was restoring: take it now.
        let current = rules.borrow_and_update().clone();
        if !Arc::ptr_eq(self.engine.rules(), &current) {
            self.take_rules(current).await;
        }
        let mut queries = self.shared.queries.subscribe();
        let mut tick = tokio::time::interval(self.shared.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_in_flight = self.shared.kafka.max_in_flight_events;
        loop {
            // A fenced worker reads no more: what it would grade could never be committed;
            // the group revokes the partition from it.
            let room = self.ledger.in_flight() < max_in_flight && !self.ledger.is_fenced();
            tokio::select! {
                biased;
                s = stop.recv() => {
                    // No more incident queries: the API must not wait for a stopping worker.
                    drop(queries);
                    self.stop().await;
                    return s.map(|s| s.reply);
                }
                Some((seq, stream, d, sent)) = self.pending.next(), if !self.pending.is_empty() => {
                    if stream == Stream::Alerts && matches!(d, Delivered::Acked) {
                        self.telemetry.record(Stage::Handoff, sent.elapsed());
                    }
                    self.delivered(seq, stream, d).await;
                }
                Some(done) = self.background.recv() => self.finished(done).await,
                _ = tick.tick() => self.on_tick().await,
                Ok(()) = rules.changed() => {
                    let new = rules.borrow_and_update().clone();
                    self.take_rules(new).await;
                }
                Ok(q) = queries.recv() => {
                    let found = self.engine.incident_views(q.participant.as_deref(), q.min_level);
                    let _ = q.reply.send(found);
                }
                Some(m) = stray.recv(), if room => self.on_message(&m).await,
                m = queue.recv(), if room => {
                    match m {
                        Ok(m) => self.on_message(&m).await,
                        Err(e) => tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "consume error"),
                    }
                    // Take what is already fetched without a round through `select!`.
                    for _ in 0..BATCH {
                        if self.ledger.in_flight() >= max_in_flight {
                            break;
                        }
                        match queue.recv().now_or_never() {
                            Some(Ok(m)) => self.on_message(&m).await,
                            _ => break,
                        }
                    }
                    // Caught up with what was fetched: the clock follows wall time again.
                    self.follow_clock();
                    if !self.alerts.is_empty() {
                        self.emit_alerts(None).await;
                    }
                }
            }
            self.progress_flush(false).await;
        }
    }

    /// Regrades the open incidents under reloaded rules and sends what that raised.
    async fn take_rules(&mut self, rules: Arc<Rules>) {
        self.engine.set_rules(rules, &mut self.alerts);
        tracing::info!(topic = %self.topic, partition = self.partition, alerts = self.alerts.len(), "rules reloaded: open incidents regraded");
        self.emit_alerts(None).await;
    }

    async fn on_tick(&mut self) {
        if !self.retries.is_empty() {
            self.retry_due().await;
        }
        if self.unwritten.is_some() {
            self.write_unwritten(false).await;
        }
        self.follow_clock();
        self.emit_alerts(None).await;
        self.publish_mark().await;
        self.report_open();
        if self.ledger.is_idle()
            && self.last_flush.elapsed().as_millis() as i64 >= self.shared.kafka.commit_interval_ms
        {
            self.start_flush(false).await;
        }
    }

    async fn on_message<M: Message>(&mut self, m: &M) {
        // Yield to the runtime now and then: a partition queue with a backlog is always
        // ready, and must not starve this task's other inputs or the other tasks.
        tokio::task::consume_budget().await;
        // The record's own time first: a backlog is graded as it happened. The clock's
        // verdict on a record older than the wall time last read is the same with a fresher
        // read (wall time only grows), so the wall clock is read only for newer records.
        let ts = m.timestamp().to_millis();
        if ts.is_none_or(|t| t > self.wall.millis()) {
            self.wall = wall_now();
        }
        let (at, anomaly) = self.clock.record(ts, self.wall);
        if let Some(a) = anomaly {
            self.counters.anomalies[a as usize].inc();
        }
        self.engine.advance_to(at, &mut self.alerts);
        // A person's action rides the partition like an event (`act.rs`); everything else
        // is a participant's event.
        if act::is_action(m) {
            self.on_action(m).await;
        } else {
            self.grade(m).await;
        }
        let written = ts;
        if let Some(ms) = written {
            self.last_message_ms = ms;
        }
        self.emit_alerts(written).await;
        self.ledger.processed(m.offset());
    }

    /// Decodes, checks and grades one event, or rejects it (counted, dead-lettered).
    async fn grade<M: Message>(&mut self, m: &M) {
        // Borrowed, not cloned: an `Arc` clone per event is a contended atomic shared by all
        // workers.
        let registry = &*self.shared.registry;
        let max = self.shared.engine.max_event_bytes;
        self.sampled = self.sampled.wrapping_add(1);
        let t0 = self.sampled.is_multiple_of(STAGE_SAMPLE).then(Instant::now);
        let result = match m.payload() {
            None => Err(Reject::NotJson),
            Some(bytes) => decode(bytes, registry, max).and_then(|event| {
                let t1 = t0.map(|t0| {
                    let t1 = Instant::now();
                    self.telemetry.record(Stage::Decode, t1 - t0);
                    t1
                });
                check_key(m.key(), &registry.get(event.participant).id)?;
                if !registry.may_speak(self.owner, event.participant) {
                    return Err(Reject::TopicMismatch);
                }
                let p = event.participant.get();
                if !self.claimed[p] {
                    match self.shared.homes.claim(event.participant, &self.home) {
                        Ok(()) => {
                            self.claimed[p] = true;
                            show_home(&self.shared, event.participant, &self.home);
                        }
                        Err(home) => {
                            if !std::mem::replace(&mut self.conflicted[p], true) {
                                tracing::error!(participant = %registry.get(event.participant).id, topic = %self.topic, partition = self.partition, home = %home, "a participant's events arrive on two partitions (producers with different partitioners or keys); refused here as partition_conflict and dead-lettered: make every producer of this participant use key = participant_id and one partitioner, then redrive the dead letters");
                            }
                            return Err(Reject::PartitionConflict {
                                home: home.partition,
                            });
                        }
                    }
                }
                let outcome = self.engine.apply(&event, &mut self.alerts);
                if let Some(t1) = t1 {
                    self.telemetry.record(Stage::Score, t1.elapsed());
                }
                outcome.map(|o| (event.participant, event.kind, o))
            }),
        };
        match result {
            Ok((p, kind, outcome)) => {
                match outcome {
                    Outcome::Graded => self.counters.graded.inc(),
                    Outcome::Heartbeat => self.counters.heartbeat.inc(),
                    Outcome::Duplicate => self.counters.duplicate.inc(),
                    Outcome::AfterResolution => self.counters.after_resolution.inc(),
                }
                self.telemetry.event(p, kind, outcome);
            }
            Err(reject) => self.reject(m, &reject).await,
        }
    }

    /// The consumer's position in the partition and the high watermark, as librdkafka last
    /// saw it in a fetch response (no request is made); `None` before the first fetch.
    fn position(&self) -> Option<(i64, i64)> {
        let (low, high) = cached_watermarks(self.consumer.client(), &self.topic_c, self.partition)?;
        // Nothing read or committed yet: the log starts at `low` (retention trims it).
        let mut position = self
            .ledger
            .next_offset()
            .or(self.ledger.committed())
            .or(self.start_offset)
            .unwrap_or(low)
            .max(low);
        // A transaction's commit or abort marker is an offset no message is read at: a
        // partition whose last record was written in a transaction (an action, or a
        // participant's exactly-once producer) would never look caught up, and its clock
        // would stop. librdkafka's own position steps over the markers.
        if position < high {
            if let Some(read) =
                consumer_position(self.consumer.client(), &self.topic_c, self.partition)
            {
                position = position.max(read.min(high));
            }
        }
        Some((position, high))
    }

    /// Moves the engine clock to the partition clock: wall time once the consumer has read
    /// up to the high watermark, else the newest record time consumed. Not knowing the
    /// watermark yet (no fetch answered since the partition was assigned) counts as behind.
    fn follow_clock(&mut self) {
        let caught_up = self.position().is_some_and(|(pos, high)| pos >= high);
        if let Some(now) = self.clock.now(caught_up, wall_now()) {
            self.engine.advance_to(now, &mut self.alerts);
        }
    }

    /// Messages and seconds behind the partition's high watermark, and how far the
    /// partition's clock is behind wall time.
    fn report_lag(&mut self) {
        let Some((position, high)) = self.position() else {
            return;
        };
        let behind = (high - position).max(0);
        let seconds = if behind > 0 && self.last_message_ms > 0 {
            (wall_now().millis() - self.last_message_ms).max(0) as f64 / 1000.0
        } else {
            0.0
        };
        let clock_lag = self.engine.clock().map_or(0.0, |c| {
            (wall_now().millis() - c.millis()).max(0) as f64 / 1000.0
        });
        self.telemetry
            .lag(&self.topic, self.partition, behind, seconds, clock_lag);
    }

    fn report_open(&mut self) {
        self.telemetry.publish(&self.engine);
        self.report_lag();
        let open = self.engine.open_incidents() as i64;
        if open != self.open_reported {
            self.shared
                .metrics
                .open_incidents
                .add(open - self.open_reported);
            self.open_reported = open;
        }
    }
}

/// How many partitions a topic has now (blocking: asks the cluster).
fn partition_count<C: rdkafka::consumer::ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
) -> anyhow::Result<i32> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let n = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    anyhow::ensure!(
        n > 0,
        "topic {topic}: no partitions in the cluster's metadata"
    );
    Ok(n as i32)
}

/// The group's committed offset of a partition (blocking: asks the group coordinator).
fn committed_offset<C: rdkafka::consumer::ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Option<i64>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(committed
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        }))
}

/// The consumer's position in the partition as librdkafka keeps it (`rd_kafka_position`: the
/// offset after the last message handed out, past any transaction markers behind it).
fn consumer_position<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &std::ffi::CStr,
    partition: i32,
) -> Option<i64> {
    use rdkafka::bindings as rd;
    // SAFETY: the list is created, used and destroyed here; `tp` points into it while it
    // lives; the client pointer is live for the borrow of `client`.
    unsafe {
        let list = rd::rd_kafka_topic_partition_list_new(1);
        if list.is_null() {
            return None;
        }
        let tp = rd::rd_kafka_topic_partition_list_add(list, topic.as_ptr(), partition);
        let err = rd::rd_kafka_position(client.native_ptr(), list);
        let offset = if tp.is_null() { -1 } else { (*tp).offset };
        rd::rd_kafka_topic_partition_list_destroy(list);
        (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && offset >= 0)
            .then_some(offset)
    }
}

/// The partition's low and high watermarks as librdkafka last saw them in a fetch response
/// (`rd_kafka_get_watermark_offsets`: no request is made, unlike `fetch_watermarks`).
fn cached_watermarks<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &std::ffi::CStr,
    partition: i32,
) -> Option<(i64, i64)> {
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is live for the borrow of `client`; the topic is a valid
    // NUL-terminated string; low and high are valid out-pointers.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            client.native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low.max(0), high))
}
