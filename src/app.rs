//! The daemon's lifecycle: build the stages, run until the shutdown signal, drain within the
//! grace period. `run` takes its shutdown trigger as a parameter so tests drive it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, Producer};

use crate::config::Config;
use crate::delivery::Outbox;
use crate::ingest::{client, closing::OffThread, group::Group, worker::Shared};
use crate::score::ClockMode;
use crate::telemetry::{self, Health, Metrics};

/// What a running daemon exposes to its caller.
pub struct Running {
    pub metrics: Arc<Metrics>,
    /// Where `/metrics` listens (resolved when the configuration asked for port 0).
    pub http: Option<SocketAddr>,
    /// Asks for a rules reload, as SIGHUP does.
    pub reload: tokio::sync::mpsc::UnboundedSender<()>,
}

/// A daemon running on the current runtime (the demo and the tests drive it this way).
pub struct Spawned {
    pub running: Running,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Spawned {
    /// Signals shutdown and waits for the drain; its result is the daemon's.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// Starts [`run`] on a task and waits until it is running (or returns why it could not start).
pub async fn spawn(config: Config) -> anyhow::Result<Spawned> {
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run(
        config,
        async {
            let _ = stop_rx.await;
        },
        Some(started_tx),
    ));
    match started_rx.await {
        Ok(running) => Ok(Spawned {
            running,
            stop,
            task,
        }),
        Err(_) => match task.await? {
            Err(e) => Err(e.context("the daemon did not start")),
            Ok(()) => Err(anyhow::anyhow!("the daemon stopped before it started")),
        },
    }
}

/// Runs the daemon until `shutdown` completes, then drains. Returns an error if start-up
/// fails or the drain does not finish within `daemon.shutdown_grace`.
pub async fn run(
    mut config: Config,
    shutdown: impl std::future::Future<Output = ()>,
    started: Option<tokio::sync::oneshot::Sender<Running>>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    metrics.touch_participants(&config.registry);
    metrics
        .ops
        .set_config(&config.digest, config.rules.digest());
    let health = Arc::new(Health::default());
    let (queries, _) = tokio::sync::broadcast::channel(16);
    let (rules_tx, rules_rx) = tokio::sync::watch::channel(Arc::new(config.rules.clone()));
    let desk = config
        .history
        .enabled
        .then(|| Arc::new(crate::desk::Desk::new(config.history.clone())));
    let actions = Arc::new(crate::actions::Sink::new(
        &config.kafka,
        config
            .delivery
            .receivers
            .iter()
            .map(|r| r.name.clone())
            .collect(),
        instance_name(),
    )?);
    let (http_stop, http_addr) = start_http(
        &config,
        metrics.clone(),
        health.clone(),
        queries.clone(),
        desk.clone(),
        rules_rx.clone(),
        actions.clone(),
    )
    .await?;

    let k = &config.kafka;
    let brokers = {
        let k = k.clone();
        tokio::task::spawn_blocking(move || client::preflight(&k, Duration::from_secs(15)))
            .await??
    };
    if k.create_topics {
        retry_transient("creating regwatch's topics", || {
            client::ensure_topics(k, brokers)
        })
        .await?;
        let bound: Vec<&str> = config.registry.bound_topics().collect();
        retry_transient("creating the participants' bound topics", || {
            client::ensure_bound_topics(k, brokers, &bound)
        })
        .await?;
    }
    let state_partitions = partition_count(&config, &config.kafka.state_topic, 30).await?;
    let history_partitions = match config.history.enabled {
        true => history_partitions(&config, brokers).await,
        false => 0,
    };
    let history = history_partitions > 0;
    if !history {
        if let Some(desk) = &desk {
            desk.turn_off();
        }
    }
    if config.kafka.record_key.is_none() && !config.kafka.trust_internal_topics {
        let found = std::sync::Mutex::new(None);
        retry_transient("reading the deployment's record key", || async {
            let k = config.kafka.clone();
            let key = tokio::task::spawn_blocking(move || {
                crate::ingest::trust::deployment_key(&k, Duration::from_secs(30))
            })
            .await??;
            *found.lock().unwrap_or_else(|p| p.into_inner()) = Some(key);
            Ok(())
        })
        .await?;
        config.kafka.record_key = found.into_inner().unwrap_or_else(|p| p.into_inner());
    }
    let _ = actions.key.set(config.kafka.record_key.clone());
    let k = &config.kafka;
    let producer: FutureProducer<client::Watched> =
        client::producer(k).create_with_context(client::Watched {
            health: health.clone(),
            metrics: metrics.clone(),
        })?;
    let mut engine = config.engine.clone();
    engine.clock = ClockMode::External;
    engine.watch_all_from_start = false;
    engine.track_changes = true;
    engine.record_history = history;
    let grace = Duration::from_millis(config.daemon.shutdown_grace_ms.max(0) as u64);
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
    // Registered here, before anything else runs: a SIGHUP from now on reloads, never kills.
    #[cfg(unix)]
    let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: rules reload only on request");
            None
        }
    };
    #[cfg(not(unix))]
    let hangup: Option<Hangup> = None;
    let registry = Arc::new(config.registry);
    let reloader = tokio::spawn(reload_rules(
        hangup,
        RulesSource {
            path: config.rules_path.clone(),
            calendars: config.calendars_path.clone(),
            registry: registry.clone(),
            watch: Duration::from_millis(config.rules_watch_ms.max(0) as u64),
            config_digest: config.digest.clone(),
        },
        rules_tx,
        reload_rx,
        metrics.clone(),
    ));
    let prober = tokio::spawn(probe_broker(k.clone(), metrics.clone()));
    let coverage = tokio::spawn(crate::telemetry::coverage::watch(
        rules_rx.clone(),
        registry.clone(),
        metrics.clone(),
    ));
    let homes = Arc::new(crate::ingest::homes::Homes::new(registry.len()));
    let shared = Arc::new(Shared {
        homes,
        kafka: k.clone(),
        engine,
        registry,
        rules: rules_rx,
        queries,
        producer: producer.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        state_partitions,
        tick: Duration::from_millis(config.daemon.tick_ms as u64),
        stop_timeout: grace,
        history_topic: history.then(|| config.history.topic.clone()),
        history_watermark_ms: (config.history.stale_after_ms / 3).max(1_000),
        history_partitions,
        instance: instance_name(),
    });
    let desk_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let desk_reader = desk.as_ref().filter(|_| history).map(|desk| {
        crate::desk::reader::spawn(
            k.clone(),
            config.history.topic.clone(),
            desk.clone(),
            metrics.clone(),
            desk_stop.clone(),
        )
    });
    let group = Group::start(shared, k.topics.clone(), health.clone())?;
    let outbox = if config.delivery.enabled() {
        if k.create_topics {
            let name = &config.delivery.dead_letter_topic;
            retry_transient("creating the alert dead-letter topic", || {
                client::ensure_topic(k, brokers, name)
            })
            .await?;
        }
        let topics = [k.alerts_topic.as_str(), k.reminders_topic.as_str()];
        Some(Outbox::start(
            k,
            &config.delivery,
            &topics,
            &metrics,
            grace,
        )?)
    } else {
        None
    };
    tracing::info!(brokers = %k.brokers, group = %k.group_id, topics = ?k.topics, "regwatch running");
    if k.trust_internal_topics {
        tracing::warn!("kafka.insecure_trust_internal_topics: records on the alerts, reminders and state topics are trusted as regwatch's own (README \"Threat model\")");
    }
    if let Some(tx) = started {
        let _ = tx.send(Running {
            metrics: metrics.clone(),
            http: http_addr,
            reload: reload_tx,
        });
    }

    let failure = tokio::select! {
        _ = shutdown => None,
        why = health.failed() => Some(why),
    };
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining partitions"
    );
    let drain = tokio::task::spawn_blocking(move || {
        group.stop();
        producer.flush(grace)
    });
    let outcome = tokio::time::timeout(grace + Duration::from_secs(2), async {
        if let Some(outbox) = outbox {
            outbox.stop().await;
        }
        drain.await
    })
    .await;
    let _ = http_stop.send(());
    desk_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(reader) = desk_reader {
        let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    }
    reloader.abort();
    prober.abort();
    coverage.abort();
    if let Some(why) = failure {
        anyhow::bail!("stopped after a fatal failure: {why}");
    }
    match outcome {
        Ok(Ok(Ok(()))) => {
            tracing::info!("drained; bye");
            Ok(())
        }
        Ok(Ok(Err(e))) => anyhow::bail!("producer flush incomplete at shutdown: {e}"),
        Ok(Err(e)) => anyhow::bail!("drain task failed: {e}"),
        Err(_) => anyhow::bail!("shutdown grace of {grace:?} exceeded"),
    }
}

async fn start_http(
    config: &Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    queries: tokio::sync::broadcast::Sender<crate::ingest::worker::IncidentQuery>,
    desk: Option<Arc<crate::desk::Desk>>,
    rules: tokio::sync::watch::Receiver<Arc<crate::score::Rules>>,
    actions: Arc<crate::actions::Sink>,
) -> anyhow::Result<(tokio::sync::oneshot::Sender<()>, Option<SocketAddr>)> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let Some(addr) = config.http.listen else {
        return Ok((stop_tx, None));
    };
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
    let settings = config.http.clone();
    let api = telemetry::DeskApi {
        desk,
        registry: Arc::new(config.registry.clone()),
        rules,
        actions: Some(actions),
    };
    tokio::spawn(async move {
        let stop = async {
            let _ = stop_rx.await;
        };
        if let Err(e) =
            telemetry::serve(&settings, metrics, health, queries, api, bound_tx, stop).await
        {
            tracing::error!(%addr, error = %e, "HTTP endpoint failed");
            let _ = failed_tx.send(e.to_string());
        }
    });
    let bound = match bound_rx.await {
        Ok(bound) => bound,
        Err(_) => {
            let why = failed_rx.await.unwrap_or_default();
            anyhow::bail!("cannot serve {addr} (http): {why}");
        }
    };
    let tls = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(%bound, scheme = tls, tokens = config.http.tokens.len(), "serving /metrics, /healthz, /readyz, /incidents, /participants, /report, /board");
    Ok((stop_tx, Some(bound)))
}

/// The history topic's partition count, creating it first with `kafka.create_topics`; 0
/// when it cannot be had (created or found): the daemon then runs without the history (an
/// existing deployment whose ACLs or topics predate it keeps running, and `/incidents`
/// answers for each instance's own partitions), saying so loudly.
async fn history_partitions(config: &Config, brokers: usize) -> i32 {
    let h = &config.history;
    let k = &config.kafka;
    if k.create_topics {
        if let Err(e) = retry_transient("creating the history topic", || {
            client::ensure_history_topic(k, brokers, h)
        })
        .await
        {
            tracing::error!(topic = %h.topic, error = %e, "cannot create the history topic: running WITHOUT the history (no fleet-wide /incidents, timelines, exports or board); grant regwatch Create on it (regwatch acls) or create it (README \"The supervisors' desk\")");
            return 0;
        }
    }
    let found = partition_count(config, &h.topic, 10).await.ok();
    if found.is_none() {
        tracing::error!(topic = %h.topic, "the history topic does not exist: running WITHOUT the history (no fleet-wide /incidents, timelines, exports or board); create it (README \"The supervisors' desk\") or set kafka.create_topics = true");
    }
    found.unwrap_or(0)
}

/// This instance's name in the history's watermarks: host name and process id.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "regwatch".into());
    format!("{host}/{}", std::process::id())
}

/// How long a start-up step is retried while the cluster is unreachable. One metadata
/// request alone may take 30 s to time out, so a minute allowed only two: a daemon
/// restarted just before a whole-cluster outage exited while the cluster came back (the
/// cluster fault test caught it).
const STARTUP_RETRY_WINDOW: Duration = Duration::from_secs(300);

/// Runs a start-up step again while it fails for a transient reason (the client library's
/// own error: a request timed out, a broker is down or moving leadership), for up to
/// [`STARTUP_RETRY_WINDOW`]: a daemon started during a cluster failure waits for the cluster
/// (not ready, every retry logged) instead of exiting. A refusal that names a setting fails
/// at once.
async fn retry_transient<F, Fut>(what: &str, mut step: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let deadline = tokio::time::Instant::now() + STARTUP_RETRY_WINDOW;
    let mut backoff = Duration::from_millis(500);
    loop {
        match step().await {
            Ok(()) => return Ok(()),
            Err(e)
                if e.downcast_ref::<rdkafka::error::KafkaError>().is_some()
                    && tokio::time::Instant::now() + backoff < deadline =>
            {
                tracing::warn!(error = %e, retry_in = ?backoff, "{what} failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.context(format!("{what} failed"))),
        }
    }
}

/// The partition count of the state topic (it fixes where each partition's state lives).
/// The partition count of `topic`, asked up to `attempts` times half a second apart (a
/// topic just created, a broker failing over); an error naming the topic when it never
/// shows.
async fn partition_count(config: &Config, topic: &str, attempts: u32) -> anyhow::Result<i32> {
    let k = config.kafka.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let c = OffThread::new(
            "metadata reader",
            client::reader(&k).create::<BaseConsumer>()?,
        );
        for attempt in 0..attempts {
            match client::topic_partitions(&c, &topic, Duration::from_secs(5)) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => tracing::info!(%topic, attempt, "waiting for the topic"),
                // A broker failing over: asked again.
                Err(e) => {
                    tracing::warn!(%topic, attempt, error = %e, "topic metadata unavailable")
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        anyhow::bail!("topic {topic} does not exist (create it, or set kafka.create_topics = true)")
    })
    .await?
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

/// Where the reloader reads rules from and how it watches them.
struct RulesSource {
    path: Option<std::path::PathBuf>,
    /// The market calendars file, reloaded with the rules (`None`: the built-in ones).
    calendars: Option<std::path::PathBuf>,
    /// Every participant's calendar must exist in a reloaded calendars file.
    registry: Arc<crate::registry::Registry>,
    /// Poll the file this often for a change of content (zero: only on SIGHUP or request).
    watch: Duration,
    config_digest: String,
}

/// Why the reloader is reading the rules file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Asked,
    Watch,
}

/// Reloads the rules file on SIGHUP, on request, or (with `rules.watch`) when its content
/// changes: validated first, then swapped for every worker at once (each regrades its open
/// incidents); a bad file is logged and counted and the rules in force stay.
async fn reload_rules(
    mut hangup: Option<Hangup>,
    source: RulesSource,
    rules: tokio::sync::watch::Sender<Arc<crate::score::Rules>>,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<()>,
    metrics: Arc<Metrics>,
) {
    // The digest of the files' text when they were last loaded (at start-up: now).
    let read = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .as_deref()
            .map(crate::score::Rules::text_digest)
            .unwrap_or_default()
    };
    let mut seen = format!("{}{}", read(&source.path), read(&source.calendars));
    // The content of the last file refused by the watch: refused (and counted) once.
    let mut refused: Option<String> = None;
    let mut watch = (!source.watch.is_zero()).then(|| {
        let mut t = tokio::time::interval(source.watch);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = {
            let _ = &mut hangup;
            std::future::pending::<Option<()>>()
        };
        let tick = async {
            match watch.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        let why = tokio::select! {
            r = requests.recv() => match r { None => return, Some(()) => Why::Asked },
            _ = hup => Why::Asked,
            () = tick => Why::Watch,
        };
        if source.path.is_none() && source.calendars.is_none() {
            tracing::warn!("rules reload asked for, but neither rules.path nor rules.calendars is configured (built-in grid and calendars): nothing to reload");
            continue;
        }
        let files = (source.path.clone(), source.calendars.clone());
        let read = tokio::task::spawn_blocking(move || {
            let read = |p: Option<std::path::PathBuf>| {
                p.map(|p| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display())))
                    .transpose()
            };
            Ok::<_, String>((read(files.0)?, read(files.1)?))
        })
        .await;
        let (rules_text, calendars_text) = match read.unwrap_or_else(|e| Err(e.to_string())) {
            Ok(t) => t,
            Err(e) => {
                if why == Why::Asked || refused.as_deref() != Some("<unreadable>") {
                    metrics
                        .ops
                        .rules_reloads
                        .with_label_values(&["error"])
                        .inc();
                    tracing::error!(error = %e, "rules or calendars file unreadable; the rules in force stay");
                    refused = Some("<unreadable>".into());
                }
                continue;
            }
        };
        // What the files say now: the rules' digest, then the calendars'.
        let text_digest = format!(
            "{}{}",
            rules_text
                .as_deref()
                .map(crate::score::Rules::text_digest)
                .unwrap_or_default(),
            calendars_text
                .as_deref()
                .map(crate::score::Rules::text_digest)
                .unwrap_or_default()
        );
        if why == Why::Watch && (text_digest == seen || refused.as_ref() == Some(&text_digest)) {
            continue;
        }
        match compile_rules(&source, &rules, rules_text, calendars_text) {
            Ok(new) => {
                seen = text_digest;
                refused = None;
                let digest = new.digest().to_string();
                metrics.ops.set_config(&source.config_digest, &digest);
                rules.send_replace(Arc::new(new));
                metrics.ops.rules_reloads.with_label_values(&["ok"]).inc();
                let shown = |p: &Option<std::path::PathBuf>| {
                    p.as_ref()
                        .map_or("built-in".to_string(), |p| p.display().to_string())
                };
                tracing::info!(rules_sha256 = %&digest[..12], path = %shown(&source.path), calendars = %shown(&source.calendars), watch = why == Why::Watch, "rules reloaded");
            }
            Err(e) => {
                refused = Some(text_digest);
                metrics
                    .ops
                    .rules_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(error = %e, "rules reload refused; the rules in force stay");
            }
        }
    }
}

/// The rules and calendars a reload read, validated: a file not configured keeps what is in
/// force; every participant's calendar must exist.
fn compile_rules(
    source: &RulesSource,
    current: &tokio::sync::watch::Sender<Arc<crate::score::Rules>>,
    rules_text: Option<String>,
    calendars_text: Option<String>,
) -> Result<crate::score::Rules, String> {
    let in_force = current.borrow().clone();
    let rules = match rules_text {
        Some(t) => crate::score::Rules::compile(&t).map_err(|e| e.to_string())?,
        None => (*in_force).clone(),
    };
    let calendars = match (calendars_text, &source.calendars) {
        (Some(t), Some(p)) => Arc::new(
            crate::calendar::Calendars::from_toml(&t, &p.display().to_string())
                .map_err(|e| e.to_string())?,
        ),
        _ => in_force.calendars().clone(),
    };
    crate::config::check_calendars(&source.registry, &calendars)?;
    Ok(rules.with_calendars(calendars))
}

/// Asks the broker for metadata every 5 s: `regwatch_broker_up` (and readiness) say whether
/// it answered within the last 15 s, and `regwatch_source_partitions` how many partitions the
/// subscribed events topics have (what `/incidents` must cover to call itself complete).
async fn probe_broker(k: crate::config::KafkaSettings, metrics: Arc<Metrics>) {
    // A pattern subscription leaves out internal topics (`__consumer_offsets`), as
    // librdkafka's does. (The configuration's checks compiled the pattern; were it not to
    // compile, no partition would be counted and the probe would go on.)
    let pattern = matches!(k.topics, crate::config::TopicSelection::Pattern(_));
    let matcher = k.topics.matcher().ok().map(Arc::new);
    let client = match client::reader(&k).create::<BaseConsumer>() {
        Ok(c) => OffThread::new("broker probe", c),
        Err(e) => {
            tracing::error!(error = %e, "broker probe client");
            return;
        }
    };
    let client = Arc::new(client);
    let mut last_ok: Option<std::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let c = client.clone();
        let matcher = matcher.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let md = c.fetch_metadata(None, Duration::from_secs(5)).ok()?;
            Some(client::subscribed_partitions(
                &md,
                matcher.as_deref(),
                pattern,
            ))
        })
        .await
        .ok()
        .flatten();
        if let Some(partitions) = answer {
            metrics.source_partitions.set(partitions);
        }
        let ok = answer.is_some();
        if ok {
            last_ok = Some(std::time::Instant::now());
        }
        let up = last_ok.is_some_and(|t| t.elapsed() < Duration::from_secs(15));
        metrics.ops.broker_up.set(i64::from(up));
    }
}
