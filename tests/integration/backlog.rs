//! A backlog is graded exactly like replay (CONTRACT.md section 1, the engine clock, v1.1).
//!
//! The daemon advances a partition's engine (`ClockMode::External`) to each message's record
//! timestamp before applying it, restores it from its state records after a restart, and
//! follows wall time once caught up. Replay (`ClockMode::EventTime`) advances to each
//! `occurred_at`. When record timestamps equal `occurred_at`, both must give the same alerts,
//! with the same ids and the same `at`: first over random streams with a restart anywhere in
//! them (engine only), then with the daemon against a real broker, reading a morning's events
//! written hours ago.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureRecord, Producer};
use regwatch::alert::{Alert, AlertType};
use regwatch::config::Config;
use regwatch::registry::{ParticipantKind, Registry};
use regwatch::score::{
    ClockMode, Engine, EngineSettings, Level, Outcome, StateChange, StateRecord,
};
use regwatch::time::{wall_now, Timestamp, MS_PER_MINUTE};
use serde_json::{json, Value};

use crate::broker::Broker;
use crate::kafka::{collect, config_text, payload};
use crate::support::*;

// ---------------------------------------------------------------------------------------
// Test 1: random streams, engine only.
// ---------------------------------------------------------------------------------------

/// The participants of the generated streams: (id, kind, effective customers, the systems
/// their infosec incidents hit).
const WHO: [(&str, ParticipantKind, u64, &[&str]); 5] = [
    (
        "BRK",
        ParticipantKind::Broker,
        2_500_000,
        &["trading", "trading", "custody", "margin"],
    ),
    (
        "EXC",
        ParticipantKind::Exchange,
        0,
        &["trading", "market_data"],
    ),
    ("FEX", ParticipantKind::FuturesExchange, 0, &["trading"]),
    (
        "FBK",
        ParticipantKind::FuturesBroker,
        150_000,
        &["trading", "margin"],
    ),
    ("CLR", ParticipantKind::Clearing, 0, &["clearing"]),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Open,
    Update,
    Resolved,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Update => "update",
            Status::Resolved => "resolved",
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// An outage or degradation report; its figures grow by `grow`.
    Infosec {
        who: usize,
        incident: usize,
        status: Status,
        degradation: bool,
        system: usize,
        full: bool,
        /// `started_at` this long before `occurred_at`.
        back_ms: i64,
        grow: Vec<(&'static str, f64)>,
    },
    /// A trading-anomaly report.
    Trading {
        who: usize,
        incident: usize,
        status: Status,
        figures: Vec<(&'static str, f64)>,
    },
    Heartbeat(usize),
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![3 => Just(Status::Open), 5 => Just(Status::Update), 2 => Just(Status::Resolved)]
}

fn growth() -> impl Strategy<Value = (&'static str, f64)> {
    prop_oneof![
        (0.0..30.0f64).prop_map(|v| ("affected_units_pct", v)),
        (0u32..60_000).prop_map(|v| ("affected_investors", f64::from(v))),
        (0.0..4e6f64).prop_map(|v| ("loss_cny", v)),
        (0u32..20_000).prop_map(|v| ("orders_delayed", f64::from(v))),
        (0u32..40_000).prop_map(|v| ("records_exposed", f64::from(v))),
    ]
}

fn trading_figure() -> impl Strategy<Value = (&'static str, f64)> {
    prop_oneof![
        (-4.0..4.0f64).prop_map(|v| ("index_move_pct", v)),
        (-10.0..10.0f64).prop_map(|v| ("price_move_pct", v)),
        (0.0..1.0f64).prop_map(|v| ("cancel_ratio", v)),
        (0.0..0.3f64).prop_map(|v| ("volume_share", v)),
        (0.0..6e9f64).prop_map(|v| ("executed_notional_cny", v)),
        (0.0..2e7f64).prop_map(|v| ("cancelled_notional_cny", v)),
        (0.0..500.0f64).prop_map(|v| ("peak_orders_per_sec", v)),
        (0u32..200_000).prop_map(|v| ("affected_investors", f64::from(v))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..WHO.len(), 0..3usize, status(), any::<bool>(), 0..4usize, any::<bool>(),
              0i64..30 * MS_PER_MINUTE, proptest::collection::vec(growth(), 0..3))
            .prop_map(|(who, incident, status, degradation, system, full, back_ms, grow)| Op::Infosec {
                who, incident, status, degradation, system, full, back_ms, grow,
            }),
        2 => (0..WHO.len(), 0..2usize, status(), proptest::collection::vec(trading_figure(), 0..3))
            .prop_map(|(who, incident, status, figures)| Op::Trading { who, incident, status, figures }),
        4 => (0..WHO.len()).prop_map(Op::Heartbeat),
    ]
}

/// Time to the next event: seconds (within the 10 s liveness persistence and the 3 minute
/// thresholds), minutes (around the 5 minute gap and the 3..30 minute thresholds) or hours
/// (over breaks, nights, the 120 and 240 minute thresholds and the retentions).
fn gap_ms() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..60_000,
        4 => 60_000i64..20 * MS_PER_MINUTE,
        1 => 60 * MS_PER_MINUTE..5 * 60 * MS_PER_MINUTE,
    ]
}

/// What the stream builder remembers of an incident id.
#[derive(Default)]
struct Track {
    /// Bumped after a resolution: the next report opens another incident.
    generation: u32,
    /// The attributes its first report gave (a participant keeps them).
    attributes: Option<(bool, usize, bool)>,
    /// Cumulative figures so far.
    figures: BTreeMap<&'static str, f64>,
}

/// The events of a generated stream: (occurred_at, message value), occurred_at non-decreasing.
fn build(steps: &[(i64, Op)]) -> Vec<(Timestamp, Vec<u8>)> {
    let mut t = at(0.0);
    let mut tracks: HashMap<(usize, bool, usize), Track> = HashMap::new();
    let mut out = Vec::with_capacity(steps.len());
    for (n, (gap, op)) in steps.iter().enumerate() {
        t = t.plus_millis(*gap);
        let mut e = match op {
            Op::Heartbeat(who) => json!({"participant_id": WHO[*who].0, "kind": "heartbeat"}),
            Op::Infosec {
                who,
                incident,
                status,
                degradation,
                system,
                full,
                back_ms,
                grow,
            } => {
                let track = tracks.entry((*who, true, *incident)).or_default();
                let (degradation, system, full) =
                    *track
                        .attributes
                        .get_or_insert((*degradation, *system, *full));
                let systems = WHO[*who].3;
                let mut e = json!({
                    "participant_id": WHO[*who].0,
                    "kind": "infosec",
                    "incident_id": format!("S{incident}-{}", track.generation),
                    "status": status.as_str(),
                    "category": if degradation { "degradation" } else { "outage" },
                    "system": systems[system % systems.len()],
                    "scope": if full { "full" } else { "partial" },
                    "started_at": t.plus_millis(-back_ms).to_string(),
                });
                for (k, v) in grow {
                    let total = track.figures.entry(k).or_insert(0.0);
                    *total += v;
                    if *k == "affected_units_pct" {
                        *total = total.min(100.0);
                    }
                }
                for (k, v) in &track.figures {
                    e[*k] = json!(v);
                }
                if *status == Status::Resolved {
                    *track = Track {
                        generation: track.generation + 1,
                        ..Track::default()
                    };
                }
                e
            }
            Op::Trading {
                who,
                incident,
                status,
                figures,
            } => {
                let track = tracks.entry((*who, false, *incident)).or_default();
                for (k, v) in figures {
                    // Unsigned figures are cumulative; the moves are as measured.
                    let keep = track.figures.entry(k).or_insert(0.0);
                    *keep =
                        if k.ends_with("_move_pct") || *k == "cancel_ratio" || *k == "volume_share"
                        {
                            *v
                        } else {
                            keep.max(*v)
                        };
                }
                let mut e = json!({
                    "participant_id": WHO[*who].0,
                    "kind": "trading",
                    "incident_id": format!("T{incident}-{}", track.generation),
                    "status": status.as_str(),
                    "category": "runaway_algo",
                });
                for (k, v) in &track.figures {
                    e[*k] = json!(v);
                }
                if *status == Status::Resolved {
                    *track = Track {
                        generation: track.generation + 1,
                        ..Track::default()
                    };
                }
                e
            }
        };
        e["schema"] = json!("regwatch.event.v1");
        e["event_id"] = json!(format!("e{n}"));
        e["occurred_at"] = json!(t.to_string());
        out.push((t, serde_json::to_vec(&e).expect("serialisable")));
    }
    out
}

fn registry() -> Arc<Registry> {
    static REGISTRY: std::sync::OnceLock<Arc<Registry>> = std::sync::OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            Arc::new(
                Registry::new(
                    WHO.iter()
                        .map(|(id, kind, customers, _)| participant(id, *kind, *customers))
                        .collect(),
                )
                .expect("valid registry"),
            )
        })
        .clone()
}

/// The daemon's settings but for the clock: participants watched from their first message,
/// retentions short enough that evictions and forgetting happen within a stream.
fn settings(clock: ClockMode) -> EngineSettings {
    EngineSettings {
        clock,
        watch_all_from_start: false,
        track_changes: clock == ClockMode::External,
        telemetry_gap_ms: 5 * MS_PER_MINUTE,
        retention_ms: 6 * 60 * MS_PER_MINUTE,
        liveness_retention_ms: 8 * 60 * MS_PER_MINUTE,
        ..EngineSettings::default()
    }
}

fn new_engine(clock: ClockMode) -> Engine {
    Engine::new(registry(), Arc::new(default_rules()), settings(clock))
}

/// A compacted state topic: the latest record of each key, a tombstone deletes it. Records
/// go through JSON, as they do on the topic.
#[derive(Default)]
struct Compacted(BTreeMap<String, StateRecord>);

impl Compacted {
    fn apply(&mut self, changes: Vec<StateChange>) {
        for c in changes {
            match c {
                StateChange::Put(r) => {
                    let text = serde_json::to_string(&r).expect("state record serialises");
                    let back: StateRecord =
                        serde_json::from_str(&text).expect("state record reads back");
                    self.0.insert(back.key(), back);
                }
                StateChange::Deleted(key) => {
                    self.0.remove(&key);
                }
            }
        }
    }

    fn records(&self) -> Vec<StateRecord> {
        self.0.values().cloned().collect()
    }
}

/// What a run gave: the alerts, the outcome of each event (`None`: rejected), and the
/// alerts re-sent after a restart with the id of an earlier one but other content (as JSON:
/// the earlier, the re-sent).
struct Run {
    alerts: Vec<Alert>,
    outcomes: Vec<Option<Outcome>>,
    resent_otherwise: Vec<(String, String)>,
}

/// Replay: event time, then the clock moved to `end`.
fn replayed(events: &[(Timestamp, Vec<u8>)], end: Timestamp) -> Run {
    let mut e = new_engine(ClockMode::EventTime);
    let mut alerts = Vec::new();
    let outcomes = events
        .iter()
        .map(|(_, v)| e.process(v, &mut alerts).ok())
        .collect();
    e.advance_to(end, &mut alerts);
    Run {
        alerts,
        outcomes,
        resent_otherwise: Vec::new(),
    }
}

/// Where the daemon restarts in a stream.
#[derive(Clone, Copy, Debug)]
struct Restart {
    /// Events before this index were flushed and committed at the last flush.
    committed: usize,
    /// Events the first instance went on reading past the commit before it died (their
    /// alerts were sent; the next instance reads them again: at least once).
    uncommitted: usize,
}

/// The daemon: before each event the engine is advanced to its record timestamp (here its
/// `occurred_at`); state is flushed after the events `flush` marks and at the commit point;
/// the instance dies `uncommitted` events after the last flush; a fresh engine restores the
/// compacted state, reads on from the committed offset and finally catches up to `end`.
/// The alerts are those of both instances, the second's re-sends of the first's
/// uncommitted alerts (same id) dropped; a re-send of a committed alert is not dropped, so it
/// shows as a duplicate.
fn daemon(
    events: &[(Timestamp, Vec<u8>)],
    flush: &[bool],
    restart: Restart,
    end: Timestamp,
) -> Run {
    let mut store = Compacted::default();
    let mut first = new_engine(ClockMode::External);
    let mut sent = Vec::new();
    let mut outcomes = vec![None; events.len()];
    let died = (restart.committed + restart.uncommitted).min(events.len());
    let mut committed_alerts = 0;
    for (i, (t, v)) in events[..died].iter().enumerate() {
        first.advance_to(*t, &mut sent);
        outcomes[i] = first.process(v, &mut sent).ok();
        if i + 1 == restart.committed || (i + 1 < restart.committed && flush[i]) {
            store.apply(first.take_changes());
            committed_alerts = sent.len();
        }
    }
    drop(first);
    let resent: HashMap<String, Alert> = sent[committed_alerts..]
        .iter()
        .map(|a| (a.alert_id.clone(), a.clone()))
        .collect();

    let mut second = new_engine(ClockMode::External);
    let summary = second.restore(store.records());
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    let mut after = Vec::new();
    for (i, (t, v)) in events.iter().enumerate().skip(restart.committed) {
        second.advance_to(*t, &mut after);
        outcomes[i] = second.process(v, &mut after).ok();
    }
    second.advance_to(end, &mut after);
    let mut alerts = sent;
    let mut resent_otherwise = Vec::new();
    for a in after {
        match resent.get(&a.alert_id) {
            Some(earlier) if earlier.to_json() != a.to_json() => {
                resent_otherwise.push((earlier.to_json(), a.to_json()))
            }
            Some(_) => {}
            None => alerts.push(a),
        }
    }
    Run {
        alerts,
        outcomes,
        resent_otherwise,
    }
}

/// The alerts of one type as (alert_id, at): all of them ordered by `at` (ties by id: the
/// order of simultaneous alerts of different incidents follows engine slots, which a restore
/// reassigns, and means nothing), and each incident's (each participant's gaps') in the order
/// emitted.
#[allow(clippy::type_complexity)]
fn of_type(
    alerts: &[Alert],
    t: AlertType,
) -> (
    Vec<(String, String)>,
    BTreeMap<(String, Option<String>), Vec<(String, String)>>,
) {
    let mut all = Vec::new();
    let mut each: BTreeMap<(String, Option<String>), Vec<(String, String)>> = BTreeMap::new();
    for a in alerts.iter().filter(|a| a.alert_type == t) {
        all.push((a.at.to_string(), a.alert_id.clone()));
        each.entry((a.participant_id.clone(), a.incident_id.clone()))
            .or_default()
            .push((a.alert_id.clone(), a.at.to_string()));
    }
    all.sort();
    let all = all.into_iter().map(|(at, id)| (id, at)).collect();
    (all, each)
}

/// A readable account of a stream and its alerts, for a failing case.
fn describe(events: &[(Timestamp, Vec<u8>)], alerts: &[Alert]) -> String {
    let mut s = String::new();
    if !events.is_empty() {
        s.push_str("events:\n");
    }
    for (i, (_, v)) in events.iter().enumerate() {
        s.push_str(&format!("  {i}: {}\n", String::from_utf8_lossy(v)));
    }
    s.push_str("alerts:\n");
    for a in alerts {
        s.push_str(&format!(
            "  {:?} {} {:?} {:?} {} {}\n",
            a.alert_type, a.participant_id, a.incident_id, a.trigger, a.at, a.alert_id
        ));
    }
    s
}

fn check(
    events: &[(Timestamp, Vec<u8>)],
    flush: &[bool],
    restart: Restart,
    end: Timestamp,
) -> Result<(), TestCaseError> {
    let reference = replayed(events, end);
    let run = daemon(events, flush, restart, end);
    prop_assert!(
        reference.outcomes.iter().all(Option::is_some),
        "every generated event is accepted by replay: {:?}",
        reference.outcomes
    );
    prop_assert_eq!(
        &run.outcomes,
        &reference.outcomes,
        "same outcome for every event"
    );
    prop_assert!(
        run.resent_otherwise.is_empty(),
        "an alert re-sent after the restart carries its id with other content: {:?}",
        run.resent_otherwise
    );
    for t in [AlertType::Incident, AlertType::TelemetryGap] {
        let (want, got) = (of_type(&reference.alerts, t), of_type(&run.alerts, t));
        if want != got {
            let only = |a: &[(String, String)], b: &[(String, String)]| -> Vec<(String, String)> {
                a.iter().filter(|x| !b.contains(x)).cloned().collect()
            };
            return Err(TestCaseError::fail(format!(
                "{t:?} alerts differ ({restart:?}, end {end})\nonly in replay: {:?}\nonly in the daemon: {:?}\nreplay {}\ndaemon {}",
                only(&want.0, &got.0),
                only(&got.0, &want.0),
                describe(events, &reference.alerts),
                describe(&[], &run.alerts),
            )));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A backlog read by the daemon, with a restart anywhere in it, gives replay's alerts:
    /// same ids, same `at`, incident and telemetry-gap alerts alike; an alert re-sent after
    /// the restart is the same alert. At the time of writing it fails on two mismatches,
    /// each reproduced by an ignored test below (liveness persisted at most every 10 s;
    /// figures losing an ulp through the state's JSON); the seeds of both are kept in
    /// `tests/proptest-regressions/backlog.txt`.
    #[test]
    fn a_backlog_with_a_restart_is_graded_exactly_like_replay(
        steps in proptest::collection::vec((gap_ms(), op()), 1..48),
        flush in proptest::collection::vec(any::<bool>(), 48),
        committed in any::<prop::sample::Index>(),
        uncommitted in 0usize..3,
        tail_ms in 0i64..6 * 60 * MS_PER_MINUTE,
    ) {
        let events = build(&steps);
        let end = events.last().map(|(t, _)| *t).unwrap_or(at(0.0)).plus_millis(tail_ms);
        let restart = Restart { committed: committed.index(events.len() + 1), uncommitted };
        check(&events, &flush, restart, end)?;
    }
}

/// Feeds `(occurred_at, value)` events to a daemon engine (advanced to each one's time
/// first), flushes its state after each of the `committed` first ones (the last flush is
/// where the next instance starts reading), restores a fresh engine from that state, feeds it the rest, and moves
/// both to `end`. Returns (replay's alerts, the restored daemon's alerts after the restart,
/// the first instance's alerts).
fn restart_at(
    events: &[(Timestamp, Value)],
    committed: usize,
    end: Timestamp,
) -> (Vec<Alert>, Vec<Alert>, Vec<Alert>) {
    let events: Vec<(Timestamp, Vec<u8>)> = events
        .iter()
        .enumerate()
        .map(|(i, (t, v))| {
            let mut v = v.clone();
            v["schema"] = json!("regwatch.event.v1");
            v["event_id"] = json!(format!("e{i}"));
            v["occurred_at"] = json!(t.to_string());
            (*t, serde_json::to_vec(&v).unwrap())
        })
        .collect();
    let reference = replayed(&events, end);
    assert!(reference.outcomes.iter().all(Option::is_some));
    let mut first = new_engine(ClockMode::External);
    let mut before = Vec::new();
    let mut store = Compacted::default();
    for (t, v) in &events[..committed] {
        first.advance_to(*t, &mut before);
        first.process(v, &mut before).expect("accepted");
        store.apply(first.take_changes());
    }
    let mut second = new_engine(ClockMode::External);
    second.restore(store.records());
    let mut after = Vec::new();
    for (t, v) in &events[committed..] {
        second.advance_to(*t, &mut after);
        second.process(v, &mut after).expect("accepted");
    }
    second.advance_to(end, &mut after);
    (reference.alerts, after, before)
}

/// A participant heard twice within 10 s, the state flushed after each message (as the
/// daemon's commit interval does) and committed after the second, then a restart: the
/// second flush wrote nothing for it (liveness is persisted at most every
/// `LIVENESS_PERSIST_MS` = 10 s), so the restored liveness says it was last heard at the
/// first message, and its telemetry gap fires 9 s early, at an instant the stream does not
/// justify (it was silent only 4 min 51 s then), with another `last_heard_at` and so other
/// alert ids than replay gives, for the gap and for its end.
#[test]
fn a_restart_after_two_messages_within_ten_seconds_fires_the_gap_of_replay() {
    let (replay, daemon, _) = restart_at(
        &[
            (
                at(0.0),
                json!({"participant_id": "CLR", "kind": "heartbeat"}),
            ),
            (
                at(0.15),
                json!({"participant_id": "CLR", "kind": "heartbeat"}),
            ),
            (
                at(20.0),
                json!({"participant_id": "CLR", "kind": "heartbeat"}),
            ),
        ],
        2,
        at(21.0),
    );
    // Replay: silent since 01:30:09 (minute 0.15), gap at 01:35:09.001, heard at 01:50.
    let gaps = |alerts: &[Alert]| -> Vec<(String, String, String)> {
        alerts
            .iter()
            .filter(|a| a.alert_type == AlertType::TelemetryGap)
            .map(|a| {
                (
                    a.at.to_string(),
                    a.last_heard_at.map(|t| t.to_string()).unwrap_or_default(),
                    a.alert_id.clone(),
                )
            })
            .collect()
    };
    assert_eq!(
        gaps(&replay)
            .iter()
            .map(|g| (g.0.as_str(), g.1.as_str()))
            .collect::<Vec<_>>(),
        [
            ("2026-03-02T01:35:09.001Z", "2026-03-02T01:30:09.000Z"),
            ("2026-03-02T01:50:00.000Z", "2026-03-02T01:30:09.000Z"),
        ]
    );
    // The restarted daemon says: gap at 01:35:00.001, last heard 01:30:00.
    assert_eq!(gaps(&daemon), gaps(&replay));
}

/// A figure just below a threshold (`loss_cny` = 999999.9999999999, the largest double
/// below 1e6, as the participant wrote it) is graded `general`; written to the state as
/// "999999.9999999999" it is read back by serde_json (without `float_roundtrip`) as
/// 1000000.0, so after a restart the next report regrades the incident `larger` on the
/// investor-loss axis: an escalation replay never gives. (Short of a threshold, the same
/// one-ulp change shows in `observed` of every later alert, re-sent ones included.)
#[test]
fn a_figure_just_below_a_threshold_stays_below_it_after_a_restart() {
    let leak = |status: &str, extra: Value| {
        merge(
            json!({"participant_id": "BRK", "kind": "infosec", "incident_id": "L",
                   "category": "data_leak", "status": status}),
            extra,
        )
    };
    let (replay, daemon, first) = restart_at(
        &[
            (
                at(0.0),
                leak("open", json!({"loss_cny": 999_999.999_999_999_9})),
            ),
            (at(1.0), leak("update", json!({"affected_investors": 1}))),
        ],
        1,
        at(2.0),
    );
    let summary = |alerts: &[Alert]| -> Vec<(String, String, Level)> {
        alerts
            .iter()
            .map(|a| {
                (
                    a.at.to_string(),
                    format!("{:?}", a.trigger),
                    a.investor_loss.level,
                )
            })
            .collect()
    };
    assert_eq!(
        summary(&replay),
        [(
            "2026-03-02T01:30:00.000Z".to_string(),
            "Opened".to_string(),
            Level::General
        )],
        "replay: opened general, nothing more"
    );
    assert_eq!(summary(&first), summary(&replay));
    // The restarted daemon escalates at 01:31 to investor_loss larger (loss_cny 1000000).
    assert!(daemon.is_empty(), "{:?}", summary(&daemon));
}

// ---------------------------------------------------------------------------------------
// Test 2: the daemon against a real broker, reading a morning written hours ago.
// ---------------------------------------------------------------------------------------

const DAY_MS: i64 = 86_400_000;
/// Beijing time, the calendars' offset.
const CST_MS: i64 = 8 * 3_600_000;

/// Weekdays the exchanges close in 2026 (CONTRACT.md section 2).
const HOLIDAYS_2026: [(u32, u32); 19] = [
    (1, 1),
    (1, 2),
    (2, 16),
    (2, 17),
    (2, 18),
    (2, 19),
    (2, 20),
    (2, 23),
    (4, 6),
    (5, 1),
    (5, 4),
    (5, 5),
    (6, 19),
    (9, 25),
    (10, 1),
    (10, 2),
    (10, 5),
    (10, 6),
    (10, 7),
];

/// (year, month, day) of a day number since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Whether the Beijing date `days` is a cn-stock trading day.
fn trading_day(days: i64) -> bool {
    let weekday = (days + 4).rem_euclid(7); // 0 = Sunday
    let (y, m, d) = civil(days);
    (1..=5).contains(&weekday) && !(y == 2026 && HOLIDAYS_2026.contains(&(m, d)))
}

/// 09:40 Beijing time of the latest trading day whose 09:40-11:30 session lies at least
/// 10 minutes in the past: the backlog's morning, inside the cn-stock and cn-futures
/// sessions, so its outages escalate by trading time as they would have live.
fn backlog_morning(now: Timestamp) -> Timestamp {
    let today = (now.millis() + CST_MS).div_euclid(DAY_MS);
    (0..40)
        .map(|back| today - back)
        .filter(|d| trading_day(*d))
        .map(|d| Timestamp(d * DAY_MS + (9 * 60 + 40) * MS_PER_MINUTE - CST_MS))
        .find(|start| start.plus_millis(120 * MS_PER_MINUTE) < now)
        .expect("a trading morning in the last 40 days")
}

/// One event as a participant writes it: (key, value, record timestamp = occurred_at).
fn morning_event(v: Value, t: Timestamp, seq: &mut u32) -> (String, Vec<u8>, i64) {
    *seq += 1;
    let mut v = v;
    v["schema"] = json!("regwatch.event.v1");
    v["event_id"] = json!(format!("m-{seq}"));
    v["occurred_at"] = json!(t.to_string());
    let key = v["participant_id"].as_str().unwrap_or_default().to_string();
    (key, serde_json::to_vec(&v).unwrap(), t.millis())
}

/// The morning: P2 (broker, 2.5 million customers) heartbeats every 4 minutes and has a full
/// trading outage resolved 20 minutes after it started (larger at 5 minutes; never major,
/// which 30 minutes would be); P6 (futures broker) has a full trading outage that escalates
/// by time between its reports and is resolved; P3 (exchange) heartbeats every 4 minutes
/// but falls silent for 16 minutes in between.
fn morning(start: Timestamp) -> Vec<(String, Vec<u8>, i64)> {
    let t = |minutes: i64| start.plus_millis(minutes * MS_PER_MINUTE);
    let mut seq = 0;
    let mut timed: Vec<(i64, Value)> = Vec::new();
    for m in (0..=108).step_by(4) {
        timed.push((m, json!({"participant_id": "P2", "kind": "heartbeat"})));
        if !(29..44).contains(&m) {
            timed.push((m, json!({"participant_id": "P3", "kind": "heartbeat"})));
        }
    }
    let short = |status: &str, extra: Value| {
        merge(
            json!({"participant_id": "P2", "kind": "infosec", "incident_id": "SHORT",
                   "category": "outage", "system": "trading", "scope": "full",
                   "started_at": t(10).to_string(), "status": status}),
            extra,
        )
    };
    timed.push((11, short("open", json!({}))));
    timed.push((18, short("update", json!({"orders_delayed": 1200}))));
    timed.push((30, short("resolved", json!({"orders_delayed": 2500}))));
    let long = |status: &str, extra: Value| {
        merge(
            json!({"participant_id": "P6", "kind": "infosec", "incident_id": "LONG",
                   "category": "outage", "system": "trading", "scope": "full",
                   "started_at": t(38).to_string(), "status": status}),
            extra,
        )
    };
    timed.push((40, long("open", json!({}))));
    timed.push((75, long("update", json!({"affected_investors": 3000}))));
    timed.push((95, long("resolved", json!({"affected_investors": 3500}))));
    timed.sort_by_key(|(m, _)| *m);
    timed
        .into_iter()
        .map(|(m, v)| morning_event(v, t(m), &mut seq))
        .collect()
}

/// What `regwatch replay` writes for `events`, run on to `until`.
fn replay_of(cfg: &Config, events: &[(String, Vec<u8>, i64)], until: Timestamp) -> Vec<Value> {
    let mut engine = Engine::new(
        Arc::new(cfg.registry.clone()),
        Arc::new(cfg.rules.clone()),
        EngineSettings {
            clock: ClockMode::EventTime,
            watch_all_from_start: false,
            track_changes: false,
            ..cfg.engine.clone()
        },
    );
    let mut input = Vec::new();
    for (_, v, _) in events {
        input.extend_from_slice(v);
        input.push(b'\n');
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary =
        regwatch::replay::replay(&mut engine, &input[..], &mut out, &mut err, Some(until))
            .expect("replay runs");
    assert_eq!(summary.rejected, 0, "{}", String::from_utf8_lossy(&err));
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("an alert line"))
        .collect()
}

/// (type, alert_id, at) of alerts, as a multiset.
fn keyed(alerts: impl IntoIterator<Item = Value>) -> BTreeMap<(String, String, String), usize> {
    let mut m = BTreeMap::new();
    for a in alerts {
        let k = (
            a["type"].as_str().unwrap_or_default().to_string(),
            a["alert_id"].as_str().unwrap_or_default().to_string(),
            a["at"].as_str().unwrap_or_default().to_string(),
        );
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// The value of a sample in the text exposition, e.g. `name{a="x",b="y"}`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            series.starts_with(&format!("{name}{{"))
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, v)| v.parse().ok())
}

/// Messages in `topic` (0 when it does not exist).
fn messages_in(bootstrap: &str, topic: &str) -> i64 {
    let c: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("watermark reader");
    let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
        return 0;
    };
    md.topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| {
            c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .map(|(low, high)| high - low)
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_morning_written_hours_ago_is_graded_like_replay_then_the_wall_clock_takes_over() {
    let broker = Broker::start();
    let name = "backlog";
    let topic = format!("{name}.events");
    // Kept whatever the records' age (a holiday week can put the last trading morning more
    // than the default 7 days back).
    broker.create_topic_with(&topic, 1, 1, &[("retention.ms", "-1")]);
    let text =
        config_text(&broker, name, 1).replace("telemetry_gap = \"off\"", "telemetry_gap = \"5m\"");
    assert!(text.contains("telemetry_gap = \"5m\""));
    let cfg = Config::from_toml(&text, None, false).expect("test config");
    let kafka = cfg.kafka.clone();

    // The morning, written with its record timestamps, before the daemon starts.
    let start = backlog_morning(wall_now());
    let events = morning(start);
    let producer = broker.producer();
    for (key, value, ts) in &events {
        let record = FutureRecord::to(&topic)
            .key(key.as_bytes())
            .payload(value.as_slice())
            .timestamp(*ts);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("event delivered");
    }
    let _ = producer.flush(Duration::from_secs(10));

    let t0 = Instant::now();
    let daemon = regwatch::app::spawn(Config::from_toml(&text, None, false).unwrap())
        .await
        .expect("the daemon starts");
    let m = daemon.running.metrics.clone();
    let read = || {
        [
            "graded",
            "heartbeat",
            "duplicate",
            "after_resolution",
            "rejected",
        ]
        .iter()
        .map(|o| m.events.with_label_values(&[o]).get())
        .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while read() < events.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "the daemon read {} of {} events",
            read(),
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = t0.elapsed();

    // Replay of the same events, run on to now: everything after the morning (the
    // participants' last silences) is long due, nothing is still to come.
    let reference = replay_of(&cfg, &events, wall_now());
    let expected = keyed(reference.iter().cloned());
    let want_ids: BTreeSet<String> = reference
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let got = collect(
        &kafka,
        &kafka.alerts_topic,
        "backlog-check-1",
        Duration::from_secs(60),
        |seen| {
            let ids: BTreeSet<String> = seen
                .iter()
                .map(|m| {
                    payload(m)["alert_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
            ids.is_superset(&want_ids)
        },
    )
    .await;
    // Nothing more comes: wait a little and read the whole topic again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all: Vec<OwnedMessage> = collect(
        &kafka,
        &kafka.alerts_topic,
        "backlog-check-2",
        Duration::from_secs(30),
        |seen| seen.len() >= got.len(),
    )
    .await;
    let daemon_alerts: Vec<Value> = all.iter().map(payload).collect();
    let of = |alerts: &[Value], t: &str| -> BTreeMap<(String, String, String), usize> {
        keyed(alerts.iter().filter(|a| a["type"] == t).cloned())
    };
    let reference_vec: Vec<Value> = reference.clone();
    assert_eq!(
        of(&daemon_alerts, "incident"),
        of(&reference_vec, "incident"),
        "incident alerts: the daemon's (left) and replay's (right)"
    );
    assert_eq!(
        of(&daemon_alerts, "telemetry_gap"),
        of(&reference_vec, "telemetry_gap"),
        "telemetry-gap alerts: the daemon's (left) and replay's (right)"
    );
    assert_eq!(keyed(daemon_alerts.iter().cloned()), expected);

    // The scenario is what it says (checked on replay, which the daemon matched).
    let incident = |id: &str| -> Vec<&Value> {
        reference
            .iter()
            .filter(|a| a["incident_id"] == id)
            .collect()
    };
    let short = incident("SHORT");
    assert!(
        short
            .iter()
            .all(|a| a["level"] == "general" || a["level"] == "larger"),
        "20 minutes of outage are larger at most: {short:?}"
    );
    assert!(short
        .iter()
        .any(|a| a["trigger"] == "clock" && a["level"] == "larger"));
    assert!(short.iter().any(|a| a["status"] == "resolved"));
    let long = incident("LONG");
    let clock: Vec<&&Value> = long.iter().filter(|a| a["trigger"] == "clock").collect();
    assert!(
        clock.iter().any(|a| a["level"] == "major"),
        "the long outage escalates to major by time between its reports: {long:?}"
    );
    let between = |a: &Value| {
        let at = Timestamp::parse_rfc3339(a["at"].as_str().unwrap_or_default()).unwrap();
        at > start.plus_millis(40 * MS_PER_MINUTE) && at < start.plus_millis(95 * MS_PER_MINUTE)
    };
    assert!(clock.iter().all(|a| between(a)), "{clock:?}");
    let p3_gaps: Vec<&Value> = reference
        .iter()
        .filter(|a| a["type"] == "telemetry_gap" && a["participant_id"] == "P3")
        .collect();
    assert_eq!(
        p3_gaps.first().map(|a| a["at"].clone()),
        Some(json!(start
            .plus_millis(28 * MS_PER_MINUTE + 5 * MS_PER_MINUTE + 1)
            .to_string())),
        "P3 is missed 5 minutes and 1 ms after its heartbeat of minute 28"
    );
    assert!(p3_gaps.iter().any(|a| a["status"] == "resolved"
        && a["at"] == json!(start.plus_millis(44 * MS_PER_MINUTE).to_string())));
    // No gap of P2 while it was heartbeating.
    assert!(reference
        .iter()
        .filter(|a| a["type"] == "telemetry_gap" && a["participant_id"] == "P2")
        .all(|a| a["at"].as_str().unwrap_or_default()
            > start.plus_millis(108 * MS_PER_MINUTE).to_string().as_str()));

    // Nothing was refused: no stale report, no dead letter.
    assert_eq!(m.events.with_label_values(&["rejected"]).get(), 0);
    assert_eq!(m.rejected.with_label_values(&["stale"]).get(), 0);
    assert_eq!(
        messages_in(&broker.bootstrap(), &kafka.dead_letter_topic),
        0
    );

    // Caught up, the partition's clock is wall time.
    let lag = |text: &str| {
        sample(
            text,
            "regwatch_partition_clock_lag_seconds",
            &[("topic", topic.as_str()), ("partition", "0")],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = lag(&m.render());
        if now.is_some_and(|s| s < 60.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "regwatch_partition_clock_lag_seconds of {topic}/0: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Live: an outage reported now, started 5 minutes ago less 5 seconds, on a system whose
    // threshold the calendar counts now (trading if the participant's calendar is in session,
    // else custody, counted in wall-clock minutes), escalates by the wall clock.
    let now = wall_now();
    let candidates = [("trading", 5), ("custody", 30)];
    let (system, threshold, started_at) = candidates
        .iter()
        .map(|(system, minutes)| {
            let started_at = now.plus_millis(-(minutes * MS_PER_MINUTE - 5_000));
            (*system, *minutes, started_at)
        })
        .find(|(system, minutes, started_at)| {
            // Replay says it escalates exactly at the threshold.
            let probe = vec![morning_event(
                json!({"participant_id": "P2", "kind": "infosec", "incident_id": "PROBE",
                       "category": "outage", "system": system, "scope": "full",
                       "started_at": started_at.to_string()}),
                now,
                &mut 0,
            )];
            let due = started_at.plus_millis(minutes * MS_PER_MINUTE);
            replay_of(&cfg, &probe, due.plus_millis(1_000))
                .iter()
                .any(|a| a["trigger"] == "clock" && a["at"] == json!(due.to_string()))
        })
        .expect("a system the calendar counts now");
    let mut seq = 1000;
    let (key, value, _) = morning_event(
        json!({"participant_id": "P2", "kind": "infosec", "incident_id": "LIVE",
               "category": "outage", "system": system, "scope": "full",
               "started_at": started_at.to_string()}),
        now,
        &mut seq,
    );
    // Record timestamp: now (the producer's CreateTime).
    crate::broker::produce(&producer, &topic, &[(key, value)]).await;
    let due = started_at.plus_millis(threshold * MS_PER_MINUTE);
    let escalated = collect(
        &kafka,
        &kafka.alerts_topic,
        "backlog-check-live",
        Duration::from_secs(40),
        |seen| {
            seen.iter()
                .map(payload)
                .any(|a| a["incident_id"] == "LIVE" && a["trigger"] == "clock")
        },
    )
    .await;
    let clock = escalated
        .iter()
        .map(payload)
        .find(|a| a["incident_id"] == "LIVE" && a["trigger"] == "clock")
        .unwrap();
    assert_eq!(
        clock["at"],
        json!(due.to_string()),
        "{system}: at the deadline"
    );
    assert_eq!(clock["level"], "larger");
    assert!(
        wall_now() < due.plus_millis(30_000),
        "escalated within 30 s of its deadline"
    );
    assert_eq!(m.events.with_label_values(&["rejected"]).get(), 0);
    eprintln!(
        "backlog of {} events read in {caught_up:?}; live outage on {system} escalated at {due}",
        events.len()
    );
    daemon.stop().await.expect("the daemon stops cleanly");
}
