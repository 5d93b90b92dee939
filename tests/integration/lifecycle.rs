//! Incident lifecycle through the engine: escalation by the clock alone, monotonic levels,
//! resolution, duplicates, telemetry gaps, retention and eviction, capacity, alert ids.

use regwatch::alert::{AlertStatus, AlertType, Trigger};
use regwatch::decode::Reject;
use regwatch::registry::ParticipantKind;
use regwatch::score::{EngineSettings, Exemption, Level::*, Outcome};
use serde_json::json;

use crate::support::*;

fn full_trading_outage(minutes: f64) -> serde_json::Value {
    infosec(
        minutes,
        "outage",
        json!({"system": "trading", "scope": "full"}),
    )
}

#[test]
fn an_open_outage_escalates_on_the_clock_alone_at_the_exact_threshold() {
    let mut s = Sandbox::broker();
    s.send(full_trading_outage(0.0)).unwrap();
    let opened = s.take();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].trigger, Trigger::Opened);
    assert_eq!(opened[0].market_order.level, General);

    s.advance(4.99);
    assert!(s.take().is_empty(), "nothing before 5 minutes");
    s.advance(5.0);
    let larger = s.take();
    assert_eq!(larger.len(), 1);
    assert_eq!(
        (larger[0].trigger, larger[0].market_order.level),
        (Trigger::Clock, Larger)
    );
    assert_eq!(
        larger[0].at,
        at(5.0),
        "alert time is the deadline, not the tick"
    );
    assert_eq!(larger[0].event_id, Option::None);

    // One big jump of the clock fires the intermediate deadline at its own time.
    s.advance(45.0);
    let major = s.take();
    assert_eq!(major.len(), 1);
    assert_eq!(major[0].market_order.level, Major);
    assert_eq!(major[0].at, at(30.0));
    assert_eq!(major[0].exemption, Exemption::Ineligible);
    assert_eq!(major[0].duration_minutes, Some(30.0));
    s.advance(600.0);
    assert!(
        s.take().is_empty(),
        "no rule above major for a broker: no more deadlines"
    );
}

#[test]
fn futures_exchange_outage_walks_up_every_level_with_no_new_report() {
    let mut s = Sandbox::with(
        vec![participant("P", ParticipantKind::FuturesExchange, 0)],
        quiet(),
        default_rules(),
    );
    // Monday 09:30 Beijing, cn-futures: sessions 09:00-10:15, 10:30-11:30, 13:30-15:00.
    s.send(infosec(0.0, "outage", json!({"system": "trading"})))
        .unwrap();
    s.advance(300.0);
    let alerts = s.take();
    let steps: Vec<_> = alerts
        .iter()
        .map(|a| (a.market_order.level, a.at, a.trigger, a.trading_minutes))
        .collect();
    assert_eq!(
        steps,
        vec![
            (General, at(0.0), Trigger::Opened, Some(0.0)),
            (Larger, at(3.0), Trigger::Clock, Some(3.0)),
            (Major, at(30.0), Trigger::Clock, Some(30.0)),
            // 45 minutes to 10:15, 60 from 10:30 to 11:30, 15 after lunch: 13:45, 255
            // wall-clock minutes after the start.
            (Extraordinary, at(255.0), Trigger::Clock, Some(120.0)),
        ]
    );
    assert_eq!(alerts[3].duration_minutes, Some(255.0));
    assert_eq!(alerts[3].calendar.as_deref(), Some("cn-futures"));
    let reason = &alerts[3].market_order.reasons[0];
    assert_eq!(
        (
            reason.metric.as_str(),
            reason.observed,
            reason.basis.as_deref()
        ),
        ("trading_minutes", 120.0, Some("sessions of cn-futures"))
    );
    assert!(
        alerts[3]
            .summary
            .contains("trading_minutes 120 >= 120 (sessions of cn-futures)"),
        "{}",
        alerts[3].summary
    );
}

#[test]
fn an_earlier_started_at_moves_the_deadline_forward() {
    let mut s = Sandbox::broker();
    s.send(full_trading_outage(0.0)).unwrap();
    s.send(infosec(
        1.0,
        "outage",
        json!({"status": "update", "started_at": ts(-3.0)}),
    ))
    .unwrap();
    s.take();
    s.advance(2.0);
    let a = s.take();
    assert_eq!(a.len(), 1, "5 minutes after the earliest start");
    assert_eq!((a[0].market_order.level, a[0].at), (Larger, at(2.0)));
}

#[test]
fn levels_never_fall_and_smaller_figures_emit_nothing() {
    let mut s = Sandbox::broker();
    s.send(infosec(
        0.0,
        "data_leak",
        json!({"records_exposed": 200_000}),
    ))
    .unwrap();
    assert_eq!(s.take()[0].investor_loss.level, Major);
    s.send(infosec(
        1.0,
        "data_leak",
        json!({"status": "update", "records_exposed": 10}),
    ))
    .unwrap();
    assert!(s.take().is_empty());
    s.send(infosec(
        2.0,
        "data_leak",
        json!({"status": "update", "records_exposed": 2_000_000}),
    ))
    .unwrap();
    let a = s.take();
    assert_eq!(
        (a[0].investor_loss.level, a[0].trigger),
        (Extraordinary, Trigger::Escalated)
    );
    let resolved = {
        s.send(infosec(
            3.0,
            "data_leak",
            json!({"status": "resolved", "records_exposed": 5}),
        ))
        .unwrap();
        s.take()
    };
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].status, AlertStatus::Resolved);
    assert_eq!(
        resolved[0].investor_loss.level, Extraordinary,
        "resolution keeps the peak"
    );
}

#[test]
fn signed_moves_keep_the_largest_magnitude() {
    let mut s = Sandbox::broker();
    s.send(trading(
        0.0,
        "runaway_algo",
        json!({"index_move_pct": -1.5}),
    ))
    .unwrap();
    assert_eq!(s.take()[0].market_order.level, Major);
    s.send(trading(
        1.0,
        "runaway_algo",
        json!({"status": "update", "index_move_pct": 0.5}),
    ))
    .unwrap();
    assert!(s.take().is_empty());
    s.send(trading(
        2.0,
        "runaway_algo",
        json!({"status": "update", "index_move_pct": -3.2}),
    ))
    .unwrap();
    let a = s.take();
    assert_eq!(a[0].market_order.level, Extraordinary);
    assert_eq!(a[0].market_order.reasons[0].observed, 3.2);
}

#[test]
fn resolution_emits_once_and_later_reports_are_ignored() {
    let mut s = Sandbox::broker();
    s.send(full_trading_outage(0.0)).unwrap();
    s.send(infosec(12.0, "outage", json!({"status": "resolved"})))
        .unwrap();
    let a = s.take();
    let kinds: Vec<_> = a
        .iter()
        .map(|a| (a.status, a.trigger, a.market_order.level))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (AlertStatus::Firing, Trigger::Opened, General),
            (AlertStatus::Firing, Trigger::Clock, Larger),
            (AlertStatus::Resolved, Trigger::Resolved, Larger),
        ]
    );
    assert_eq!(a[2].resolved_at, Some(at(12.0)));
    assert_eq!(a[2].duration_minutes, Some(12.0));
    assert_eq!(
        s.send(infosec(
            13.0,
            "outage",
            json!({"status": "update", "loss_cny": 1e9})
        )),
        Ok(Outcome::AfterResolution)
    );
    s.advance(100.0);
    assert!(s.take().is_empty(), "a resolved outage has no deadline");
}

#[test]
fn an_incident_reported_already_resolved_fires_then_resolves() {
    let mut s = Sandbox::broker();
    s.send(infosec(
        0.0,
        "outage",
        json!({"status": "resolved", "system": "trading",
        "started_at": ts(-19.0)}),
    ))
    .unwrap();
    let a = s.take();
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].status, a[0].market_order.level),
        (AlertStatus::Firing, Larger)
    );
    assert_eq!(
        (a[1].status, a[1].market_order.level),
        (AlertStatus::Resolved, Larger)
    );
    assert_ne!(a[0].alert_id, a[1].alert_id);
}

#[test]
fn duplicate_event_ids_change_nothing() {
    let mut s = Sandbox::broker();
    let e = merge(full_trading_outage(0.0), json!({"event_id": "same"}));
    assert_eq!(s.send(e.clone()), Ok(Outcome::Graded));
    assert_eq!(s.take().len(), 1);
    assert_eq!(s.send(e), Ok(Outcome::Duplicate));
    // Even a duplicate id with other content is the same event, redelivered.
    let changed = merge(
        infosec(1.0, "outage", json!({"loss_cny": 5e8})),
        json!({"event_id": "same"}),
    );
    assert_eq!(s.send(changed), Ok(Outcome::Duplicate));
    assert!(s.take().is_empty());
    assert_eq!(s.engine.stats().duplicates, 2);
}

#[test]
fn dedup_window_is_bounded_and_ids_are_per_participant() {
    let settings = EngineSettings {
        dedup_window: 4,
        ..quiet()
    };
    let mut s = Sandbox::with(
        vec![
            participant("P", ParticipantKind::Broker, 1),
            participant("Q", ParticipantKind::Broker, 1),
        ],
        settings,
        default_rules(),
    );
    // Another participant may use the same event id: not a duplicate.
    assert_eq!(
        s.send(merge(heartbeat("Q", 0.0), json!({"event_id": "h0"}))),
        Ok(Outcome::Heartbeat)
    );
    for i in 0..6 {
        s.send(merge(
            heartbeat("P", i as f64),
            json!({"event_id": format!("h{i}")}),
        ))
        .unwrap();
    }
    let again = |s: &mut Sandbox, i: usize| {
        s.send(merge(
            heartbeat("P", 9.0),
            json!({"event_id": format!("h{i}")}),
        ))
    };
    assert_eq!(again(&mut s, 5), Ok(Outcome::Duplicate));
    assert_eq!(again(&mut s, 2), Ok(Outcome::Duplicate));
    assert_eq!(
        again(&mut s, 1),
        Ok(Outcome::Heartbeat),
        "beyond the window: processed again"
    );
}

#[test]
fn telemetry_gap_fires_once_after_more_than_the_gap_and_resolves_when_heard() {
    let mut s = Sandbox::with(
        vec![
            participant("A", ParticipantKind::Broker, 1),
            participant("B", ParticipantKind::Broker, 1),
        ],
        EngineSettings::default(),
        default_rules(),
    );
    s.send(heartbeat("A", 0.0)).unwrap();
    s.send(heartbeat("B", 1.0)).unwrap();
    s.send(heartbeat("B", 5.0)).unwrap();
    assert!(
        s.take().is_empty(),
        "exactly 5 minutes of silence is not longer than 5 minutes"
    );
    s.send(heartbeat("B", 6.0)).unwrap();
    let gap = s.take();
    assert_eq!(gap.len(), 1);
    assert_eq!(
        (
            gap[0].alert_type,
            gap[0].status,
            gap[0].participant_id.as_str()
        ),
        (AlertType::TelemetryGap, AlertStatus::Firing, "A")
    );
    assert_eq!(gap[0].last_heard_at, Some(at(0.0)));
    assert_eq!(gap[0].incident_id, Option::None);
    s.send(heartbeat("B", 9.0)).unwrap();
    s.advance(10.0);
    assert!(s.take().is_empty(), "a silent participant is reported once");
    s.send(heartbeat("A", 12.0)).unwrap();
    let back = s.take();
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].status, back[0].trigger),
        (AlertStatus::Resolved, Trigger::Heard)
    );
    assert_eq!(back[0].last_heard_at, Some(at(0.0)));
    assert_ne!(back[0].alert_id, gap[0].alert_id);
}

#[test]
fn resolved_incidents_are_evicted_after_retention_and_the_id_can_be_reused() {
    let settings = EngineSettings {
        retention_ms: 60 * 60_000,
        ..quiet()
    };
    let mut s = Sandbox::one(ParticipantKind::Broker, 1, settings);
    s.send(infosec(0.0, "malware", json!({"status": "resolved"})))
        .unwrap();
    assert_eq!(s.engine.incidents_held(), 1);
    s.advance(59.0);
    assert_eq!(
        s.send(infosec(59.0, "malware", json!({}))),
        Ok(Outcome::AfterResolution)
    );
    s.advance(61.0);
    assert_eq!(s.engine.incidents_held(), 0);
    assert_eq!(s.engine.stats().evicted, 1);
    s.take();
    assert_eq!(
        s.send(infosec(62.0, "malware", json!({}))),
        Ok(Outcome::Graded)
    );
    assert_eq!(s.take().len(), 1, "a new incident under the old id");
}

#[test]
fn capacity_per_participant_is_enforced_and_counted() {
    let settings = EngineSettings {
        max_open_per_participant: 2,
        ..quiet()
    };
    let mut s = Sandbox::with(
        vec![
            participant("P", ParticipantKind::Broker, 1),
            participant("Q", ParticipantKind::Broker, 1),
        ],
        settings,
        default_rules(),
    );
    for id in ["a", "b"] {
        s.send(infosec(0.0, "malware", json!({"incident_id": id})))
            .unwrap();
    }
    assert_eq!(
        s.send(infosec(0.0, "malware", json!({"incident_id": "c"}))),
        Err(Reject::ParticipantCapacity(2))
    );
    // Other participants are not starved, and known incidents still take reports.
    assert_eq!(
        s.send(infosec(0.0, "malware", json!({"participant_id": "Q"}))),
        Ok(Outcome::Graded)
    );
    assert_eq!(
        s.send(infosec(1.0, "malware", json!({"incident_id": "a"}))),
        Ok(Outcome::Graded)
    );
    s.send(infosec(
        2.0,
        "malware",
        json!({"incident_id": "a", "status": "resolved"}),
    ))
    .unwrap();
    assert_eq!(
        s.send(infosec(3.0, "malware", json!({"incident_id": "c"}))),
        Ok(Outcome::Graded)
    );
}

#[test]
fn engine_capacity_evicts_resolved_incidents_early_then_refuses() {
    let settings = EngineSettings {
        max_incidents: 2,
        ..quiet()
    };
    let mut s = Sandbox::one(ParticipantKind::Broker, 1, settings);
    s.send(infosec(
        0.0,
        "malware",
        json!({"incident_id": "a", "status": "resolved"}),
    ))
    .unwrap();
    s.send(infosec(0.0, "malware", json!({"incident_id": "b"})))
        .unwrap();
    assert_eq!(
        s.send(infosec(1.0, "malware", json!({"incident_id": "c"}))),
        Ok(Outcome::Graded)
    );
    assert_eq!(s.engine.stats().evicted_early, 1);
    assert_eq!(
        s.send(infosec(2.0, "malware", json!({"incident_id": "d"}))),
        Err(Reject::EngineCapacity(2))
    );
    assert_eq!(s.engine.open_incidents(), 2);
}

#[test]
fn a_participant_churning_incidents_recycles_its_own_retention_not_others() {
    // Room for 6 incidents, a fair share of 3 each for P and Q.
    let settings = EngineSettings {
        max_incidents: 6,
        ..quiet()
    };
    let mut s = Sandbox::with(
        vec![
            participant("P", ParticipantKind::Broker, 1),
            participant("Q", ParticipantKind::Broker, 1),
        ],
        settings,
        default_rules(),
    );
    let q = |minutes: f64, id: &str, status: &str| {
        json!({"participant_id": "Q", "kind": "infosec", "occurred_at": ts(minutes),
               "incident_id": id, "category": "malware", "status": status})
    };
    s.send(q(0.0, "q1", "resolved")).unwrap();
    s.send(q(0.0, "q2", "resolved")).unwrap();
    // P opens and resolves 50 incidents: the engine is full from the sixth on.
    for i in 0..50 {
        let id = format!("p{i}");
        s.send(infosec(
            1.0 + f64::from(i),
            "malware",
            json!({"incident_id": id, "status": "resolved"}),
        ))
        .unwrap();
    }
    assert_eq!(s.engine.incidents_held(), 6);
    assert!(s.engine.stats().evicted_early >= 46);
    // Q's resolved incidents are still held: their late reports change nothing.
    s.take();
    assert_eq!(
        s.send(q(60.0, "q1", "update")),
        Ok(Outcome::AfterResolution)
    );
    assert_eq!(
        s.send(q(60.0, "q2", "update")),
        Ok(Outcome::AfterResolution)
    );
    // A participant at its share with nothing of its own to recycle is refused, even
    // though another's resolved incidents could go.
    for i in 0..4 {
        let id = format!("open{i}");
        let sent = s.send(infosec(70.0, "malware", json!({"incident_id": id})));
        assert_eq!(sent, Ok(Outcome::Graded), "{i}");
    }
    assert_eq!(
        s.send(infosec(71.0, "malware", json!({"incident_id": "one-more"}))),
        Err(Reject::EngineCapacity(6))
    );
    assert_eq!(
        s.send(q(72.0, "q1", "update")),
        Ok(Outcome::AfterResolution)
    );
    // Below its share, Q may take room from P, which holds more than its share.
    assert_eq!(s.send(q(73.0, "q3", "open")), Ok(Outcome::Graded));
    assert_eq!(s.engine.incidents_held(), 6);
}

#[test]
fn a_participant_flooding_the_dedup_window_makes_others_redeliveries_graded_again_harmlessly() {
    // The dedup window is engine-wide (dedup.rs): a flood of one participant pushes others'
    // event ids out, and their redeliveries are graded again. That changes nothing, since
    // figures are cumulative maxima and alerts fire on transitions only.
    let settings = EngineSettings {
        dedup_window: 8,
        ..quiet()
    };
    let mut s = Sandbox::with(
        vec![
            participant("P", ParticipantKind::Broker, 1),
            participant("Q", ParticipantKind::Broker, 1),
        ],
        settings,
        default_rules(),
    );
    let report = json!({"participant_id": "Q", "kind": "infosec", "occurred_at": ts(0.0),
        "event_id": "q-1", "incident_id": "leak", "category": "data_leak",
        "records_exposed": 200_000});
    s.send(report.clone()).unwrap();
    assert_eq!(s.take().len(), 1);
    assert_eq!(s.send(report.clone()), Ok(Outcome::Duplicate));
    for i in 0..20 {
        s.send(
            json!({"participant_id": "P", "kind": "heartbeat", "occurred_at": ts(1.0),
            "event_id": format!("hb-{i}")}),
        )
        .unwrap();
    }
    assert_eq!(
        s.send(report),
        Ok(Outcome::Graded),
        "pushed out of the window"
    );
    assert!(s.take().is_empty(), "graded again, nothing alerted again");
}

#[test]
fn a_report_of_another_kind_for_the_same_incident_is_rejected() {
    let mut s = Sandbox::broker();
    s.send(infosec(0.0, "malware", json!({}))).unwrap();
    assert_eq!(
        s.send(trading(1.0, "spoofing", json!({}))),
        Err(Reject::KindChanged)
    );
}

#[test]
fn minimum_alert_level_holds_alerts_back_until_reached() {
    let settings = EngineSettings {
        min_alert_level: Major,
        ..quiet()
    };
    let mut s = Sandbox::one(ParticipantKind::Broker, 2_500_000, settings);
    s.send(full_trading_outage(0.0)).unwrap();
    s.advance(20.0);
    assert!(
        s.take().is_empty(),
        "general and larger are below the minimum"
    );
    s.advance(30.0);
    let a = s.take();
    assert_eq!(
        (a.len(), a[0].trigger, a[0].level),
        (1, Trigger::Opened, Major)
    );
    // An incident that never reached the minimum is not announced when it resolves.
    s.send(infosec(31.0, "malware", json!({"incident_id": "small"})))
        .unwrap();
    s.send(infosec(
        32.0,
        "malware",
        json!({"incident_id": "small", "status": "resolved"}),
    ))
    .unwrap();
    assert!(s.take().is_empty());
}

#[test]
fn the_same_state_gives_the_same_alert_id_across_engines() {
    let run = |split: bool| {
        let mut s = Sandbox::broker();
        s.send(full_trading_outage(0.0)).unwrap();
        if split {
            s.advance(10.0);
        }
        s.advance(40.0);
        s.take().into_iter().map(|a| a.alert_id).collect::<Vec<_>>()
    };
    let ids = run(false);
    assert_eq!(ids.len(), 3);
    assert_eq!(ids, run(true));
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 3);
    assert!(ids
        .iter()
        .all(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())));
}

#[test]
fn out_of_order_events_never_move_the_clock_back() {
    let mut s = Sandbox::broker();
    s.send(full_trading_outage(0.0)).unwrap();
    s.send(heartbeat("P", 6.0)).unwrap();
    assert_eq!(s.take().len(), 2);
    s.send(heartbeat("P", 1.0)).unwrap();
    assert_eq!(s.engine.clock(), Some(at(6.0)));
    s.send(infosec(2.0, "outage", json!({"status": "update"})))
        .unwrap();
    assert!(s.take().is_empty(), "the late update changes nothing");
}

#[test]
fn scores_stay_in_their_level_band_and_never_fall() {
    let mut s = Sandbox::broker();
    let mut last = 0;
    for (i, loss) in [1e3, 5e5, 9e5, 1e6, 5e6, 1e7, 1e8].into_iter().enumerate() {
        s.send(infosec(i as f64, "data_leak", json!({"loss_cny": loss})))
            .unwrap();
        for a in s.take() {
            let r = &a.investor_loss;
            let band = match r.level {
                General => 1..=24,
                Larger => 25..=49,
                Major => 50..=74,
                Extraordinary => 75..=100,
                None => 0..=0,
            };
            assert!(
                band.contains(&r.score),
                "{:?} score {} for loss {loss}",
                r.level,
                r.score
            );
            assert!(r.score >= last, "scores never fall");
            last = r.score;
        }
    }
    assert_eq!(last, 75, "at the extraordinary threshold");
    s.send(infosec(
        9.0,
        "data_leak",
        json!({"incident_id": "big", "loss_cny": 2e8}),
    ))
    .unwrap();
    assert_eq!(
        s.take()[0].investor_loss.score,
        100,
        "twice the threshold scores 100"
    );
}

#[test]
fn reasons_name_rule_observed_value_threshold_and_source() {
    let mut s = Sandbox::broker();
    s.send(full_trading_outage(0.0)).unwrap();
    s.advance(31.0);
    let a = s.take().pop().unwrap();
    let r = &a.market_order.reasons;
    assert_eq!(r.len(), 2, "both conditions of the rule: {r:?}");
    assert_eq!(
        (
            r[0].rule.as_str(),
            r[0].metric.as_str(),
            r[0].observed,
            r[0].threshold
        ),
        ("mo.broker.major", "trading_minutes", 30.0, 30.0)
    );
    assert_eq!(
        (r[1].metric.as_str(), r[1].observed, r[1].threshold),
        ("effective_customers", 2_500_000.0, 100_000.0)
    );
    assert!(r[0].cite.contains("CSRC"));
    assert!(
        a.summary.contains("mo.broker.major") && a.summary.contains("INELIGIBLE"),
        "{}",
        a.summary
    );
    let json: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
    for key in [
        "alert_id",
        "type",
        "participant_id",
        "incident_id",
        "status",
        "level",
        "investor_loss",
        "market_order",
        "exemption",
        "at",
    ] {
        assert!(json.get(key).is_some(), "contract field {key}");
    }
    assert_eq!(
        json["market_order"]["reasons"][0]["rule"],
        "mo.broker.major"
    );
}

#[test]
fn a_rules_reload_regrades_open_incidents_and_reschedules_deadlines() {
    let mut s = Sandbox::broker();
    s.send(full_trading_outage(0.0)).unwrap();
    s.send(infosec(0.0, "malware", json!({"incident_id": "M"})))
        .unwrap();
    s.advance(2.0);
    assert_eq!(s.take().len(), 2, "both opened at general");
    let stricter = regwatch::score::Rules::compile(
        r#"
        [[rule]]
        id = "strict.now"
        axis = "investor_loss"
        level = "larger"
        when = { category = ["malware"] }
        cite = "test grid"
        [[rule]]
        id = "strict.soon"
        axis = "market_order"
        level = "major"
        when = { category = ["outage"] }
        all = ["minutes >= 3"]
        cite = "test grid"
        "#,
    )
    .unwrap();
    s.engine
        .set_rules(std::sync::Arc::new(stricter), &mut s.alerts);
    let now = s.take();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(
        (
            now[0].incident_id.as_deref(),
            now[0].trigger,
            now[0].investor_loss.level
        ),
        (Some("M"), Trigger::Reload, Larger)
    );
    s.advance(3.0);
    let later = s.take();
    assert_eq!(later.len(), 1, "the outage's new deadline");
    assert_eq!((later[0].market_order.level, later[0].at), (Major, at(3.0)));
}

#[test]
fn a_report_older_than_the_retention_cannot_open_an_incident() {
    // A tiny dedup window, so the redelivery is not caught as a duplicate first.
    let settings = EngineSettings {
        retention_ms: 60 * 60_000,
        dedup_window: 1,
        ..quiet()
    };
    let mut s = Sandbox::one(ParticipantKind::Broker, 2_500_000, settings);
    let first = merge(full_trading_outage(0.0), json!({"event_id": "e1"}));
    s.send(first.clone()).unwrap();
    s.send(infosec(2.0, "outage", json!({"status": "resolved"})))
        .unwrap();
    s.send(heartbeat("P", 200.0)).unwrap();
    assert_eq!(s.engine.incidents_held(), 0, "evicted after an hour");
    s.take();
    // The old opening report, redelivered: not a new outage escalating forever.
    assert_eq!(s.send(first), Err(Reject::Stale));
    s.advance(400.0);
    assert!(s.take().is_empty());
}

#[test]
fn an_incident_id_used_again_is_another_incident_with_other_alert_ids() {
    let settings = EngineSettings {
        retention_ms: 60 * 60_000,
        ..quiet()
    };
    let mut s = Sandbox::one(ParticipantKind::Broker, 1, settings);
    s.send(infosec(0.0, "malware", json!({}))).unwrap();
    let first = s.take().remove(0);
    s.send(infosec(1.0, "malware", json!({"status": "resolved"})))
        .unwrap();
    s.advance(120.0);
    s.take();
    s.send(infosec(121.0, "malware", json!({}))).unwrap();
    let second = s.take().remove(0);
    assert_eq!(
        (first.trigger, second.trigger),
        (Trigger::Opened, Trigger::Opened)
    );
    assert_eq!(levels(&first), levels(&second), "same state");
    assert_ne!(first.alert_id, second.alert_id, "another incident");
}

#[test]
fn an_older_report_cannot_switch_attributes_back() {
    let mut s = Sandbox::broker();
    let older = merge(
        infosec(
            1.0,
            "data_leak",
            json!({"record_type": "credentials", "records_exposed": 10}),
        ),
        json!({"event_id": "e1"}),
    );
    s.send(infosec(
        2.0,
        "data_leak",
        json!({"record_type": "personal", "records_exposed": 100}),
    ))
    .unwrap();
    s.take();
    // e1 arrives late (or again): its credentials type must not grade 100 records as
    // credentials (>= 50 would be `larger`).
    s.send(older).unwrap();
    assert!(s.take().is_empty());
}

#[test]
fn a_level_held_after_a_category_change_keeps_its_reasons() {
    let mut s = Sandbox::broker();
    s.send(full_trading_outage(0.0)).unwrap();
    s.advance(31.0);
    s.take();
    s.send(infosec(32.0, "data_leak", json!({"status": "resolved"})))
        .unwrap();
    let resolved = s.take().pop().unwrap();
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(resolved.market_order.level, Major, "levels never fall");
    assert_eq!(
        resolved
            .market_order
            .reasons
            .first()
            .map(|r| r.rule.as_str()),
        Some("mo.broker.major"),
        "the reasons it was reached for: {:?}",
        resolved.market_order
    );
}

#[test]
fn a_window_of_one_event_still_works() {
    let settings = EngineSettings {
        dedup_window: 1,
        ..quiet()
    };
    let mut s = Sandbox::one(ParticipantKind::Broker, 1, settings);
    for i in 0..5 {
        assert_eq!(
            s.send(merge(
                heartbeat("P", i as f64),
                json!({"event_id": format!("h{i}")})
            )),
            Ok(Outcome::Heartbeat)
        );
    }
    assert_eq!(
        s.send(merge(heartbeat("P", 9.0), json!({"event_id": "h4"}))),
        Ok(Outcome::Duplicate)
    );
}

// ---------------------------------------------------------------------------------------------
// Reminders of unresolved incidents.

const HOUR: f64 = 60.0;

fn reminding(interval_minutes: f64) -> EngineSettings {
    EngineSettings {
        reminder_interval_ms: (interval_minutes * 60_000.0) as i64,
        ..quiet()
    }
}

fn reminders(alerts: &[regwatch::alert::Alert]) -> Vec<&regwatch::alert::Alert> {
    alerts
        .iter()
        .filter(|a| a.trigger == Trigger::Reminder)
        .collect()
}

#[test]
fn reminders_are_off_by_default_in_engine_settings() {
    assert_eq!(EngineSettings::default().reminder_interval_ms, 0);
    assert_eq!(EngineSettings::default().reminder_min_level, Major);
    let mut s = Sandbox::broker();
    s.send(full_trading_outage(0.0)).unwrap();
    s.advance(10.0 * HOUR);
    let all = s.take();
    assert_eq!(all.len(), 3, "general, larger, major and nothing else");
    assert!(reminders(&all).is_empty());
}

#[test]
fn an_unresolved_major_outage_gets_a_reminder_every_interval_until_resolved() {
    let mut s = Sandbox::one(ParticipantKind::Broker, 2_500_000, reminding(HOUR));
    s.send(full_trading_outage(0.0)).unwrap();
    s.advance(30.0);
    let real = s.take();
    assert_eq!(real.len(), 3);
    let major = &real[2];
    assert_eq!((major.level, major.at), (Major, at(30.0)), "t0 = 30 min");

    s.advance(30.0 + HOUR - 0.01);
    assert!(s.take().is_empty(), "nothing before t0 + 1h");
    s.advance(30.0 + HOUR);
    let first = s.take();
    assert_eq!(first.len(), 1);
    let r1 = &first[0];
    assert_eq!(r1.trigger, Trigger::Reminder);
    assert_eq!(r1.status, AlertStatus::Firing);
    assert_eq!(r1.alert_type, AlertType::Incident);
    assert_eq!((r1.at, r1.reminder), (at(90.0), Some(1)));
    assert_eq!(r1.reminder_of.as_deref(), Some(major.alert_id.as_str()));
    assert_eq!((r1.level, levels(r1)), (Major, levels(major)));
    assert_eq!(r1.exemption, major.exemption);
    assert_eq!(
        r1.market_order.reasons[0].rule,
        major.market_order.reasons[0].rule
    );
    assert_eq!(r1.duration_minutes, Some(90.0));
    assert_eq!(
        r1.alert_id,
        regwatch::alert::reminder_alert_id("P", "I", at(0.0), 1),
        "id = digest of regwatch.alert.v1|reminder|P|I|<first report ms>|1"
    );
    assert!(
        r1.summary.starts_with(
            "Reminder 1: P name (P, broker) incident I [outage] still unresolved after 1h at major"
        ),
        "{}",
        r1.summary
    );
    assert!(r1.summary.contains(&major.alert_id), "{}", r1.summary);

    s.advance(30.0 + 2.0 * HOUR);
    let second = s.take();
    assert_eq!(second.len(), 1);
    let r2 = &second[0];
    assert_eq!((r2.at, r2.reminder), (at(150.0), Some(2)));
    assert_eq!(r2.reminder_of, r1.reminder_of);
    assert!(r2.summary.contains("after 2h at major"), "{}", r2.summary);
    let ids: std::collections::HashSet<_> = real
        .iter()
        .chain([r1, r2])
        .map(|a| a.alert_id.as_str())
        .collect();
    assert_eq!(
        ids.len(),
        5,
        "reminder ids are distinct from each other and every alert"
    );

    // Resolved: one resolved alert, and no reminder ever after.
    s.send(infosec(160.0, "outage", json!({"status": "resolved"})))
        .unwrap();
    let resolved = s.take();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].trigger, Trigger::Resolved);
    s.advance(20.0 * HOUR);
    assert!(s.take().is_empty(), "no reminder after resolution");
}

#[test]
fn reminder_json_is_marked_and_ordinary_alerts_serialise_as_before() {
    let mut s = Sandbox::one(ParticipantKind::Broker, 2_500_000, reminding(HOUR));
    s.send(full_trading_outage(0.0)).unwrap();
    s.advance(90.0);
    let all = s.take();
    assert_eq!(all.len(), 4);
    let reminder: serde_json::Value = serde_json::from_str(&all[3].to_json()).unwrap();
    assert_eq!(reminder["trigger"], "reminder");
    assert_eq!(reminder["status"], "firing");
    assert_eq!(reminder["reminder"], 1);
    assert_eq!(reminder["reminder_of"], all[2].alert_id.as_str());
    for a in &all[..3] {
        let text = a.to_json();
        assert!(
            !text.contains("\"reminder"),
            "no reminder fields on real alerts: {text}"
        );
    }
}

#[test]
fn a_clock_jump_fires_every_passed_reminder_at_its_own_time_with_the_same_ids() {
    let run = |steps: &[f64]| {
        let mut s = Sandbox::one(ParticipantKind::Broker, 2_500_000, reminding(HOUR));
        s.send(full_trading_outage(0.0)).unwrap();
        for m in steps {
            s.advance(*m);
        }
        s.take()
            .into_iter()
            .map(|a| (a.alert_id, a.at, a.trigger, a.reminder))
            .collect::<Vec<_>>()
    };
    let jump = run(&[215.0]);
    let stepwise = run(&[30.0, 90.0, 100.0, 150.0, 200.0, 215.0]);
    assert_eq!(jump, stepwise);
    let due: Vec<_> = jump
        .iter()
        .filter(|a| a.2 == Trigger::Reminder)
        .map(|a| (a.1, a.3))
        .collect();
    assert_eq!(
        due,
        vec![
            (at(90.0), Some(1)),
            (at(150.0), Some(2)),
            (at(210.0), Some(3))
        ]
    );
}

#[test]
fn a_very_long_clock_jump_fires_only_the_latest_reminders() {
    let mut s = Sandbox::one(ParticipantKind::Broker, 2_500_000, reminding(1.0));
    s.send(full_trading_outage(0.0)).unwrap();
    s.advance(30.0);
    s.take();
    s.advance(130.0);
    let all = s.take();
    let ks: Vec<_> = all.iter().filter_map(|a| a.reminder).collect();
    let cap = regwatch::score::MAX_OVERDUE_REMINDERS;
    assert_eq!(ks, (100 - cap + 1..=100).collect::<Vec<_>>(), "k counts on");
    assert_eq!(all.last().map(|a| a.at), Some(at(130.0)));
    s.advance(131.0);
    assert_eq!(s.take()[0].reminder, Some(101));
}

#[test]
fn a_reminder_due_with_an_escalation_follows_it_and_shows_the_new_level() {
    // A futures exchange's outage from Monday 09:30: major at 30 trading minutes (10:00),
    // extraordinary at 120 (13:45, 255 minutes after the start: the morning break and lunch
    // hold no trading), by the clock alone. Reminders every 225 minutes from 10:00.
    let mut s = Sandbox::with(
        vec![participant("P", ParticipantKind::FuturesExchange, 0)],
        reminding(225.0),
        default_rules(),
    );
    s.send(infosec(0.0, "outage", json!({"system": "trading"})))
        .unwrap();
    s.advance(255.0);
    let all = s.take();
    let tail: Vec<_> = all[all.len() - 2..]
        .iter()
        .map(|a| (a.trigger, a.level, a.at))
        .collect();
    assert_eq!(
        tail,
        vec![
            (Trigger::Clock, Extraordinary, at(255.0)),
            (Trigger::Reminder, Extraordinary, at(255.0)),
        ]
    );
    assert_eq!(
        all.last().unwrap().reminder_of.as_deref(),
        Some(all[all.len() - 2].alert_id.as_str()),
        "the reminder names the latest real alert"
    );
    // The anchor stays where major was first reached.
    s.advance(30.0 + 450.0);
    let next = s.take();
    assert_eq!(
        (next.len(), next[0].reminder, next[0].at),
        (1, Some(2), at(480.0))
    );
}

#[test]
fn no_reminders_below_the_reminder_level_when_off_or_before_the_alert_level() {
    // Stays general for ever: below major.
    let mut s = Sandbox::one(ParticipantKind::Broker, 2_500_000, reminding(HOUR));
    s.send(infosec(0.0, "malware", json!({}))).unwrap();
    s.advance(10.0 * HOUR);
    let all = s.take();
    assert_eq!(all.len(), 1);
    assert!(reminders(&all).is_empty());

    // Reminders off: a major outage gets none.
    let mut s = Sandbox::one(ParticipantKind::Broker, 2_500_000, reminding(0.0));
    s.send(full_trading_outage(0.0)).unwrap();
    s.advance(10.0 * HOUR);
    assert!(reminders(&s.take()).is_empty());

    // Reminders from `larger`, alerts only from `major`: the schedule starts with the alert.
    let settings = EngineSettings {
        reminder_min_level: Larger,
        min_alert_level: Major,
        ..reminding(HOUR)
    };
    let mut s = Sandbox::one(ParticipantKind::Broker, 2_500_000, settings);
    s.send(full_trading_outage(0.0)).unwrap();
    s.advance(89.0);
    let all = s.take();
    assert_eq!(all.len(), 1, "only the major alert: {all:?}");
    s.advance(90.0);
    assert_eq!(s.take()[0].reminder, Some(1));

    // And from `larger` with alerts from `general`: anchored at larger (5 minutes).
    let settings = EngineSettings {
        reminder_min_level: Larger,
        ..reminding(HOUR)
    };
    let mut s = Sandbox::one(ParticipantKind::Broker, 2_500_000, settings);
    s.send(full_trading_outage(0.0)).unwrap();
    s.advance(65.0);
    let r = reminders(&s.take())
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!((r.len(), r[0].at, r[0].level), (1, at(65.0), Major));
}

#[test]
fn replay_never_writes_reminders_whatever_the_settings() {
    let registry = regwatch::registry::Registry::new(vec![participant(
        "P",
        ParticipantKind::Broker,
        2_500_000,
    )])
    .unwrap();
    let mut engine = regwatch::score::Engine::new(
        std::sync::Arc::new(registry),
        std::sync::Arc::new(default_rules()),
        reminding(HOUR),
    );
    let mut event = full_trading_outage(0.0);
    event["schema"] = json!("regwatch.event.v1");
    event["event_id"] = json!("e1");
    let input = format!("{event}\n");
    let mut out = Vec::new();
    let summary = regwatch::replay::replay(
        &mut engine,
        input.as_bytes(),
        &mut out,
        &mut Vec::new(),
        Some(at(10.0 * HOUR)),
    )
    .unwrap();
    assert_eq!(summary.alerts, 3, "{}", String::from_utf8_lossy(&out));
    assert!(!String::from_utf8_lossy(&out).contains("reminder"));
}

#[test]
fn the_census_follows_every_transition() {
    use regwatch::registry::ParticipantIdx;
    let mut s = Sandbox::broker();
    let p = ParticipantIdx(0);
    let cell = |s: &Sandbox, axis: usize, level: regwatch::score::Level| {
        s.engine.census().open_by_level[axis][level.rank() as usize]
    };
    s.send(full_trading_outage(0.0)).unwrap();
    assert_eq!(cell(&s, 1, General), 1, "market order general");
    assert_eq!(cell(&s, 0, None), 1, "investor loss none");
    assert_eq!(cell(&s, 2, General), 1, "overall general");
    s.advance(30.0);
    assert_eq!((cell(&s, 1, General), cell(&s, 1, Major)), (0, 1));
    assert_eq!(cell(&s, 2, Major), 1);
    let c = s.engine.participant_census(p);
    assert_eq!(
        (c.ineligible_open, c.lost_exemption),
        (1, 1),
        "major: ineligible"
    );

    // A second, smaller incident, then the first resolved.
    s.send(infosec(
        31.0,
        "data_leak",
        json!({"incident_id": "J", "records_exposed": 10}),
    ))
    .unwrap();
    assert_eq!(s.engine.open_incidents(), 2);
    s.send(merge(
        full_trading_outage(40.0),
        json!({"status": "resolved"}),
    ))
    .unwrap();
    assert_eq!(cell(&s, 2, Major), 0);
    let total: u32 = s.engine.census().open_by_level[2].iter().sum();
    assert_eq!(total, 1, "one open incident left");
    let c = s.engine.participant_census(p);
    assert_eq!(
        (c.ineligible_open, c.lost_exemption),
        (0, 1),
        "resolved: no longer open, still counted as lost"
    );
}

#[test]
fn the_census_counts_silent_participants() {
    let mut s = Sandbox::one(
        ParticipantKind::Broker,
        0,
        EngineSettings {
            telemetry_gap_ms: 5 * 60_000,
            ..quiet()
        },
    );
    s.send(heartbeat("P", 0.0)).unwrap();
    s.advance(6.0);
    assert_eq!(s.engine.census().silent, 1);
    assert_eq!(
        s.engine
            .participant_census(regwatch::registry::ParticipantIdx(0))
            .gaps,
        1
    );
    s.send(heartbeat("P", 7.0)).unwrap();
    assert_eq!(s.engine.census().silent, 0, "heard again");
}

#[test]
fn a_refused_report_is_not_hearing_from_its_participant() {
    let settings = EngineSettings {
        max_open_per_participant: 1,
        telemetry_gap_ms: 5 * 60_000,
        ..quiet()
    };
    let mut s = Sandbox::one(ParticipantKind::Broker, 1, settings);
    s.send(infosec(0.0, "malware", json!({"incident_id": "a"})))
        .unwrap();
    s.take();
    assert_eq!(
        s.send(infosec(4.0, "malware", json!({"incident_id": "b"}))),
        Err(Reject::ParticipantCapacity(1))
    );
    s.advance(5.5);
    let gaps: Vec<_> = s
        .take()
        .into_iter()
        .filter(|a| a.last_heard_at.is_some())
        .map(|a| (a.at, a.last_heard_at))
        .collect();
    assert_eq!(
        gaps,
        vec![(at(5.0).plus_millis(1), Some(at(0.0)))],
        "silent since the last accepted event, not the refused one"
    );
}
