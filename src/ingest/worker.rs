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

use super::ledger::{Ledger, StateWrite, Step};
use super::output::{self, Delivered, OwnedRecord, Record, Resend, Retry, Stream, Tagged};
use super::state;
use super::telemetry::{Stage, Telemetry};
use super::txn::{StateTxn, TxnError};
use crate::alert::{Alert, Trigger};
use crate::config::KafkaSettings;
use crate::decode::{check_key, decode, Reject};
use crate::registry::Registry;
use crate::score::{Engine, EngineSettings, Outcome, Rules, StateChange};
use crate::telemetry::Metrics;
use crate::time::wall_now;

/// Messages taken from the partition queue in one go when they are already fetched.
const BATCH: usize = 256;

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
    pub tick: Duration,
    /// How long a stop may take to drain, flush and commit.
    pub stop_timeout: Duration,
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
        }
    }
}

struct Worker<C: rdkafka::consumer::ConsumerContext + 'static> {
    shared: Arc<Shared>,
    consumer: Arc<StreamConsumer<C>>,
    topic: String,
    partition: i32,
    engine: Engine,
    ledger: Ledger,
    /// Set by the consumer group when the partition is lost or its stop timed out: from then
    /// on this worker writes no state and commits no offset.
    fenced: Arc<AtomicBool>,
    /// State keys to delete at the next flush (records the restore could not use).
    forget: Vec<String>,
    /// The transactional writer of this partition's snapshots and offsets
    /// (`kafka.transactional_state`), set up before the restore.
    txn: Option<Arc<StateTxn>>,
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
}

/// Blocking work the worker ran in the background, done.
enum Background {
    /// A commit of this offset, and the broker's answer.
    Committed(i64, Result<(), TxnError>),
    /// A snapshot's transaction (records and the offset it covers), and how it ended.
    Snapshot(Vec<StateWrite>, Result<(), TxnError>),
}

/// What the consumer group hands a new worker: its partition, and the channels through
/// which the group talks to it.
pub struct Assignment<C: rdkafka::consumer::ConsumerContext + 'static> {
    pub consumer: Arc<StreamConsumer<C>>,
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
    let mut w = Worker {
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
    };
    metrics.restoring.inc();
    let restored = w.restore(&mut stop).await;
    metrics.restoring.dec();
    let reply = match restored {
        Err(reply) => reply,
        Ok(()) => w.run(&queue, &mut stop, &mut stray).await,
    };
    w.shared.metrics.open_incidents.sub(w.open_reported);
    w.telemetry.withdraw(&w.topic, w.partition);
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
            let read = tokio::task::spawn_blocking(move || {
                // The previous owner is fenced first: what it left open is aborted before
                // the state is read (read_committed), and it can write nothing more.
                let txn = match need_txn {
                    true => Some(StateTxn::init(&k, &topic, partition)?),
                    false => None,
                };
                let loaded = state::read(&k, sp, &topic, partition, Duration::from_secs(30))?;
                anyhow::Ok((txn, loaded))
            });
            let result = tokio::select! {
                s = stop.recv() => return Err(s.map(|s| s.reply)),
                r = read => r,
            };
            match result {
                Ok(Ok((txn, loaded))) => {
                    if let Some(txn) = txn {
                        self.txn = Some(Arc::new(txn));
                    }
                    let n = loaded.records.len();
                    let unreadable = loaded.unreadable.len();
                    let summary = self.engine.restore(wall_now(), loaded.records);
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
            let room = self.ledger.in_flight() < max_in_flight;
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
        self.engine.advance_to(wall_now(), &mut self.alerts);
        self.emit_alerts(None).await;
        self.report_open();
        if self.ledger.is_idle()
            && self.last_flush.elapsed().as_millis() as i64 >= self.shared.kafka.commit_interval_ms
        {
            self.start_flush();
        }
    }

    async fn on_message<M: Message>(&mut self, m: &M) {
        // Yield to the runtime now and then: a partition queue with a backlog is always
        // ready, and must not starve this task's other inputs or the other tasks.
        tokio::task::consume_budget().await;
        self.engine.advance_to(wall_now(), &mut self.alerts);
        // Borrowed, not cloned: an `Arc` clone per event is a contended atomic shared by all
        // workers.
        let registry = &*self.shared.registry;
        let max = self.shared.engine.max_event_bytes;
        let t0 = Instant::now();
        let result = match m.payload() {
            None => Err(Reject::NotJson),
            Some(bytes) => decode(bytes, registry, max).and_then(|event| {
                let t1 = Instant::now();
                self.telemetry.record(Stage::Decode, t1 - t0);
                check_key(m.key(), &registry.get(event.participant).id)?;
                let outcome = self.engine.apply(&event, &mut self.alerts);
                self.telemetry.record(Stage::Score, t1.elapsed());
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
        let written = m.timestamp().to_millis();
        if let Some(ms) = written {
            self.last_message_ms = ms;
        }
        self.emit_alerts(written).await;
        self.ledger.processed(m.offset());
    }

    /// A rejected event: counted, logged, dead-lettered with its reason; processing goes on.
    async fn reject<M: Message>(&mut self, m: &M, reject: &Reject) {
        self.counters.rejected.inc();
        if let Some(i) = Reject::CODES.iter().position(|c| *c == reject.code()) {
            self.counters.reasons[i].inc();
        }
        tracing::debug!(topic = %self.topic, partition = self.partition, offset = m.offset(), reason = reject.code(), "event rejected");
        let mut headers = output::copy_headers(m);
        let text = reject.to_string();
        let offset = m.offset().to_string();
        let partition = m.partition().to_string();
        let at = wall_now().to_string();
        let mut pairs = vec![
            ("regwatch.reason", reject.code()),
            ("regwatch.reason_text", text.as_str()),
            ("regwatch.source_topic", m.topic()),
            ("regwatch.source_partition", partition.as_str()),
            ("regwatch.source_offset", offset.as_str()),
            ("regwatch.rejected_at", at.as_str()),
        ];
        if let Some(field) = reject.field() {
            pairs.push(("regwatch.field", field.as_str()));
        }
        for (key, value) in pairs {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        // An oversized message is kept in part: the dead letter must fit the producer's
        // message limit, or it could never be delivered.
        let mut payload = m.payload();
        let original_size = payload.map_or(0, <[u8]>::len).to_string();
        if let (Reject::TooLarge { limit, .. }, Some(p)) = (reject, payload) {
            payload = Some(&p[..p.len().min(*limit)]);
            headers = headers.insert(Header {
                key: "regwatch.truncated_from",
                value: Some(original_size.as_str()),
            });
        }
        let shared = self.shared.clone();
        let record = Record {
            topic: &shared.kafka.dead_letter_topic,
            partition: None,
            key: m.key().unwrap_or_default(),
            payload,
            headers,
        };
        self.produce(Stream::DeadLetters, record).await;
        self.shared.metrics.dead_letters.inc();
    }

    /// Produces the alerts the engine emitted (keyed by participant). Reminders go to the
    /// reminders topic, with the same headers plus `regwatch.reminder` (their k), and are not
    /// counted as alerts.
    async fn emit_alerts(&mut self, source_ms: Option<i64>) {
        if self.alerts.is_empty() {
            return;
        }
        let alerts = std::mem::take(&mut self.alerts);
        let shared = self.shared.clone();
        for a in &alerts {
            let payload = a.to_json();
            let status = a.status.as_str();
            let kind = match a.alert_type {
                crate::alert::AlertType::Incident => "incident",
                crate::alert::AlertType::TelemetryGap => "telemetry_gap",
            };
            let i = match (a.alert_type, a.status) {
                (crate::alert::AlertType::Incident, crate::alert::AlertStatus::Firing) => 0,
                (crate::alert::AlertType::Incident, crate::alert::AlertStatus::Resolved) => 1,
                (crate::alert::AlertType::TelemetryGap, crate::alert::AlertStatus::Firing) => 2,
                (crate::alert::AlertType::TelemetryGap, crate::alert::AlertStatus::Resolved) => 3,
            };
            // Decided by the trigger alone: a reminder never reaches the alerts topic.
            let reminder = (a.trigger == Trigger::Reminder).then(|| a.reminder.unwrap_or(0));
            if reminder.is_none() {
                self.counters.alerts[i].inc();
                self.telemetry.alert(a.alert_type, a.level);
            } else {
                self.telemetry.reminder();
            }
            let source = source_ms.map(|ms| ms.to_string());
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "regwatch.alert_id",
                    value: Some(a.alert_id.as_str()),
                })
                .insert(Header {
                    key: "regwatch.type",
                    value: Some(kind),
                })
                .insert(Header {
                    key: "regwatch.status",
                    value: Some(status),
                })
                .insert(Header {
                    key: "regwatch.level",
                    value: Some(a.level.as_str()),
                });
            if let Some(s) = &source {
                headers = headers.insert(Header {
                    key: "regwatch.source_timestamp",
                    value: Some(s.as_str()),
                });
            }
            let k = reminder.map(|k| k.to_string());
            let topic = match &k {
                Some(k) => {
                    headers = headers.insert(Header {
                        key: "regwatch.reminder",
                        value: Some(k.as_str()),
                    });
                    &shared.kafka.reminders_topic
                }
                None => &shared.kafka.alerts_topic,
            };
            let record = Record {
                topic,
                partition: None,
                key: a.participant_id.as_bytes(),
                payload: Some(payload.as_bytes()),
                headers,
            };
            self.produce(Stream::Alerts, record).await;
        }
        self.alerts = alerts;
        self.alerts.clear();
    }

    async fn produce(&mut self, stream: Stream, record: Record<'_>) {
        let seq = self.ledger.issue();
        if !self.retries.is_empty() {
            // An earlier record waits to be produced again: this one goes out after it.
            self.retries.hold(Retry {
                seq,
                stream,
                record: OwnedRecord::of(&record),
                not_before: Instant::now(),
            });
            return;
        }
        match output::send(&self.shared.producer, &record).await {
            Ok(future) => self.pending.push(Tagged {
                seq,
                stream,
                future,
                sent: Instant::now(),
            }),
            Err(e) => self.retry_later(seq, stream, OwnedRecord::of(&record), &e.to_string()),
        }
    }

    /// Keeps a record that was not delivered, to produce it again: it stays unacknowledged,
    /// so no flush completes and no offset is committed past it until it is delivered.
    fn retry_later(&mut self, seq: u64, stream: Stream, record: OwnedRecord, error: &str) {
        tracing::warn!(
            stream = stream.as_str(),
            error,
            "record not delivered; producing it again"
        );
        self.shared
            .metrics
            .produce_retries
            .with_label_values(&[stream.as_str()])
            .inc();
        self.retries.hold(Retry {
            seq,
            stream,
            record,
            not_before: Instant::now() + RETRY_BACKOFF,
        });
    }

    /// Produces again, in sequence order, the records whose back-off has passed; stops at
    /// the first that is not due yet or that the producer does not accept.
    async fn retry_due(&mut self) {
        let now = Instant::now();
        while let Some(r) = self.retries.next_due(now) {
            match output::send(&self.shared.producer, &r.record.as_record()).await {
                Ok(future) => self.pending.push(Tagged {
                    seq: r.seq,
                    stream: r.stream,
                    future,
                    sent: Instant::now(),
                }),
                Err(e) => {
                    tracing::warn!(stream = r.stream.as_str(), error = %e, "record still not accepted by the producer");
                    self.retries.hold(Retry {
                        not_before: now + RETRY_BACKOFF * 4,
                        ..r
                    });
                    return;
                }
            }
        }
    }

    async fn delivered(&mut self, seq: u64, stream: Stream, d: Delivered) {
        match d {
            Delivered::Acked => self.ledger.ack(seq),
            Delivered::Failed(e, message) => {
                let record = OwnedRecord::from_message(&message);
                self.retry_later(seq, stream, record, &e.to_string());
            }
            Delivered::Lost => {
                // The producer is gone: the record's fate is unknown, so it stays
                // unacknowledged and nothing after it is committed (the next owner
                // reprocesses from the last committed offset).
                tracing::error!(
                    stream = stream.as_str(),
                    "producer closed before a delivery report"
                );
            }
        }
    }

    /// Takes a snapshot of what changed; it is written once all earlier records are acked.
    fn start_flush(&mut self) {
        self.last_flush = Instant::now();
        let prefix = state::key_prefix(&self.topic, self.partition);
        let mut records: Vec<StateWrite> = std::mem::take(&mut self.forget)
            .into_iter()
            .map(|key| (format!("{prefix}{key}"), None))
            .collect();
        records.extend(self.engine.take_changes().into_iter().map(|c| match c {
            StateChange::Put(r) => {
                let value = serde_json::to_vec(&r).unwrap_or_default();
                (format!("{prefix}{}", r.key()), Some(value))
            }
            StateChange::Evicted {
                participant_id,
                incident_id,
            } => (
                format!(
                    "{prefix}{}",
                    crate::score::incident_key(&participant_id, &incident_id)
                ),
                None,
            ),
        }));
        self.ledger.start_flush(records);
    }

    /// Notices a fence set by the consumer group: from then on nothing is written or
    /// committed for this partition.
    fn check_fence(&mut self) -> bool {
        if !self.ledger.is_fenced() && self.fenced.load(Ordering::Acquire) {
            tracing::warn!(topic = %self.topic, partition = self.partition, "partition fenced: no more state writes or commits from this worker");
            self.ledger.fence();
        }
        self.ledger.is_fenced()
    }

    /// Moves the flush on when its acknowledgements are in; `sync` commits synchronously.
    async fn progress_flush(&mut self, sync: bool) {
        if self.check_fence() {
            return;
        }
        loop {
            match self.ledger.step() {
                Step::Nothing => return,
                Step::Write(records) if self.txn.is_some() => {
                    // Written with the offset it covers in one transaction; the flush goes
                    // on when the transaction has ended (`finished`).
                    self.write_snapshot(records, sync).await;
                    return;
                }
                Step::Write(records) => {
                    let sp = self.state_partition();
                    let n = records.len() as u64;
                    let shared = self.shared.clone();
                    for (key, value) in &records {
                        let record = Record {
                            topic: &shared.kafka.state_topic,
                            partition: Some(sp),
                            key: key.as_bytes(),
                            payload: value.as_deref(),
                            headers: OwnedHeaders::new(),
                        };
                        self.produce(Stream::State, record).await;
                    }
                    self.ledger.written();
                    self.shared.metrics.state_records.inc_by(n);
                }
                Step::Flushed(commit) => {
                    self.shared.metrics.state_flushes.inc();
                    match commit {
                        // Committed by the snapshot's own transaction.
                        Some(offset) if self.txn.is_some() => self.committed(offset, Ok(())),
                        Some(offset) => self.commit(offset, sync).await,
                        None => {}
                    }
                    return;
                }
            }
        }
    }

    fn state_partition(&self) -> i32 {
        state::state_partition(&self.topic, self.partition, self.shared.state_partitions)
    }

    /// Writes a snapshot and commits the offset it covers in one transaction, in the
    /// background (or, with `sync`, waiting for it).
    async fn write_snapshot(&mut self, records: Vec<StateWrite>, sync: bool) {
        let Some(txn) = self.txn.clone() else { return };
        let covers = self.ledger.writing_covers();
        let group = self.consumer.group_metadata();
        let (state_topic, sp) = (
            self.shared.kafka.state_topic.clone(),
            self.state_partition(),
        );
        let topic = self.topic.clone();
        let partition = self.partition;
        let job = move || {
            let result = txn.write(
                &state_topic,
                sp,
                &records,
                (&topic, partition),
                covers,
                group.as_ref(),
            );
            Background::Snapshot(records, result)
        };
        self.run_blocking(job, sync).await;
    }

    /// Runs blocking work off the runtime, one at a time; its end comes to `finished`,
    /// at once with `sync`, otherwise through `background`.
    async fn run_blocking(
        &mut self,
        job: impl FnOnce() -> Background + Send + 'static,
        sync: bool,
    ) {
        if sync {
            if let Ok(done) = tokio::task::spawn_blocking(job).await {
                Box::pin(self.finished(done)).await;
            }
        } else {
            self.busy = true;
            let tx = self.background_tx.clone();
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(job());
            });
        }
    }

    /// Blocking work done in the background has ended.
    async fn finished(&mut self, done: Background) {
        self.busy = false;
        match done {
            Background::Committed(offset, result) => self.committed(offset, result),
            Background::Snapshot(records, Ok(())) => {
                self.ledger.written();
                self.shared
                    .metrics
                    .state_records
                    .inc_by(records.len() as u64);
                self.progress_flush(false).await;
            }
            Background::Snapshot(records, Err(TxnError::Retry(why))) => {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %why, "state snapshot transaction aborted; writing it again");
                self.shared
                    .metrics
                    .produce_retries
                    .with_label_values(&[Stream::State.as_str()])
                    .inc();
                self.unwritten = Some((records, Instant::now() + RETRY_BACKOFF));
            }
            Background::Snapshot(_, Err(TxnError::Fenced(why))) => self.fenced_by_owner(&why),
        }
    }

    /// The broker refused this worker's transaction: a newer owner holds the partition.
    fn fenced_by_owner(&mut self, why: &str) {
        tracing::error!(topic = %self.topic, partition = self.partition, error = %why, "fenced by a newer owner of the partition: no more state writes or commits from this worker");
        self.shared
            .metrics
            .worker_failures
            .with_label_values(&["fenced"])
            .inc();
        self.ledger.fence();
    }

    /// Writes again a snapshot whose transaction was aborted, once its back-off has passed.
    async fn write_unwritten(&mut self, sync: bool) {
        if self.busy || self.check_fence() {
            return;
        }
        if let Some((records, not_before)) = self.unwritten.take() {
            if not_before > Instant::now() && !sync {
                self.unwritten = Some((records, not_before));
                return;
            }
            self.write_snapshot(records, sync).await;
        }
    }

    /// Commits `offset`. It counts only when the broker confirms it: `sync` waits for the
    /// answer; otherwise the commit runs in the background and its answer comes back through
    /// `background` (librdkafka reports no result for an asynchronous manual commit to an
    /// event-based client, so a fire-and-forget commit could never be confirmed). While
    /// other background work is under way none is started: the next flush asks again. With
    /// transactional state the offset goes in a transaction of its own.
    async fn commit(&mut self, offset: i64, sync: bool) {
        if self.check_fence() || (!sync && self.busy) {
            return;
        }
        if let Some(txn) = self.txn.clone() {
            let group = self.consumer.group_metadata();
            let (state_topic, sp) = (
                self.shared.kafka.state_topic.clone(),
                self.state_partition(),
            );
            let topic = self.topic.clone();
            let partition = self.partition;
            let job = move || {
                let result = txn.write(
                    &state_topic,
                    sp,
                    &[],
                    (&topic, partition),
                    Some(offset),
                    group.as_ref(),
                );
                Background::Committed(offset, result)
            };
            self.run_blocking(job, sync).await;
            return;
        }
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&self.topic, self.partition, Offset::Offset(offset))
            .is_err()
        {
            return;
        }
        let consumer = self.consumer.clone();
        let job = move || {
            let result = consumer.commit(&tpl, CommitMode::Sync);
            Background::Committed(offset, result.map_err(|e| TxnError::Retry(e.to_string())))
        };
        self.run_blocking(job, sync).await;
    }

    /// The broker's answer to a commit.
    fn committed(&mut self, offset: i64, result: Result<(), TxnError>) {
        match &result {
            Ok(()) => {}
            Err(TxnError::Retry(e)) => {
                tracing::warn!(topic = %self.topic, partition = self.partition, offset, error = %e, "offset commit failed; the next flush commits again")
            }
            Err(TxnError::Fenced(why)) => self.fenced_by_owner(why),
        }
        self.ledger.commit_result(offset, result.is_ok());
        let label = if result.is_ok() { "ok" } else { "error" };
        self.shared
            .metrics
            .commits
            .with_label_values(&[label])
            .inc();
    }

    /// Drains deliveries, writes a last snapshot and commits synchronously, within the
    /// stop timeout.
    async fn stop(&mut self) {
        let deadline = tokio::time::Instant::now() + self.shared.stop_timeout;
        // Let a flush already under way finish, then take the final one.
        let mut final_started = false;
        loop {
            if self.check_fence() {
                return;
            }
            if self.ledger.is_idle() {
                if final_started {
                    break;
                }
                self.engine.advance_to(wall_now(), &mut self.alerts);
                self.emit_alerts(None).await;
                self.start_flush();
                final_started = true;
                if self.ledger.is_idle() {
                    break;
                }
            }
            self.progress_flush(true).await;
            if self.ledger.is_idle() {
                continue;
            }
            tokio::select! {
                Some((seq, stream, d, _)) = self.pending.next(), if !self.pending.is_empty() => {
                    self.delivered(seq, stream, d).await;
                }
                _ = tokio::time::sleep(RETRY_BACKOFF), if !self.retries.is_empty() => {
                    self.retry_due().await;
                }
                Some(done) = self.background.recv(), if self.busy => self.finished(done).await,
                _ = tokio::time::sleep(RETRY_BACKOFF), if self.unwritten.is_some() => {
                    self.write_unwritten(true).await;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::error!(topic = %self.topic, partition = self.partition, in_flight = self.ledger.in_flight(), "stop timed out before every record was acknowledged; the next owner reprocesses from the last committed offset");
                    self.ledger.fence();
                    return;
                }
            }
        }
        if let Some(offset) = self.ledger.final_commit() {
            self.commit(offset, true).await;
        }
        tracing::info!(topic = %self.topic, partition = self.partition, committed = ?self.ledger.committed(), "partition released");
    }

    /// Messages and seconds behind the partition's high watermark (librdkafka's cached
    /// figure from the last fetch: no request is made).
    fn report_lag(&mut self) {
        let Some((low, high)) =
            cached_watermarks(self.consumer.client(), &self.topic, self.partition)
        else {
            return;
        };
        // Nothing read or committed yet: the log starts at `low` (retention trims it).
        let position = self
            .ledger
            .next_offset()
            .or(self.ledger.committed())
            .unwrap_or(low)
            .max(low);
        let behind = (high - position).max(0);
        let seconds = if behind > 0 && self.last_message_ms > 0 {
            (wall_now().millis() - self.last_message_ms).max(0) as f64 / 1000.0
        } else {
            0.0
        };
        self.telemetry
            .lag(&self.topic, self.partition, behind, seconds);
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

/// The partition's low and high watermarks as librdkafka last saw them in a fetch response
/// (`rd_kafka_get_watermark_offsets`: no request is made, unlike `fetch_watermarks`).
fn cached_watermarks<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
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
