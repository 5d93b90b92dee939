//! Durable state: what one engine hands out with `take_changes` restores another one that
//! carries on exactly as the first would have (the daemon's restart and rebalance path).

use std::collections::BTreeMap;
use std::sync::Arc;

use regwatch::alert::Alert;
use regwatch::registry::{ParticipantKind, Registry};
use regwatch::score::{ClockMode, Engine, EngineSettings, StateChange, StateRecord};
use serde_json::json;

use crate::support::*;

fn settings() -> EngineSettings {
    EngineSettings {
        clock: ClockMode::External,
        watch_all_from_start: false,
        track_changes: true,
        retention_ms: 60 * 60_000,
        ..EngineSettings::default()
    }
}

fn engine_registry() -> Arc<Registry> {
    Arc::new(
        Registry::new(vec![
            participant("P", ParticipantKind::Broker, 2_500_000),
            participant("Q", ParticipantKind::FuturesExchange, 0),
        ])
        .unwrap(),
    )
}

fn engine() -> Engine {
    Engine::new(engine_registry(), Arc::new(default_rules()), settings())
}

/// A compacted topic: latest record per key, tombstones delete.
#[derive(Default)]
struct Compacted(BTreeMap<String, StateRecord>);

impl Compacted {
    fn apply(&mut self, changes: Vec<StateChange>) {
        for c in changes {
            match c {
                StateChange::Put(r) => {
                    // Records survive a JSON round trip, as they do on the state topic.
                    let text = serde_json::to_string(&r).unwrap();
                    let back: StateRecord = serde_json::from_str(&text).unwrap();
                    assert_eq!(back, r);
                    self.0.insert(r.key(), back);
                }
                StateChange::Deleted(key) => {
                    self.0.remove(&key);
                }
            }
        }
    }
}

fn send(e: &mut Engine, event: serde_json::Value, out: &mut Vec<Alert>) {
    let mut obj = event;
    obj["schema"] = json!("regwatch.event.v1");
    if obj.get("event_id").is_none() {
        obj["event_id"] = json!(format!("{}-{}", obj["participant_id"], obj["occurred_at"]));
    }
    e.process(&serde_json::to_vec(&obj).unwrap(), out).unwrap();
}

fn ids(alerts: &[Alert]) -> Vec<(String, String)> {
    alerts
        .iter()
        .map(|a| (a.alert_id.clone(), a.at.to_string()))
        .collect()
}

#[test]
fn a_restored_engine_escalates_and_alerts_exactly_like_the_original() {
    let mut a = engine();
    let mut store = Compacted::default();
    let mut out_a = Vec::new();
    a.advance_to(at(0.0), &mut out_a);
    send(
        &mut a,
        infosec(0.0, "outage", json!({"system": "trading", "scope": "full"})),
        &mut out_a,
    );
    send(&mut a, merge(heartbeat("Q", 1.0), json!({})), &mut out_a);
    a.advance_to(at(2.0), &mut out_a);
    store.apply(a.take_changes());
    let before_crash = out_a.len();

    // The original carries on to minute 40.
    a.advance_to(at(40.0), &mut out_a);
    let after: Vec<Alert> = out_a.split_off(before_crash);

    // A new owner restores at minute 2 but is only ticked again at minute 40: the deadlines
    // that passed meanwhile fire at their own times, with the same ids.
    let mut b = engine();
    b.advance_to(at(2.0), &mut Vec::new());
    let summary = b.restore(store.0.values().cloned().collect());
    assert_eq!(
        (
            summary.incidents,
            summary.participants,
            summary.skipped.len()
        ),
        (1, 2, 0)
    );
    let mut out_b = Vec::new();
    b.advance_to(at(40.0), &mut out_b);
    assert_eq!(ids(&out_b), ids(&after));
    assert_eq!(
        b.census(),
        a.census(),
        "the census is rebuilt from the restored state and then follows the same transitions"
    );
    assert_eq!(b.census().silent, 2);
    let triggers: Vec<_> = out_b.iter().map(|a| (a.alert_type, a.level)).collect();
    assert_eq!(
        triggers.len(),
        4,
        "larger@5, Q silent@6, major@30 (+P silent): {out_b:?}"
    );
    assert!(out_b
        .iter()
        .any(|a| a.market_order.level == regwatch::score::Level::Major && a.at == at(30.0)));
}

#[test]
fn a_restored_engine_does_not_repeat_alerts_already_sent() {
    let mut a = engine();
    let mut store = Compacted::default();
    let mut out = Vec::new();
    a.advance_to(at(0.0), &mut out);
    send(
        &mut a,
        infosec(0.0, "data_leak", json!({"records_exposed": 200_000})),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    store.apply(a.take_changes());

    let mut b = engine();
    b.advance_to(at(1.0), &mut Vec::new());
    b.restore(store.0.values().cloned().collect());
    let mut out_b = Vec::new();
    // The same report again (a redelivery after the crash): nothing new to say.
    send(
        &mut b,
        infosec(0.0, "data_leak", json!({"records_exposed": 200_000})),
        &mut out_b,
    );
    assert!(out_b.is_empty(), "{out_b:?}");
    send(
        &mut b,
        infosec(2.0, "data_leak", json!({"records_exposed": 2_000_000})),
        &mut out_b,
    );
    assert_eq!(out_b.len(), 1, "a real escalation still fires");
}

#[test]
fn evicted_incidents_become_tombstones_and_changes_are_handed_out_once() {
    let mut a = engine();
    let mut store = Compacted::default();
    let mut out = Vec::new();
    a.advance_to(at(0.0), &mut out);
    send(
        &mut a,
        infosec(0.0, "malware", json!({"status": "resolved"})),
        &mut out,
    );
    store.apply(a.take_changes());
    let key = regwatch::score::incident_key("P", "I");
    assert!(store.0.contains_key(&key) && store.0.contains_key("p|P"));
    assert!(a.take_changes().is_empty(), "nothing changed since");

    // A restored resolved incident keeps the retention it had (an hour from its resolution),
    // not a fresh one from the restore.
    let mut b = engine();
    b.advance_to(at(30.0), &mut Vec::new());
    b.restore(store.0.values().cloned().collect());
    b.advance_to(at(59.9), &mut Vec::new());
    assert_eq!(b.incidents_held(), 1);
    b.advance_to(at(60.1), &mut Vec::new());
    assert_eq!(b.incidents_held(), 0);
    // Restored again without a clock of its own: it starts at the state's clock, and the
    // retention still ends an hour after the resolution.
    let mut c = engine();
    c.restore(store.0.values().cloned().collect());
    assert_eq!(
        c.clock(),
        Some(at(0.0)),
        "the clock the state was saved with"
    );
    c.advance_to(at(59.9), &mut Vec::new());
    assert_eq!(c.incidents_held(), 1);
    c.advance_to(at(60.1), &mut Vec::new());
    assert_eq!(c.incidents_held(), 0);

    a.advance_to(at(61.0), &mut out);
    store.apply(a.take_changes());
    assert!(
        !store.0.contains_key("i|P|I"),
        "evicted: deleted from the state"
    );
    assert!(store.0.contains_key("p|P"));
}

#[test]
fn a_participant_silent_past_the_liveness_retention_is_forgotten_with_a_tombstone() {
    let forgetting = || {
        Engine::new(
            engine_registry(),
            Arc::new(default_rules()),
            EngineSettings {
                liveness_retention_ms: 60 * 60_000,
                ..settings()
            },
        )
    };
    let mut a = forgetting();
    let mut store = Compacted::default();
    let mut out = Vec::new();
    a.advance_to(at(0.0), &mut out);
    send(&mut a, heartbeat("P", 0.0), &mut out);
    store.apply(a.take_changes());
    assert!(store.0.contains_key("p|P"));

    a.advance_to(at(6.0), &mut out);
    assert_eq!(out.len(), 1, "the gap fired: {out:?}");
    assert_eq!(a.census().silent, 1);
    store.apply(a.take_changes());
    a.advance_to(at(59.9), &mut out);
    assert!(
        store.0.contains_key("p|P"),
        "still watched before the retention"
    );
    assert_eq!(a.census().silent, 1);

    // An hour after it was last heard: forgotten, its record deleted, no alert.
    a.advance_to(at(60.1), &mut out);
    assert_eq!(out.len(), 1, "forgetting alerts nothing: {out:?}");
    assert_eq!(a.census().silent, 0);
    assert_eq!(a.stats().liveness_forgotten, 1);
    store.apply(a.take_changes());
    assert!(
        !store.0.contains_key("p|P"),
        "liveness deleted from the state"
    );

    // A restored engine does not watch it; heard again, it is watched anew (no gap ended).
    let mut b = forgetting();
    b.advance_to(at(61.0), &mut Vec::new());
    b.restore(store.0.values().cloned().collect());
    b.advance_to(at(200.0), &mut out);
    assert_eq!(out.len(), 1, "nobody watched, nothing fires");
    send(&mut a, heartbeat("P", 70.0), &mut out);
    assert_eq!(
        out.len(),
        1,
        "a forgotten participant's first message ends no gap"
    );
    store.apply(a.take_changes());
    assert!(store.0.contains_key("p|P"));
}

#[test]
fn state_keys_do_not_collide_when_ids_contain_the_separator() {
    use regwatch::score::incident_key;
    assert_ne!(incident_key("A", "x|y"), incident_key("A|x", "y"));
}

#[test]
fn records_of_unknown_participants_are_skipped_with_a_reason() {
    let mut a = engine();
    let mut store = Compacted::default();
    let mut out = Vec::new();
    a.advance_to(at(0.0), &mut out);
    send(&mut a, infosec(0.0, "malware", json!({})), &mut out);
    store.apply(a.take_changes());
    let registry = Registry::new(vec![participant("Q", ParticipantKind::Broker, 0)]).unwrap();
    let mut b = Engine::new(Arc::new(registry), Arc::new(default_rules()), settings());
    b.advance_to(at(1.0), &mut Vec::new());
    let summary = b.restore(store.0.values().cloned().collect());
    assert_eq!(summary.incidents, 0);
    assert_eq!(summary.skipped.len(), 2, "{:?}", summary.skipped);
    assert!(summary
        .skipped
        .iter()
        .all(|s| s.contains("no longer registered")));
    let mut forgotten = summary.forgotten.clone();
    forgotten.sort();
    assert_eq!(
        forgotten,
        ["i|1|P|I", "p|P"],
        "their records are to be deleted"
    );
}

fn reminding() -> EngineSettings {
    EngineSettings {
        reminder_interval_ms: 60 * 60_000,
        ..settings()
    }
}

fn reminding_engine() -> Engine {
    let registry =
        Registry::new(vec![participant("P", ParticipantKind::Broker, 2_500_000)]).unwrap();
    Engine::new(Arc::new(registry), Arc::new(default_rules()), reminding())
}

fn reminder_ids(alerts: &[Alert]) -> Vec<(String, String, Option<u32>, Option<String>)> {
    alerts
        .iter()
        .map(|a| {
            (
                a.alert_id.clone(),
                a.at.to_string(),
                a.reminder,
                a.reminder_of.clone(),
            )
        })
        .collect()
}

#[test]
fn a_restored_engine_keeps_the_reminder_schedule_ks_and_ids() {
    let mut a = reminding_engine();
    let mut store = Compacted::default();
    let mut out_a = Vec::new();
    a.advance_to(at(0.0), &mut out_a);
    send(
        &mut a,
        infosec(0.0, "outage", json!({"system": "trading", "scope": "full"})),
        &mut out_a,
    );
    // Major at 30 (the anchor); reminder 1 at 90.
    a.advance_to(at(95.0), &mut out_a);
    assert_eq!(out_a.last().and_then(|r| r.reminder), Some(1));
    store.apply(a.take_changes());
    let key = regwatch::score::incident_key("P", "I");
    match &store.0[&key] {
        StateRecord::Incident(r) => {
            assert_eq!(
                (r.reminder_anchor_ms, r.reminders_sent),
                (Some(at(30.0).millis()), 1)
            );
        }
        other => panic!("not an incident record: {other:?}"),
    }
    let before_crash = out_a.len();
    a.advance_to(at(300.0), &mut out_a);
    let after = out_a.split_off(before_crash);
    assert_eq!(
        after.iter().map(|r| r.reminder).collect::<Vec<_>>(),
        vec![Some(2), Some(3), Some(4)],
        "at 150, 210, 270"
    );

    // The new owner restores at minute 200: reminder 2 (due at 150, while nobody owned the
    // incident) fires at its own time, then 3 and 4, with the original's ks and ids.
    let mut b = reminding_engine();
    b.advance_to(at(200.0), &mut Vec::new());
    let summary = b.restore(store.0.values().cloned().collect());
    assert_eq!(summary.incidents, 1);
    let mut out_b = Vec::new();
    b.advance_to(at(300.0), &mut out_b);
    assert_eq!(reminder_ids(&out_b), reminder_ids(&after));
    assert_eq!(out_b[0].at, at(150.0));

    // And it carries on: the state it hands out continues the count.
    store.apply(b.take_changes());
    match &store.0[&key] {
        StateRecord::Incident(r) => assert_eq!(r.reminders_sent, 4),
        other => panic!("not an incident record: {other:?}"),
    }
}

#[test]
fn a_state_record_without_reminder_fields_loads_and_is_anchored_at_the_restore() {
    // Written with reminders off (as by a version without them): no reminder fields at all.
    let mut a = Engine::new(
        Arc::new(
            Registry::new(vec![participant("P", ParticipantKind::Broker, 2_500_000)]).unwrap(),
        ),
        Arc::new(default_rules()),
        settings(),
    );
    let mut store = Compacted::default();
    let mut out = Vec::new();
    a.advance_to(at(0.0), &mut out);
    send(
        &mut a,
        infosec(0.0, "outage", json!({"system": "trading", "scope": "full"})),
        &mut out,
    );
    a.advance_to(at(40.0), &mut out);
    store.apply(a.take_changes());
    let key = regwatch::score::incident_key("P", "I");
    let text = serde_json::to_string(&store.0[&key]).unwrap();
    assert!(!text.contains("reminder"), "{text}");

    let mut b = reminding_engine();
    b.advance_to(at(50.0), &mut Vec::new());
    b.restore(store.0.values().cloned().collect());
    let mut out_b = Vec::new();
    b.advance_to(at(109.0), &mut out_b);
    assert!(out_b.is_empty(), "{out_b:?}");
    b.advance_to(at(110.0), &mut out_b);
    assert_eq!(
        (out_b.len(), out_b[0].reminder, out_b[0].at),
        (1, Some(1), at(110.0)),
        "anchored at the restore (50), first reminder an hour later"
    );
}

/// Restores `records` into a reminding engine (its clock at `clock`, or the one the records
/// imply), moves the clock on by `later_ms`, and returns the reminders that fired, on a
/// thread given 30 s: a schedule that never ends would hang, not fail.
fn reminders_after_restore(
    records: Vec<StateRecord>,
    clock: Option<regwatch::time::Timestamp>,
    later_ms: i64,
) -> Vec<Alert> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = reminding_engine();
        if let Some(c) = clock {
            b.advance_to(c, &mut Vec::new());
        }
        assert_eq!(b.restore(records).incidents, 1);
        let start = b.clock().expect("a restored clock");
        let mut out = Vec::new();
        b.advance_to(start.plus_millis(later_ms), &mut out);
        // The schedule does not go on in the background either.
        let mut more = Vec::new();
        b.advance_to(start.plus_millis(later_ms + 48 * 60 * 60_000), &mut more);
        out.extend(more);
        out.retain(|a| a.reminder.is_some());
        for a in &out {
            assert!(!a.to_json().is_empty());
        }
        let _ = tx.send(out);
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("restoring a hostile reminder schedule hangs (or panicked)")
}

/// Found by fuzzing (`fuzz/`, target `state_record`): a restore takes a state record's
/// reminder anchor and count as they are, and the clock from any record. With the clock
/// billions of reminder intervals past the anchor (a participant record heard in the year
/// 563 000), the count saturated at `u32::MAX` and that reminder fired again forever; with an
/// anchor near `i64::MIN`, `now - anchor` overflowed. Either way the partition hung,
/// allocating reminders until it ran out of memory. Now at most `MAX_OVERDUE_REMINDERS` fire
/// and the schedule ends.
#[test]
fn a_hostile_reminder_schedule_in_restored_state_fires_a_bounded_number_of_reminders() {
    use regwatch::score::{ParticipantRecord, MAX_OVERDUE_REMINDERS};

    // A genuine anchored incident, as the daemon writes it.
    let mut a = reminding_engine();
    let mut store = Compacted::default();
    a.advance_to(at(0.0), &mut Vec::new());
    send(
        &mut a,
        infosec(0.0, "outage", json!({"system": "trading", "scope": "full"})),
        &mut Vec::new(),
    );
    a.advance_to(at(95.0), &mut Vec::new());
    store.apply(a.take_changes());
    let key = regwatch::score::incident_key("P", "I");
    let StateRecord::Incident(genuine) = store.0[&key].clone() else {
        panic!("not an incident record");
    };
    assert!(genuine.reminder_anchor_ms.is_some());
    let with = |f: &dyn Fn(&mut regwatch::score::IncidentRecord)| {
        let mut r = genuine.clone();
        f(&mut r);
        StateRecord::Incident(r)
    };
    let bounded = MAX_OVERDUE_REMINDERS as usize;

    // The fuzzer's case: the clock restored from a participant heard absurdly late.
    let far = StateRecord::Participant(ParticipantRecord {
        v: regwatch::score::STATE_VERSION,
        participant_id: "P".into(),
        heard_at_ms: 17_724_132_600_000_000,
        silent: false,
        gap_held: false,
    });
    let fired = reminders_after_restore(vec![with(&|_| {}), far], None, 60 * 60_000);
    assert_eq!(fired.len(), bounded);
    assert_eq!(fired.last().and_then(|r| r.reminder), Some(u32::MAX));

    // Anchors far in the past, down to i64::MIN (the subtraction overflowed).
    for anchor in [i64::MIN, -100_000_000_000_000_000] {
        let r = with(&|r| r.reminder_anchor_ms = Some(anchor));
        let fired = reminders_after_restore(vec![r], Some(at(200.0)), 60 * 60_000);
        assert_eq!(fired.len(), bounded, "anchor {anchor}");
    }

    // A count that is already exhausted schedules nothing.
    let r = with(&|r| r.reminders_sent = u32::MAX);
    assert!(reminders_after_restore(vec![r], Some(at(200.0)), 60 * 60_000).is_empty());
}
