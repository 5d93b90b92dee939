//! The HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process is alive),
//! `/readyz` (the consumer owns partitions, none is restoring, the broker answers, nothing
//! failed), and the supervisors' routes (`/incidents`, `/participants`, `/report`, the
//! `/board` pages: see [`super::api`]).
//!
//! `GET /incidents?scope=local` (and `/incidents` when `[history]` is off) asks every
//! partition worker of this instance for its open incidents that match (`participant`,
//! `min_level`) and answers for the partitions this instance owns, saying so in `complete`.
//!
//! With `[http.tls]` the endpoint speaks only TLS; with `[[http.tokens]]` `/metrics` needs
//! a token of the scrape role and the supervisors' routes one of the supervisor role (see
//! [`super::web`]); `/healthz` and `/readyz` stay open for probes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::api::{self, DeskApi};
use super::web::{acceptor, Gate, Peer, Reloading, TlsListener};
use super::Metrics;
use crate::config::{HttpSettings, Role};
use crate::ingest::worker::IncidentQuery;
use crate::score::IncidentView;

/// Readiness as the ingest side reports it, and the pipeline's fatal failures.
#[derive(Default)]
pub struct Health {
    pub consuming: AtomicBool,
    /// The first fatal failure (a worker panicked, the producer hit a fatal error): the
    /// daemon is not ready any more and stops, exiting non-zero.
    failure: std::sync::Mutex<Option<String>>,
    failed: tokio::sync::Notify,
}

impl Health {
    /// Records a fatal failure and wakes whoever waits in [`Health::failed`].
    pub fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
        self.failed.notify_one();
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits for the first fatal failure and returns it.
    pub async fn failed(&self) -> String {
        loop {
            if let Some(why) = self.failure() {
                return why;
            }
            self.failed.notified().await;
        }
    }
}

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) metrics: Arc<Metrics>,
    health: Arc<Health>,
    queries: tokio::sync::broadcast::Sender<IncidentQuery>,
    /// One local incident query at a time: a client hammering the API cannot stall the
    /// workers.
    one_query: Arc<tokio::sync::Semaphore>,
    pub(super) gate: Arc<Gate>,
    pub(super) api: DeskApi,
    /// Served over TLS (the board's cookie is then `Secure`).
    pub(super) tls: bool,
}

/// Serves `settings.listen` until `shutdown` completes. Returns the bound address through
/// `bound` (port 0 picks a free one, which tests use). `/incidents` asks the workers through
/// `queries`. TLS files or token files that do not load are an error before anything is
/// served.
pub async fn serve(
    settings: &HttpSettings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    queries: tokio::sync::broadcast::Sender<IncidentQuery>,
    api: DeskApi,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let refused = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let Some(addr) = settings.listen else {
        return Ok(());
    };
    let gate = Gate::new(
        &settings.tokens,
        settings
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some()),
        metrics.ops.http_auth_failures.clone(),
        metrics.ops.http_reloads.clone(),
    )
    .map_err(refused)?;
    let tls = match &settings.tls {
        Some(t) => {
            let owned = t.clone();
            let paths = [
                Some(&t.cert_file),
                Some(&t.key_file),
                t.client_ca_file.as_ref(),
            ]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
            Some(Arc::new(
                Reloading::new(
                    "TLS files",
                    paths,
                    Box::new(move || acceptor(&owned)),
                    metrics.ops.http_reloads.clone(),
                )
                .map_err(refused)?,
            ))
        }
        None => None,
    };
    let handshake_failures = metrics
        .ops
        .http_auth_failures
        .with_label_values(&["tls_handshake"]);
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .route("/incidents", get(api::incidents))
        .route("/incidents/{participant}/{incident}", get(api::incident))
        .route("/participants", get(api::participant_list))
        .route("/participants/{id}", get(api::participant))
        .route("/report", get(api::report))
        .route("/actions", post(super::act::act))
        .route("/silences", get(api::silences))
        .route("/board", get(api::board))
        .route("/board/login", get(api::login_page).post(api::login))
        .route("/board/participants", get(api::board_participants))
        .route("/board/participants/{id}", get(api::board_participant))
        .route(
            "/board/incidents/{participant}/{incident}",
            get(api::board_incident),
        )
        .with_state(AppState {
            metrics,
            health,
            queries,
            one_query: Arc::new(tokio::sync::Semaphore::new(1)),
            gate: Arc::new(gate),
            api,
            tls: settings.tls.is_some(),
        });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let _ = bound.send(listener.local_addr()?);
    match tls {
        Some(acceptor) => {
            let listener = TlsListener::new(listener, acceptor, handshake_failures)?;
            axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

async fn metrics_handler(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = s.gate.check(&peer, &headers, Role::Scrape) {
        return refused;
    }
    // Rendering walks every series: off the runtime's worker threads.
    let metrics = s.metrics.clone();
    let text = tokio::task::spawn_blocking(move || metrics.render())
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    let partitions = s.metrics.partitions.get();
    let restoring = s.metrics.restoring.get();
    let broker = s.metrics.ops.broker_up.get() == 1;
    if let Some(why) = s.health.failure() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: failed: {why}\n"),
        );
    }
    if s.health.consuming.load(Ordering::Relaxed) && partitions > 0 && restoring == 0 && broker {
        (StatusCode::OK, format!("ready: {partitions} partitions\n"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: {partitions} partitions assigned, {restoring} restoring, broker {}\n",
                if broker { "reachable" } else { "unreachable" }
            ),
        )
    }
}

#[derive(serde::Serialize)]
struct Incidents {
    scope: &'static str,
    count: usize,
    /// True only when the list covers every partition of the subscribed events topics: this
    /// instance owns them all (`partitions_owned` >= `partitions_total`), every owner
    /// answered and none is still being restored. Behind a load balancer over several
    /// instances, each answers for its own partitions only, and says so here.
    complete: bool,
    /// When the answer was assembled (wall time).
    as_of: crate::time::Timestamp,
    partitions_answered: usize,
    partitions_owned: i64,
    /// Partitions of the subscribed events topics in the cluster, from the broker's
    /// metadata (0 until the broker first answered).
    partitions_total: i64,
    /// Owned partitions whose state is still being read back.
    partitions_restoring: i64,
    incidents: Vec<IncidentView>,
}

/// How long the API waits for the workers' answers.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// `/incidents?scope=local` (or with `[history]` off): the open incidents of this
/// instance's partition workers, asked directly (`participant` and `min_level` only).
pub(super) async fn local_incidents(s: AppState, q: api::Params) -> Response {
    let bad = |text: String| (StatusCode::BAD_REQUEST, format!("{text}\n")).into_response();
    let filter = match q.filter() {
        Ok(f) => f,
        Err(r) => return r,
    };
    if filter.axis.is_some()
        || filter.exemption.is_some()
        || filter.from.is_some()
        || filter.to.is_some()
        || filter.status.as_deref() != Some("open")
    {
        return bad("scope=local answers open incidents by participant and min_level only".into());
    }
    let min_level = filter.min_level;
    let Ok(_permit) = tokio::time::timeout(QUERY_TIMEOUT, s.one_query.acquire()).await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: another incident query runs\n",
        )
            .into_response();
    };
    let (reply, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let asked = s
        .queries
        .send(IncidentQuery {
            participant: filter.participant,
            min_level,
            reply,
        })
        .unwrap_or(0);
    let mut incidents = Vec::new();
    let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
    for _ in 0..asked {
        match tokio::time::timeout_at(deadline, answers.recv()).await {
            Ok(Some(found)) => incidents.extend(found),
            _ => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "a partition worker did not answer in time (restoring or stopping)\n",
                )
                    .into_response()
            }
        }
    }
    incidents.sort_by(|a, b| {
        b.level
            .cmp(&a.level)
            .then_with(|| a.participant_id.cmp(&b.participant_id))
            .then_with(|| a.incident_id.cmp(&b.incident_id))
    });
    let owned = s.metrics.partitions.get();
    let restoring = s.metrics.restoring.get();
    let total = s.metrics.source_partitions.get();
    Json(Incidents {
        scope: "local",
        count: incidents.len(),
        complete: asked as i64 >= owned && restoring == 0 && total > 0 && owned >= total,
        as_of: crate::time::wall_now(),
        partitions_answered: asked,
        partitions_owned: owned,
        partitions_total: total,
        partitions_restoring: restoring,
        incidents,
    })
    .into_response()
}
