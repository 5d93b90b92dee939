//! A daemon stopping while its cluster is gone. The stop ends within its grace and nothing
//! the daemon leaves behind holds its runtime: librdkafka's consumer close can block without
//! end against dead brokers, so regwatch closes consumers off the runtime, within a bound
//! (`src/ingest/closing.rs`). Before that, a daemon killed with its cluster down never
//! exited, and a failing test hung the suite instead of failing.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use regwatch::config::Config;

use crate::broker::{produce, Broker};
use crate::kafka::config_text;
use crate::webhook::{Hook, NEW_KEY};

const GRACE_S: u64 = 5;

/// How a test lets go of its daemon.
#[derive(Clone, Copy)]
enum Leave {
    /// `stop()`, as SIGTERM does.
    Stop,
    /// Dropped without a stop, as a panicking test drops it.
    Drop,
}

struct Left {
    /// The stop's outcome (`None` for a drop).
    stopped: Option<Result<(), String>>,
    stop_took: Duration,
    /// How long the runtime took to shut down once the daemon was let go.
    release_took: Duration,
}

/// Runs a daemon with a webhook receiver until it has delivered an alert (its consumer
/// groups joined), SIGKILLs the broker, lets go of the daemon as `leave` says and drops the
/// runtime. Everything runs on a thread of its own, so that a hang fails the test.
fn kill_the_cluster_then(leave: Leave, name: &'static str) -> Left {
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let broker = Broker::start();
        broker.create_topic(&format!("{name}.events"), 3);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let hook = rt.block_on(Hook::up());
        let text = format!(
            "{}\n[[delivery.receivers]]\nname = \"oncall\"\nurl = \"{}\"\nsigning_keys = [{{ id = \"t1\", secret = \"{NEW_KEY}\" }}]\n",
            config_text(&broker, name, 3)
                .replace("shutdown_grace = \"15s\"", &format!("shutdown_grace = \"{GRACE_S}s\"")),
            hook.url()
        );
        let cfg = Config::from_toml(&text, None, false).expect("test config");
        let daemon = rt
            .block_on(regwatch::app::spawn(cfg))
            .expect("daemon starts");
        let mut seq = 0;
        let outage = crate::kafka::event(
            serde_json::json!({"participant_id": "P2", "kind": "infosec", "incident_id": "O1",
                "category": "outage", "system": "trading", "scope": "full",
                "started_at": crate::kafka::ago(31.0)}),
            &mut seq,
        );
        rt.block_on(async {
            produce(&broker.producer(), &format!("{name}.events"), &[outage]).await;
            hook.wait_for("the alert", Duration::from_secs(90), |_| {
                !hook.delivered().is_empty()
            })
            .await;
        });
        broker.kill(1);
        let t = Instant::now();
        let stopped = match leave {
            Leave::Stop => Some(rt.block_on(daemon.stop()).map_err(|e| format!("{e:#}"))),
            Leave::Drop => {
                drop(daemon);
                None
            }
        };
        let stop_took = t.elapsed();
        let t = Instant::now();
        drop(hook);
        drop(rt);
        let _ = done_tx.send(Left {
            stopped,
            stop_took,
            release_took: t.elapsed(),
        });
        drop(broker);
    });
    done.recv_timeout(Duration::from_secs(240))
        .expect("the daemon let go of its runtime (a hang here is the defect under test)")
}

#[test]
fn a_daemon_stopped_with_its_cluster_dead_stops_within_its_grace_and_releases_its_runtime() {
    let left = kill_the_cluster_then(Leave::Stop, "gonestop");
    // The drain cannot flush to a dead cluster: the stop says so, in time.
    let bound = Duration::from_secs(2 * GRACE_S + 20);
    assert!(
        left.stop_took < bound,
        "the stop took {:?} (grace {GRACE_S}s): {:?}",
        left.stop_took,
        left.stopped
    );
    assert!(left.stopped.is_some());
    // Only calls bounded by the grace are left to end (the history reader's last read).
    assert!(
        left.release_took < Duration::from_secs(30),
        "the runtime was held for {:?} after the stop",
        left.release_took
    );
}

#[test]
fn a_daemon_dropped_with_its_cluster_dead_releases_its_runtime() {
    let left = kill_the_cluster_then(Leave::Drop, "gonedrop");
    assert!(left.stopped.is_none());
    assert!(
        left.release_took < Duration::from_secs(90),
        "the runtime was held for {:?} after the daemon was dropped",
        left.release_took
    );
}
