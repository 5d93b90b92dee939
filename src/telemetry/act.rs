//! `POST /actions` (the operator role, and some credential: tokens or client certificates):
//! people's acts (`crate::actions`), checked, then written where they act and to the audit
//! topic; 202 with the `action_id`. Every outcome is counted in `regwatch_actions_total`.
//!
//! - `ack`, `annotate`, `close`: `{"participant_id", "incident_id", "reason", "actor"}`,
//!   checked against the desk (an unknown incident is 404, acknowledging or closing a
//!   resolved one 409), written to the incident's events partition.
//! - `silence`: `{"participant_id", "starts_at"?, "ends_at", "reason", "actor"}` (RFC 3339;
//!   `starts_at` defaults to now): a window that has ended is refused (400, `expired`), an
//!   unregistered participant is 404; written to every events partition the participant's
//!   records may be on, so whichever holds its liveness holds its gaps.
//! - `unsilence`: `{"participant_id", "silence_id", "reason", "actor"}`: an unknown silence
//!   is 404, an expired one 409; written where its silence went.
//! - `skip`: `{"receiver", "alert_id", "reason", "actor"}` (`participant_id` optional): an
//!   unknown receiver is 404; the audit record is the action: every outbox reads it.
//!
//! Under `kafka.insecure_trust_internal_topics` (no record key) only `skip` is taken: the
//! others ride the events topics, which participants write.

#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::api::{bad, coverage, no_desk, refuse};
use super::http::AppState;
use super::web::Peer;
use crate::actions::{Action, Kind, SCHEMA};
use crate::time::Timestamp;

/// `POST /actions`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    action: String,
    #[serde(default)]
    participant_id: String,
    #[serde(default)]
    incident_id: String,
    reason: String,
    /// Who acts (with a client certificate, its subject is who).
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    starts_at: Option<Timestamp>,
    #[serde(default)]
    ends_at: Option<Timestamp>,
    #[serde(default)]
    silence_id: Option<String>,
    #[serde(default)]
    receiver: Option<String>,
    #[serde(default)]
    alert_id: Option<String>,
}

/// `POST /actions`.
pub(super) async fn act(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let count = |a: &str, outcome: &str| s.metrics.actions.with_label_values(&[a, outcome]).inc();
    let req: ActionBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            count("unknown", "invalid");
            return bad(format!(
                "not an action: {e} (expected {{\"action\", \"participant_id\", \"incident_id\", \"reason\", \"actor\"}}, with \"starts_at\", \"ends_at\" for a silence, \"silence_id\" to end one, \"receiver\", \"alert_id\" to skip an alert)"
            ));
        }
    };
    let Some(kind) = Kind::parse(&req.action) else {
        count("unknown", "invalid");
        return bad(format!(
            "action {:?}: one of ack, annotate, close, silence, unsilence, skip",
            req.action
        ));
    };
    let claimed = req.actor.clone().unwrap_or_default();
    let actor = match s.gate.actor(&peer, &headers, claimed.trim()) {
        Ok(a) => a,
        Err(r) => {
            count(kind.as_str(), "forbidden");
            return r;
        }
    };
    if peer.certificate.is_none() && claimed.trim().is_empty() {
        count(kind.as_str(), "invalid");
        return bad("actor: who acts (kept in the audit record)".into());
    }
    let Some(sink) = s.api.actions.clone() else {
        return no_desk();
    };
    // Without a record key, a participant could write an action record to its own events
    // topic and have it applied: only a skip (the audit topic alone) is taken.
    if kind != Kind::Skip && matches!(sink.key.get(), Some(None)) {
        count(kind.as_str(), "forbidden");
        return refuse(
            StatusCode::FORBIDDEN,
            "actions on incidents and participants need the record key: under kafka.insecure_trust_internal_topics a participant could forge them".into(),
        );
    }
    let mut id = [0u8; 12];
    if openssl::rand::rand_bytes(&mut id).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n").into_response();
    }
    let now = crate::time::wall_now();
    let action = Action {
        schema: SCHEMA.into(),
        action_id: crate::delivery::sign::hex(&id),
        action: kind,
        participant_id: req.participant_id,
        incident_id: if kind.on_incident() {
            req.incident_id
        } else {
            String::new()
        },
        actor,
        reason: req.reason,
        at: now,
        starts_at: (kind == Kind::Silence).then(|| req.starts_at.unwrap_or(now)),
        ends_at: req.ends_at.filter(|_| kind == Kind::Silence),
        silence_id: req.silence_id.filter(|_| kind == Kind::Unsilence),
        receiver: req.receiver.filter(|_| kind == Kind::Skip),
        alert_id: req.alert_id.filter(|_| kind == Kind::Skip),
    };
    if let Some(ends) = action.ends_at.filter(|e| *e <= now) {
        count(kind.as_str(), "expired");
        return bad(format!(
            "ends_at: the window ended already ({ends}, now {now}): nothing to silence"
        ));
    }
    if let Err(why) = action.check() {
        count(kind.as_str(), "invalid");
        return bad(why);
    }
    let targets = match targets(&s, &action, &sink, now).await {
        Ok(t) => t,
        Err((outcome, r)) => {
            if !outcome.is_empty() {
                count(kind.as_str(), outcome);
            }
            return r;
        }
    };
    match sink.submit(&action, &targets).await {
        Ok(to) => {
            count(kind.as_str(), "accepted");
            tracing::info!(action = kind.as_str(), action_id = %action.action_id, participant = %action.participant_id, incident = %action.incident_id, actor = %action.actor, to = %to.join(" "), "action accepted");
            (
                StatusCode::ACCEPTED,
                Json(json!({
                    "action_id": action.action_id,
                    "action": kind.as_str(),
                    "actor": action.actor,
                    "to": to,
                })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(action = kind.as_str(), action_id = %action.action_id, error = %e, "action not written");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the action could not be written: {e:#}"),
            )
        }
    }
}

/// Where `a` goes (events partitions), or why it is refused: the outcome to count (empty:
/// not the action's fault) and the answer.
async fn targets(
    s: &AppState,
    a: &Action,
    sink: &crate::actions::Sink,
    now: Timestamp,
) -> Result<Vec<(String, i32)>, (&'static str, Response)> {
    let participant = || {
        s.api.registry.lookup(&a.participant_id).ok_or_else(|| {
            (
                "unknown_participant",
                refuse(
                    StatusCode::NOT_FOUND,
                    format!("no participant {:?} in the registry", a.participant_id),
                ),
            )
        })
    };
    let partitions = |p| async move {
        match sink.partitions_of(&s.api.registry, p).await {
            Ok(t) if !t.is_empty() => Ok(t),
            Ok(_) => Err((
                "",
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "no events partition carries participant {:?}'s records",
                        a.participant_id
                    ),
                ),
            )),
            Err(e) => Err((
                "",
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the events topics could not be listed: {e:#}"),
                ),
            )),
        }
    };
    let desk = || {
        s.api
            .desk
            .clone()
            .filter(|d| d.is_on())
            .ok_or(("", no_desk()))
    };
    match a.action {
        Kind::Ack | Kind::Annotate | Kind::Close => {
            let desk = desk()?;
            let cover = coverage(s, &desk).await;
            let found = desk.read(|store| {
                store
                    .get(&a.participant_id, &a.incident_id)
                    .and_then(|story| {
                        let v = story.view.as_ref()?;
                        Some((
                            v["topic"].as_str()?.to_string(),
                            v["partition"].as_i64()? as i32,
                            story.is_open(),
                        ))
                    })
            });
            let Some((topic, partition, open)) = found else {
                return Err((
                    "unknown_incident",
                    refuse(
                        StatusCode::NOT_FOUND,
                        format!(
                            "no incident {:?} of participant {:?} in the history (complete: {}, as of {})",
                            a.incident_id, a.participant_id, cover.complete, cover.as_of
                        ),
                    ),
                ));
            };
            if !open && a.action != Kind::Annotate {
                return Err((
                    "resolved",
                    refuse(
                        StatusCode::CONFLICT,
                        format!(
                            "incident {}/{} is resolved already: only annotate applies",
                            a.participant_id, a.incident_id
                        ),
                    ),
                ));
            }
            Ok(vec![(topic, partition)])
        }
        Kind::Silence => partitions(participant()?).await,
        Kind::Unsilence => {
            let p = participant()?;
            let desk = desk()?;
            let cover = coverage(s, &desk).await;
            let id = a.silence_id.clone().unwrap_or_default();
            let found = desk.read(|store| {
                store
                    .silences
                    .get(&id)
                    .filter(|x| x.participant_id == a.participant_id)
                    .cloned()
            });
            let Some(silence) = found else {
                return Err((
                    "unknown_silence",
                    refuse(
                        StatusCode::NOT_FOUND,
                        format!(
                            "no silence {id:?} of participant {:?} in the history (complete: {}, as of {})",
                            a.participant_id, cover.complete, cover.as_of
                        ),
                    ),
                ));
            };
            if silence.ends_at <= now {
                return Err((
                    "expired",
                    refuse(
                        StatusCode::CONFLICT,
                        format!("silence {id} has expired already (at {})", silence.ends_at),
                    ),
                ));
            }
            partitions(p).await
        }
        Kind::Skip => {
            let receiver = a.receiver.as_deref().unwrap_or_default();
            if !sink.receivers.iter().any(|r| r == receiver) {
                return Err((
                    "unknown_receiver",
                    refuse(
                        StatusCode::NOT_FOUND,
                        format!(
                            "no receiver {receiver:?} in [[delivery.receivers]] (have: {})",
                            sink.receivers.join(", ")
                        ),
                    ),
                ));
            }
            if !a.participant_id.is_empty() {
                participant()?;
            }
            Ok(Vec::new())
        }
    }
}
