//! Properties over random event streams: levels never fall while an incident is open, and
//! replaying the same stream twice gives identical alerts.

use std::collections::HashMap;

use proptest::prelude::*;
use regwatch::alert::{Alert, AlertStatus, AlertType};
use regwatch::registry::ParticipantKind;
use regwatch::score::{EngineSettings, Exemption};
use serde_json::{json, Value};

use crate::support::*;

#[derive(Clone, Debug)]
enum Op {
    Report {
        participant: usize,
        incident: usize,
        status: &'static str,
        figures: Vec<(&'static str, f64)>,
    },
    Heartbeat(usize),
    Tick,
}

const PARTICIPANTS: [(&str, ParticipantKind, u64); 3] = [
    ("EXC", ParticipantKind::Exchange, 0),
    ("BRK", ParticipantKind::Broker, 500_000),
    ("FEX", ParticipantKind::FuturesExchange, 0),
];

fn figure() -> impl Strategy<Value = (&'static str, f64)> {
    prop_oneof![
        (0.0..100.0f64).prop_map(|v| ("affected_units_pct", v)),
        (0u32..2_000_000).prop_map(|v| ("affected_investors", f64::from(v))),
        (0u32..2_000_000).prop_map(|v| ("records_exposed", f64::from(v))),
        (0.0..2e8f64).prop_map(|v| ("loss_cny", v)),
        (-6.0..6.0f64).prop_map(|v| ("index_move_pct", v)),
        (-12.0..12.0f64).prop_map(|v| ("price_move_pct", v)),
        (0.0..1.0f64).prop_map(|v| ("cancel_ratio", v)),
        (0.0..1.0f64).prop_map(|v| ("volume_share", v)),
        (0.0..6e9f64).prop_map(|v| ("executed_notional_cny", v)),
        (0.0..600.0f64).prop_map(|v| ("peak_orders_per_sec", v)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 0..4usize, prop_oneof![4 => Just("open"), 4 => Just("update"), 1 => Just("resolved")],
              proptest::collection::vec(figure(), 0..4))
            .prop_map(|(participant, incident, status, figures)| Op::Report { participant, incident, status, figures }),
        2 => (0..3usize).prop_map(Op::Heartbeat),
        2 => Just(Op::Tick),
    ]
}

/// Runs a stream; time moves 0..=15 minutes per op.
fn run(ops: &[(Op, u8)]) -> Vec<Alert> {
    let participants = PARTICIPANTS
        .iter()
        .map(|(id, kind, customers)| participant(id, *kind, *customers))
        .collect();
    let mut s = Sandbox::with(participants, EngineSettings::default(), default_rules());
    let mut minutes = 0.0;
    for (op, step) in ops {
        minutes += f64::from(*step);
        match op {
            Op::Report {
                participant,
                incident,
                status,
                figures,
            } => {
                let (pid, _, _) = PARTICIPANTS[*participant];
                // Even incidents are outages, odd ones trading anomalies.
                let mut e: Value = if incident % 2 == 0 {
                    infosec(
                        minutes,
                        "outage",
                        json!({"system": "trading", "scope": "full"}),
                    )
                } else {
                    trading(minutes, "runaway_algo", json!({}))
                };
                e["participant_id"] = json!(pid);
                e["incident_id"] = json!(format!("I{incident}"));
                e["status"] = json!(status);
                for (k, v) in figures {
                    e[*k] = json!(v);
                }
                let _ = s.send(e);
            }
            Op::Heartbeat(p) => {
                let _ = s.send(heartbeat(PARTICIPANTS[*p].0, minutes));
            }
            Op::Tick => s.advance(minutes),
        }
    }
    s.take()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn levels_never_fall_while_an_incident_is_open(ops in proptest::collection::vec((op(), 0u8..=15), 1..60)) {
        let alerts = run(&ops);
        let mut last: HashMap<(String, String), (Alert, bool)> = HashMap::new();
        for a in alerts.iter().filter(|a| a.alert_type == AlertType::Incident) {
            let key = (a.participant_id.clone(), a.incident_id.clone().unwrap_or_default());
            if let Some((prev, resolved)) = last.get(&key) {
                prop_assert!(!resolved, "nothing after resolution: {:?}", a);
                prop_assert!(a.investor_loss.level >= prev.investor_loss.level);
                prop_assert!(a.market_order.level >= prev.market_order.level);
                prop_assert!(a.investor_loss.score >= prev.investor_loss.score);
                prop_assert!(a.market_order.score >= prev.market_order.score);
                prop_assert!(!(prev.exemption == Exemption::Ineligible && a.exemption == Exemption::Eligible));
                prop_assert!(a.at >= prev.at);
                if a.status == AlertStatus::Firing {
                    prop_assert_ne!(&a.alert_id, &prev.alert_id, "a firing alert is a new state");
                }
            }
            last.insert(key, (a.clone(), a.status == AlertStatus::Resolved));
        }
    }

    #[test]
    fn replaying_the_same_stream_twice_gives_identical_alerts(ops in proptest::collection::vec((op(), 0u8..=15), 1..60)) {
        let first: Vec<String> = run(&ops).iter().map(Alert::to_json).collect();
        let second: Vec<String> = run(&ops).iter().map(Alert::to_json).collect();
        prop_assert_eq!(first, second);
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12..1e12f64).prop_map(Value::from),
        "[a-z\\\\\"\u{e9}\u{4e8b}\n\t ]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON-like text: mostly valid productions, some deliberately not (trailing commas, leading
/// zeros, bad escapes, bare words, unbalanced brackets, control characters).
fn fuzzy_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "tru",
            "nul",
            "NaN",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\u{1}b\"",
            "\"open",
            "1e5",
            "-0.0",
            "\"\\ud83d\\ude00\"",
            "[]",
            "{}",
        ])
        .prop_map(str::to_string),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (
                proptest::collection::vec(inner.clone(), 0..4),
                any::<bool>()
            )
                .prop_map(|(items, trailing)| format!(
                    "[{}{}]",
                    items.join(","),
                    if trailing { "," } else { "" }
                )),
            (
                proptest::collection::vec(("[a-z]{1,4}", inner.clone()), 0..4),
                any::<bool>()
            )
                .prop_map(|(members, trailing)| {
                    let body: Vec<String> = members
                        .iter()
                        .map(|(k, v)| format!("\"{k}\":{v}"))
                        .collect();
                    format!("{{{}{}}}", body.join(","), if trailing { "," } else { "" })
                }),
            (
                inner.clone(),
                prop::sample::select(vec!["", "]", "}", ",", ":", " x"])
            )
                .prop_map(|(v, junk)| format!("{v}{junk}")),
        ]
    })
}

/// An event object whose `extra` member is fuzzy JSON, or fuzzy JSON on its own.
fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => fuzzy_json().prop_map(|extra| format!(
            "{{\"schema\":\"regwatch.event.v1\",\"event_id\":\"e\",\"participant_id\":\"EXC\",\"kind\":\"infosec\",\"occurred_at\":\"2026-03-02T09:30:00Z\",\"incident_id\":\"I\",\"category\":\"outage\",\"extra\":{extra}}}"
        )),
        1 => fuzzy_json(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The decoder's JSON reader accepts exactly what serde_json accepts (not_json iff
    /// serde_json fails), except where skipping is deliberately laxer, as serde_json's own
    /// skipping is (out-of-range numbers and lone surrogates in values that are not kept).
    #[test]
    fn json_syntax_agrees_with_serde_json(text in json_text()) {
        let registry = regwatch::registry::Registry::new(vec![participant("EXC", ParticipantKind::Exchange, 0)]).unwrap();
        let ours = regwatch::decode::decode(text.as_bytes(), &registry, regwatch::decode::MAX_EVENT_BYTES);
        let theirs = serde_json::from_str::<Value>(&text);
        let lax = theirs.as_ref().err().is_some_and(|e| {
            let e = e.to_string();
            e.contains("out of range") || e.contains("surrogate")
        });
        if !lax {
            let ours_json = ours.as_ref().err() != Some(&regwatch::decode::Reject::NotJson);
            prop_assert_eq!(ours_json, theirs.is_ok(), "ours {:?}, serde_json {:?}", ours, theirs);
        }
    }
}
