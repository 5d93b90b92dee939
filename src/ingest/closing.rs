//! Kafka calls that can block without end run off the async runtime, and are never waited
//! for without a bound: closing a consumer ([`OffThread`]) and a worker's blocking calls
//! ([`Runner`]).
//!
//! rdkafka closes a consumer in its `Drop`: it leaves the group and polls until librdkafka
//! says the consumer is closed. While the cluster is unreachable that can take
//! `session.timeout.ms`, and when brokers die in the middle of it librdkafka may never say
//! so (librdkafka issues 625 and 1002, confluent-kafka-python 1667). The drop happens
//! wherever the last handle is released: a runtime worker thread, a task cancelled at
//! shutdown, a thread the daemon joins. Left there, a daemon stopped during a cluster outage
//! would never exit, and a process hosting daemons on its own runtime (the demo, the tests)
//! would hang when that runtime shuts down.
//!
//! [`OffThread`] owns a consumer and releases it on a detached thread of its own, so
//! releasing it never blocks the releasing thread; [`OffThread::close`] does the same and
//! waits at most a bound, so a clean stop still commits and leaves the group before the
//! process exits.
//!
//! The same holds for a worker's snapshot transactions and commits: librdkafka's
//! `send_offsets_to_transaction` does not return, whatever its timeout, while the
//! transaction coordinator is gone. Run on the runtime's blocking pool, such a call held the
//! runtime's shutdown for as long as the outage lasted; a [`Runner`] runs them on a detached
//! thread of the worker's own instead.

use std::ops::Deref;
use std::sync::mpsc;
use std::time::Duration;

/// A client released on a thread of its own. Dereferences to the client.
pub struct OffThread<T: Send + 'static> {
    /// `None` only once released (by `close` or `drop`).
    inner: Option<T>,
    what: &'static str,
}

impl<T: Send + 'static> OffThread<T> {
    /// `what` names the client in the log when its close overruns.
    pub fn new(what: &'static str, inner: T) -> OffThread<T> {
        OffThread {
            inner: Some(inner),
            what,
        }
    }

    /// Runs `last` on the client (a final commit, say), then releases it, both on a thread
    /// of their own; waits for them at most `within`. Returns whether they finished; if not,
    /// they go on in the background and the caller is not held.
    pub fn close(mut self, within: Duration, last: impl FnOnce(&T) + Send + 'static) -> bool {
        let Some(inner) = self.inner.take() else {
            return true;
        };
        let (done_tx, done) = mpsc::channel();
        release(self.what, inner, last, Some(done_tx));
        let finished = done.recv_timeout(within).is_ok();
        if !finished {
            tracing::warn!(
                client = self.what,
                waited_ms = within.as_millis() as u64,
                "the Kafka client did not close in time (is the cluster reachable?); it goes on closing in the background"
            );
        }
        finished
    }
}

/// Hands `inner` to a [`detached`] thread that runs `last`, drops it, then says so on
/// `done`. Should the thread not start (the process is out of threads), the client is
/// dropped here with the job: blocking is then better than leaking a group member.
fn release<T: Send + 'static>(
    what: &'static str,
    inner: T,
    last: impl FnOnce(&T) + Send + 'static,
    done: Option<mpsc::Sender<()>>,
) {
    drop(detached(what, move || {
        last(&inner);
        drop(inner);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }));
}

impl<T: Send + 'static> Deref for OffThread<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.inner
            .as_ref()
            .expect("an OffThread's client is present until it is released")
    }
}

impl<T: Send + 'static> Drop for OffThread<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            release(self.what, inner, |_| {}, None);
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs one blocking call on a detached thread of its own named `name` (for rare calls: a
/// consumer's close, an operator's action; a worker's go through its [`Runner`]). The
/// result comes on the receiver, which is closed without one if the call panicked or no
/// thread could start (the call is then dropped unrun).
pub fn detached<R: Send + 'static>(
    name: &str,
    job: impl FnOnce() -> R + Send + 'static,
) -> tokio::sync::oneshot::Receiver<R> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Err(e) = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(job());
        })
    {
        tracing::error!(error = %e, call = name, "no thread for a blocking Kafka call: not run");
    }
    rx
}

/// A detached thread that runs one worker's blocking calls in order, one at a time. A call
/// that never returns holds that thread only; the thread ends once the [`Runner`] is dropped
/// and the call in hand has returned.
pub struct Runner {
    jobs: mpsc::Sender<Job>,
}

impl Runner {
    pub fn new(name: String) -> std::io::Result<Runner> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name(name).spawn(move || {
            for job in rx {
                // A panicking call is the caller's to see (its answer never comes); the
                // thread stays for the next.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })?;
        Ok(Runner { jobs })
    }

    /// Queues `job`; its result comes on the receiver (closed without one if it panicked).
    pub fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> tokio::sync::oneshot::Receiver<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.jobs.send(Box::new(move || {
            let _ = tx.send(job());
        }));
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    /// Blocks its drop for `hold`, as a consumer closing against a dead cluster does.
    struct Slow {
        hold: Duration,
        dropped: Arc<AtomicBool>,
    }

    impl Drop for Slow {
        fn drop(&mut self) {
            std::thread::sleep(self.hold);
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    fn slow(hold: Duration) -> (OffThread<Slow>, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let c = OffThread::new(
            "test",
            Slow {
                hold,
                dropped: dropped.clone(),
            },
        );
        (c, dropped)
    }

    #[test]
    fn dropping_never_blocks_the_dropping_thread() {
        let (c, dropped) = slow(Duration::from_millis(300));
        let t = Instant::now();
        drop(c);
        assert!(t.elapsed() < Duration::from_millis(250));
        assert!(!dropped.load(Ordering::SeqCst), "released elsewhere");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the client is released in the end"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn close_waits_for_a_quick_close_and_runs_the_last_step_first() {
        let (c, dropped) = slow(Duration::from_millis(10));
        let saw_open = Arc::new(AtomicBool::new(false));
        let s = saw_open.clone();
        let d = dropped.clone();
        assert!(c.close(Duration::from_secs(10), move |_| {
            s.store(!d.load(Ordering::SeqCst), Ordering::SeqCst)
        }));
        assert!(dropped.load(Ordering::SeqCst));
        assert!(
            saw_open.load(Ordering::SeqCst),
            "the last step sees the open client"
        );
    }

    #[test]
    fn a_runner_runs_jobs_in_order_and_survives_a_panic() {
        let r = Runner::new("test-runner".into()).unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let o = order.clone();
        let first = r.run(move || {
            std::thread::sleep(Duration::from_millis(50));
            o.lock().unwrap().push(1);
        });
        let panicked = r.run(|| -> u8 { panic!("a job that panics") });
        let o = order.clone();
        let third = r.run(move || {
            o.lock().unwrap().push(3);
            7
        });
        assert!(first.blocking_recv().is_ok());
        assert!(panicked.blocking_recv().is_err(), "no answer from a panic");
        assert_eq!(third.blocking_recv(), Ok(7));
        assert_eq!(*order.lock().unwrap(), vec![1, 3]);
    }

    #[test]
    fn a_job_that_never_returns_does_not_hold_a_runtime_shutdown() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let r = Runner::new("test-runner".into()).unwrap();
        let (_hold, held) = mpsc::channel::<()>();
        let never = r.run(move || held.recv().is_ok());
        rt.spawn(async move {
            let _ = never.await;
        });
        let t = Instant::now();
        drop(rt);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn close_gives_up_waiting_at_its_bound() {
        let (c, dropped) = slow(Duration::from_secs(2));
        let t = Instant::now();
        assert!(!c.close(Duration::from_millis(100), |_| {}));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(!dropped.load(Ordering::SeqCst));
    }
}
