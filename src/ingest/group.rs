//! The consumer group: subscription, rebalance handling and the main poll loop.
//!
//! The main consumer runs on a thread of its own, because librdkafka calls the rebalance
//! callbacks from inside its poll and a revocation must block there until the partition's
//! worker has drained, flushed its state and committed (otherwise the next owner could start
//! from an older offset while this one still produces). Assignment splits a queue per
//! partition inside the callback, before any message of the partition is fetched, and hands
//! it to a new worker on the async runtime. A message that still reaches the main queue is
//! forwarded to its partition's worker.
//!
//! The map of workers is locked only on rebalance and for such stray messages, never per
//! event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use tokio::sync::{mpsc, watch};

use super::closing::OffThread;
use super::worker::{self, Assignment, Shared, Stop};
use crate::config::TopicSelection;
use crate::telemetry::Health;

struct Handle {
    stop: mpsc::UnboundedSender<Stop>,
    stray: mpsc::UnboundedSender<OwnedMessage>,
    fenced: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

type Workers = Arc<Mutex<HashMap<(String, i32), Handle>>>;

pub struct GroupContext {
    consumer: OnceLock<Weak<StreamConsumer<GroupContext>>>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    workers: Workers,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                // Lost (the session expired): another member may own them already, so
                // this one must neither write their state nor commit their offsets.
                let lost = consumer.assignment_lost();
                tracing::info!(partitions = ?parts, lost, "partitions revoked");
                stop_workers(&self.workers, &parts, self.shared.stop_timeout, lost);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        for e in tpl.elements() {
            let (topic, partition) = (e.topic().to_string(), e.partition());
            let Some(queue) = consumer.split_partition_queue(&topic, partition) else {
                tracing::error!(%topic, partition, "cannot split the partition queue");
                continue;
            };
            let (stop_tx, stop) = mpsc::unbounded_channel();
            let (stray_tx, stray) = mpsc::unbounded_channel();
            let fenced = Arc::new(AtomicBool::new(false));
            let assignment = Assignment {
                consumer: OffThread::new("events consumer", consumer.clone()),
                queue,
                topic: topic.clone(),
                partition,
                stop,
                stray,
                fenced: fenced.clone(),
            };
            tracing::info!(%topic, partition, "partition assigned");
            let task = spawn_supervised(&self.runtime, self.shared.clone(), assignment);
            let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            workers.insert(
                (topic, partition),
                Handle {
                    stop: stop_tx,
                    stray: stray_tx,
                    fenced,
                    task,
                },
            );
        }
    }
}

/// Runs a worker on the runtime and watches it: a worker that panics is logged and
/// counted, readiness turns red, and the daemon is told to exit non-zero (its partitions
/// then go to another member, which resumes from the last committed offset).
fn spawn_supervised(
    runtime: &tokio::runtime::Handle,
    shared: Arc<Shared>,
    a: Assignment<GroupContext>,
) -> tokio::task::AbortHandle {
    let (topic, partition) = (a.topic.clone(), a.partition);
    let task = runtime.spawn(worker::run(shared.clone(), a));
    let abort = task.abort_handle();
    runtime.spawn(async move {
        match task.await {
            Ok(()) => {}
            Err(e) if e.is_cancelled() => {
                tracing::warn!(%topic, partition, "partition worker aborted (fenced)")
            }
            Err(e) => {
                shared
                    .metrics
                    .worker_failures
                    .with_label_values(&["panic"])
                    .inc();
                let why = format!("the worker of {topic}/{partition} panicked: {e}");
                tracing::error!(%topic, partition, error = %e, "partition worker panicked; stopping the daemon");
                shared.health.fail(why);
            }
        }
    });
    abort
}

/// Stops the named workers and waits (blocking) until each has committed or timed out.
/// `lost` partitions are fenced first: their workers leave without writing or committing.
fn stop_workers(workers: &Workers, parts: &[(String, i32)], timeout: Duration, lost: bool) {
    let mut waits = Vec::new();
    {
        let mut map = workers.lock().unwrap_or_else(|p| p.into_inner());
        for key in parts {
            if let Some(h) = map.remove(key) {
                if lost {
                    // Lost: another member may own it already. Fenced before the worker even
                    // reads its stop, so not one more state write or commit goes out.
                    h.fenced.store(true, Ordering::Release);
                }
                let (tx, rx) = std::sync::mpsc::channel();
                if h.stop.send(Stop { reply: tx }).is_ok() {
                    waits.push((key.clone(), rx, h));
                }
            }
        }
    }
    let deadline = std::time::Instant::now() + timeout + Duration::from_secs(1);
    for ((topic, partition), rx, h) in waits {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if rx.recv_timeout(left).is_err() {
            // Fenced and aborted: whatever it still had in hand is never written or
            // committed by it; the next owner resumes from the last committed offset.
            h.fenced.store(true, Ordering::Release);
            h.task.abort();
            tracing::error!(%topic, partition, "worker did not stop in time: fenced and aborted");
        }
    }
}

/// A running consumer group member.
pub struct Group {
    shutdown: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl Group {
    /// Creates the consumer, subscribes, and polls on a thread of its own.
    pub fn start(
        shared: Arc<Shared>,
        topics: TopicSelection,
        health: Arc<Health>,
    ) -> anyhow::Result<Group> {
        let context = GroupContext {
            consumer: OnceLock::new(),
            runtime: tokio::runtime::Handle::current(),
            workers: Arc::default(),
            shared: shared.clone(),
        };
        let consumer: Arc<StreamConsumer<GroupContext>> =
            Arc::new(super::client::consumer(&shared.kafka).create_with_context(context)?);
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        let names: Vec<&str> = match &topics {
            TopicSelection::List(list) => list.iter().map(String::as_str).collect(),
            TopicSelection::Pattern(p) => vec![p.as_str()],
        };
        consumer.subscribe(&names)?;
        let (tx, rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("regwatch-consumer".into())
            .spawn(move || poll_loop(OffThread::new("events consumer", consumer), rx, health))?;
        Ok(Group {
            shutdown: tx,
            thread,
        })
    }

    /// Stops every worker (each drains, flushes and commits), leaves the group, and waits
    /// for the consumer thread.
    pub fn stop(self) {
        let _ = self.shutdown.send(true);
        if self.thread.join().is_err() {
            tracing::error!("consumer thread panicked");
        }
    }
}

fn poll_loop(
    consumer: OffThread<Arc<StreamConsumer<GroupContext>>>,
    mut shutdown: watch::Receiver<bool>,
    health: Arc<Health>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the consumer thread's runtime");
            return;
        }
    };
    rt.block_on(async {
        health.consuming.store(true, Ordering::Relaxed);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                m = consumer.recv() => match m {
                    Ok(m) => forward_stray(&consumer, m.detach()),
                    Err(e) => tracing::warn!(error = %e, "consumer error"),
                },
            }
        }
        health.consuming.store(false, Ordering::Relaxed);
    });
    let ctx = consumer.context();
    let all: Vec<(String, i32)> = ctx
        .workers
        .lock()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    stop_workers(&ctx.workers, &all, ctx.shared.stop_timeout, false);
    consumer.unsubscribe();
    tracing::info!("unsubscribed; leaving the consumer group");
    // The workers are gone (or fenced and aborted), so this is normally the last handle: the
    // close leaves the group at once unless the cluster is unreachable, and waits no longer
    // than a worker's stop. A handle still held elsewhere (a worker's blocking call in
    // hand) closes the consumer, off the runtime, when it is released.
    let timeout = ctx.shared.stop_timeout;
    consumer.close(timeout, |_| {});
}

fn forward_stray(consumer: &StreamConsumer<GroupContext>, m: OwnedMessage) {
    let key = (m.topic().to_string(), m.partition());
    let map = consumer
        .context()
        .workers
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    match map.get(&key) {
        Some(h) => {
            let _ = h.stray.send(m);
        }
        None => {
            tracing::warn!(topic = %key.0, partition = key.1, "message for a partition without a worker")
        }
    }
}
