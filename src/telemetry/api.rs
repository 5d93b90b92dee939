//! The supervisors' routes, all behind the supervisor role (bearer token, or the board's
//! `regwatch_token` cookie, and the client certificate when one is required):
//!
//! - `GET /incidents`: the fleet-wide view from the desk (`desk/`), with `complete` and
//!   `as_of` from the partitions' watermarks. Filters: `participant`, `min_level`, `axis`
//!   (`investor_loss` | `market_order`: `min_level` then applies to that axis), `exemption`
//!   (`eligible` | `ineligible`), `status` (`open`, the default, | `resolved` | `all`),
//!   `from` / `to` (RFC 3339: the incident's span meets them); pages: `limit` (default 100,
//!   at most 1000) and `offset`. `scope=local` asks this instance's partition workers
//!   instead (only the partitions it owns; the answer before the desk existed).
//! - `GET /incidents/{participant}/{incident}`: its view and timeline.
//! - `GET /participants`, `GET /participants/{id}`.
//! - `GET /report?participant=ID&from=&to=&format=json|csv`: the export for the exemption
//!   decision.
//! - `GET /board`, `/board/participants`, `/board/participants/{id}`,
//!   `/board/incidents/{participant}/{incident}`: the HTML pages (`desk/page.rs`);
//!   `GET /board/login` and `POST /board/login` take a supervisor token into a cookie.
//! - `GET /silences` (`?participant=`): operators' silences, pending, active and expired.
//!
//! `POST /actions` (the operator role) is `act.rs`.

// Helpers answer a refusal with the response to send; a refusal is rare and off any hot
// path, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::AppState;
use super::web::{Peer, TOKEN_COOKIE};
use crate::config::Role;
use crate::desk::{export, page, participants, Coverage, Desk, Filter};
use crate::score::{Axis, Level};
use crate::time::Timestamp;

/// What the desk routes need beside the gate.
#[derive(Clone)]
pub struct DeskApi {
    /// `None`: `[history]` is off; `/incidents` answers for this instance's partitions only.
    pub desk: Option<Arc<Desk>>,
    pub registry: Arc<crate::registry::Registry>,
    /// The rules in force (their calendars count an open incident's trading minutes).
    pub rules: tokio::sync::watch::Receiver<Arc<crate::score::Rules>>,
    /// Where accepted actions go (`None`: no Kafka producer, as in tests of the API alone).
    pub actions: Option<Arc<crate::actions::Sink>>,
}

impl DeskApi {
    /// The ids of the registry, for [`Filter::registered`].
    pub fn registered(&self) -> Arc<std::collections::HashSet<String>> {
        Arc::new(
            self.registry
                .iter()
                .map(|(_, p)| p.id.to_string())
                .collect(),
        )
    }

    fn rules(&self) -> Arc<crate::score::Rules> {
        self.rules.borrow().clone()
    }
}

/// Views as served: copied, open ones brought to their partition's clock.
fn served(store: &crate::desk::Store, views: &[&Value], rules: &crate::score::Rules) -> Vec<Value> {
    views
        .iter()
        .map(|v| {
            let mut v = (*v).clone();
            crate::desk::project(&mut v, store, rules);
            v
        })
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Params {
    participant: Option<String>,
    min_level: Option<String>,
    axis: Option<String>,
    exemption: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    scope: Option<String>,
    format: Option<String>,
}

pub(super) fn bad(text: String) -> Response {
    refuse(StatusCode::BAD_REQUEST, text)
}

/// A refusal: `status` with `text` as the body's one line.
pub(super) fn refuse(status: StatusCode, text: String) -> Response {
    (status, format!("{text}\n")).into_response()
}

fn time(name: &str, v: Option<&str>) -> Result<Option<Timestamp>, Response> {
    match v {
        None | Some("") => Ok(None),
        Some(t) => Timestamp::parse_rfc3339(t).map(Some).ok_or_else(|| {
            bad(format!(
                "{name} {t:?}: an RFC 3339 time with its offset (2026-03-02T09:30:00+08:00)"
            ))
        }),
    }
}

impl Params {
    /// The filter it asks for; `status` defaults to `open`.
    pub(super) fn filter(&self) -> Result<Filter, Response> {
        self.filter_in(None)
    }

    /// The filter it asks for, open incidents only of `registered` participants.
    pub(super) fn filter_in(
        &self,
        registered: Option<Arc<std::collections::HashSet<String>>>,
    ) -> Result<Filter, Response> {
        let min_level = match self.min_level.as_deref() {
            None | Some("") => Level::None,
            Some(text) => Level::parse(text).ok_or_else(|| {
                bad(format!(
                    "min_level {text:?}: one of general, larger, major, extraordinary"
                ))
            })?,
        };
        let axis = match self.axis.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                Axis::parse(text)
                    .ok_or_else(|| bad(format!("axis {text:?}: investor_loss or market_order")))?,
            ),
        };
        let exemption = match self.exemption.as_deref() {
            None | Some("") => None,
            Some(e @ ("eligible" | "ineligible")) => Some(e.to_string()),
            Some(text) => return Err(bad(format!("exemption {text:?}: eligible or ineligible"))),
        };
        let status = match self.status.as_deref() {
            None | Some("") | Some("open") => Some("open".to_string()),
            Some("resolved") => Some("resolved".to_string()),
            Some("all") => None,
            Some(text) => return Err(bad(format!("status {text:?}: open, resolved or all"))),
        };
        Ok(Filter {
            registered,
            participant: self.participant.clone().filter(|p| !p.is_empty()),
            min_level,
            axis,
            exemption,
            status,
            from: time("from", self.from.as_deref())?,
            to: time("to", self.to.as_deref())?,
        })
    }
}

/// How long a question waits for the desk to have read everything written before it.
const FRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How much longer a question waits for an answer short of complete to become complete (an
/// owner vouches for its partition a moment after its incidents are written: an instance
/// just started, a partition just taken over).
const COMPLETE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The desk's coverage, once it has read the history topic up to the moment asked (or
/// after [`FRESH_WAIT`], when `complete` then says it had not): an answer includes what
/// the owners had written when the question came.
pub(super) async fn coverage(s: &AppState, desk: &Desk) -> Coverage {
    let pause = std::time::Duration::from_millis(20);
    let asked = crate::time::wall_now();
    desk.want_fresh();
    let deadline = tokio::time::Instant::now() + FRESH_WAIT;
    while desk.read_to().is_none_or(|t| t < asked) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(pause).await;
    }
    let total = s.metrics.source_partitions.get();
    let deadline = tokio::time::Instant::now() + COMPLETE_WAIT;
    loop {
        let cover = desk.coverage(total);
        if cover.complete || tokio::time::Instant::now() >= deadline {
            return cover;
        }
        desk.want_fresh();
        tokio::time::sleep(pause).await;
    }
}

/// `/incidents`, fleet-wide from the desk (or this instance's own with `scope=local`).
pub(super) async fn incidents(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    query: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = s.gate.check(&peer, &headers, Role::Supervisor) {
        return refused;
    }
    let Ok(Query(q)) = query else {
        return bad("query parameters: participant, min_level, axis, exemption, status, from, to, limit, offset, scope".into());
    };
    let desk = match (
        &s.api.desk.clone().filter(|d| d.is_on()),
        q.scope.as_deref(),
    ) {
        (_, Some("local")) | (None, _) => return super::http::local_incidents(s, q).await,
        (Some(desk), None | Some("fleet")) => desk.clone(),
        (_, Some(other)) => return bad(format!("scope {other:?}: fleet or local")),
    };
    let filter = match q.filter_in(Some(s.api.registered())) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0);
    let cover = coverage(&s, &desk).await;
    let rules = s.api.rules();
    let (total, page): (usize, Vec<Value>) = desk.read(|store| {
        let all = store.select(&filter);
        let page: Vec<&Value> = all.iter().skip(offset).take(limit).copied().collect();
        (all.len(), served(store, &page, &rules))
    });
    let next = (offset + page.len() < total).then_some(offset + page.len());
    Json(json!({
        "scope": "fleet",
        "count": page.len(),
        "total": total,
        "offset": offset,
        "limit": limit,
        "next_offset": next,
        "complete": cover.complete,
        "as_of": cover.as_of,
        "partitions_total": cover.partitions_total,
        "partitions_covered": cover.partitions_covered,
        "partitions_answered": cover.partitions_covered,
        "history_read": cover.history_read,
        "partitions_owned": s.metrics.partitions.get(),
        "partitions_restoring": s.metrics.restoring.get(),
        "partitions": cover.partitions,
        "incidents": page,
    }))
    .into_response()
}

pub(super) fn no_desk() -> Response {
    (
        StatusCode::NOT_FOUND,
        "the history is off ([history] enabled = false, or its topic could not be had at start-up: see the log): only /incidents?scope=local answers\n",
    )
        .into_response()
}

/// What a desk route works from once let in.
struct Desked {
    desk: Arc<Desk>,
    cover: Coverage,
    rules: Arc<crate::score::Rules>,
}

/// Lets a request in (a page answers a missing token with the sign-in form), and takes the
/// desk once it has read what was written before the request.
async fn desked(
    s: &AppState,
    peer: &Peer,
    headers: &HeaderMap,
    page: bool,
) -> Result<Desked, Response> {
    match page {
        true => page_gate(s, peer, headers)?,
        false => s.gate.check(peer, headers, Role::Supervisor)?,
    }
    let desk = s
        .api
        .desk
        .clone()
        .filter(|d| d.is_on())
        .ok_or_else(no_desk)?;
    let cover = coverage(s, &desk).await;
    Ok(Desked {
        desk,
        cover,
        rules: s.api.rules(),
    })
}

/// `/incidents/{participant}/{incident}`: the view and the timeline.
pub(super) async fn incident(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path((participant, incident)): Path<(String, String)>,
) -> Response {
    let Desked { desk, cover, rules } = match desked(&s, &peer, &headers, false).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let found = desk.read(|store| {
        store.get(&participant, &incident).map(|story| {
            let view = story
                .view
                .as_ref()
                .map(|v| served(store, &[v], &rules).remove(0));
            json!({
                "incident": view,
                "timeline": story.entries,
                "crossings": story.crossings(),
                "entries_dropped": story.dropped,
            })
        })
    });
    match found {
        Some(mut body) => {
            body["complete"] = json!(cover.complete);
            body["as_of"] = json!(cover.as_of);
            Json(body).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            format!("no incident {incident:?} of participant {participant:?} in the history (complete: {}, as of {})\n", cover.complete, cover.as_of),
        )
            .into_response(),
    }
}

/// `/participants`.
pub(super) async fn participant_list(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let Desked { desk, cover, .. } = match desked(&s, &peer, &headers, false).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let list: Vec<_> = desk.read(|store| {
        participants::summaries(store, &s.api.registry)
            .into_values()
            .collect()
    });
    Json(json!({
        "count": list.len(),
        "complete": cover.complete,
        "as_of": cover.as_of,
        "participants": list,
    }))
    .into_response()
}

/// `/participants/{id}`: its line, its open incidents and those that lost the exemption.
pub(super) async fn participant(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Desked { desk, cover, rules } = match desked(&s, &peer, &headers, false).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let found = desk.read(|store| {
        let summary = participants::summaries(store, &s.api.registry).remove(&id)?;
        let mine = |status: Option<&str>, exemption: Option<&str>| {
            let views = store.select(&Filter {
                participant: Some(id.clone()),
                status: status.map(str::to_string),
                exemption: exemption.map(str::to_string),
                ..Filter::default()
            });
            served(store, &views, &rules)
        };
        Some(json!({
            "participant": summary,
            "open_incidents": mine(Some("open"), None),
            "ineligible_incidents": mine(None, Some("ineligible")),
        }))
    });
    match found {
        Some(mut body) => {
            body["complete"] = json!(cover.complete);
            body["as_of"] = json!(cover.as_of);
            Json(body).into_response()
        }
        None => (StatusCode::NOT_FOUND, format!("no participant {id:?}\n")).into_response(),
    }
}

/// `/report`: a participant's incidents over a period, as JSON or CSV.
pub(super) async fn report(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    query: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Desked { desk, cover, rules } = match desked(&s, &peer, &headers, false).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Ok(Query(q)) = query else {
        return bad(
            "query parameters: participant (required), from, to, format (json or csv)".into(),
        );
    };
    let Some(participant) = q.participant.clone().filter(|p| !p.is_empty()) else {
        return bad("participant: required".into());
    };
    let (from, to) = match (time("from", q.from.as_deref()), time("to", q.to.as_deref())) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let rows = desk.read(|store| export::rows(store, &participant, from, to, &rules));
    match q.format.as_deref() {
        None | Some("json") => {
            Json(export::document(&participant, from, to, &cover, rows)).into_response()
        }
        Some("csv") => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"regwatch-{}.csv\"",
                        page::seg(&participant)
                    ),
                ),
            ],
            export::csv(&rows),
        )
            .into_response(),
        Some(other) => bad(format!("format {other:?}: json or csv")),
    }
}

/// The board's pages answer a missing token with the sign-in form, not a bare 401.
fn page_gate(s: &AppState, peer: &Peer, headers: &HeaderMap) -> Result<(), Response> {
    s.gate
        .check(peer, headers, Role::Supervisor)
        .map_err(|refused| {
            if refused.status() == StatusCode::UNAUTHORIZED {
                (StatusCode::UNAUTHORIZED, Html(login_form(""))).into_response()
            } else {
                refused
            }
        })
}

fn login_form(note: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Sign in - regwatch</title></head><body style=\"font:15px system-ui,sans-serif;max-width:420px;margin:40px auto\"><h1>regwatch</h1><p>{}</p><form method=\"post\" action=\"/board/login\"><label>Supervisor token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" style=\"width:100%\"></label><p><button type=\"submit\">Sign in</button></p></form></body></html>",
        page::esc(note)
    )
}

/// `GET /board/login`.
pub(super) async fn login_page() -> Response {
    Html(login_form("Sign in with a token of the supervisor role.")).into_response()
}

/// `POST /board/login`: `token=...` (a form), checked like a bearer token; on success the
/// token goes into an HTTP-only, same-site cookie for the board's pages.
pub(super) async fn login(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Bytes,
) -> Response {
    let token = form_value(&body, "token").unwrap_or_default();
    let mut headers = HeaderMap::new();
    if let Ok(v) = header::HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(header::AUTHORIZATION, v);
    }
    if s.gate.check(&peer, &headers, Role::Supervisor).is_err() {
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_form("That token does not grant the supervisor role.")),
        )
            .into_response();
    }
    let secure = if s.tls { "; Secure" } else { "" };
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/board".to_string()),
            (
                header::SET_COOKIE,
                format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"),
            ),
        ],
    )
        .into_response()
}

/// One value of an `application/x-www-form-urlencoded` body.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/board`: incidents, most severe first (`status` as for `/incidents`, open by default).
pub(super) async fn board(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    query: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Desked { desk, cover, rules } = match desked(&s, &peer, &headers, true).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let filter = match q.filter_in(Some(s.api.registered())) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let html = desk.read(|store| {
        let views = served(store, &store.select(&filter), &rules);
        page::board(&views.iter().collect::<Vec<_>>(), &filter, &cover)
    });
    Html(html).into_response()
}

/// `/board/participants`.
pub(super) async fn board_participants(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let Desked { desk, cover, .. } = match desked(&s, &peer, &headers, true).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let html = desk.read(|store| {
        let all = participants::summaries(store, &s.api.registry);
        let mut list: Vec<_> = all.values().collect();
        list.sort_by(|a, b| {
            b.most_severe_open
                .cmp(&a.most_severe_open)
                .then(b.open_incidents.cmp(&a.open_incidents))
                .then(a.participant_id.cmp(&b.participant_id))
        });
        page::participants(&list, &cover)
    });
    Html(html).into_response()
}

/// `/board/participants/{id}`.
pub(super) async fn board_participant(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Desked { desk, cover, rules } = match desked(&s, &peer, &headers, true).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let html = desk.read(|store| {
        let summary = participants::summaries(store, &s.api.registry).remove(&id)?;
        let views = store.select(&Filter {
            participant: Some(id.clone()),
            ..Filter::default()
        });
        let views = served(store, &views, &rules);
        let mut silences: Vec<_> = store
            .silences
            .values()
            .filter(|x| x.participant_id == id)
            .collect();
        silences.sort_by_key(|x| std::cmp::Reverse(x.created_at));
        Some(page::participant(
            &summary,
            &views.iter().collect::<Vec<_>>(),
            &silences,
            &cover,
        ))
    });
    match html {
        Some(h) => Html(h).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no participant {id:?}\n")).into_response(),
    }
}

/// `/board/incidents/{participant}/{incident}`.
pub(super) async fn board_incident(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path((participant, incident)): Path<(String, String)>,
) -> Response {
    let Desked { desk, cover, rules } = match desked(&s, &peer, &headers, true).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let html = desk.read(|store| {
        store
            .get(&participant, &incident)
            .filter(|story| story.view.is_some())
            .map(|story| {
                let mut story = story.clone();
                if let Some(v) = story.view.as_mut() {
                    crate::desk::project(v, store, &rules);
                }
                page::incident(&story, rules.calendars(), &cover)
            })
    });
    match html {
        Some(h) => Html(h).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no incident {incident:?} of participant {participant:?} in the history\n"),
        )
            .into_response(),
    }
}

/// `/silences`: every silence the desk knows of (`?participant=` for one), newest first,
/// each with its state now (`pending`, `active`, `expired`).
pub(super) async fn silences(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Desked { desk, cover, .. } = match desked(&s, &peer, &headers, false).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let now = crate::time::wall_now();
    let only = q.get("participant").filter(|p| !p.is_empty());
    let mut list: Vec<Value> = desk.read(|store| {
        store
            .silences
            .values()
            .filter(|x| only.is_none_or(|p| *p == x.participant_id))
            .map(|x| x.served(now))
            .collect()
    });
    list.sort_by(|a, b| b["created_at"].as_str().cmp(&a["created_at"].as_str()));
    Json(json!({
        "count": list.len(),
        "complete": cover.complete,
        "as_of": cover.as_of,
        "silences": list,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded() {
        assert_eq!(
            form_value(b"a=1&token=ab%2Bc+d%3D", "token").as_deref(),
            Some("ab+c d=")
        );
        assert_eq!(form_value(b"token=x%", "token").as_deref(), Some("x%"));
        assert_eq!(form_value(b"a=1", "token"), None);
    }
}
