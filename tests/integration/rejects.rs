//! One test per rejection reason: bad input is a value with a reason, never a panic.

use regwatch::decode::{check_key, decode, Field, Figure, Reject, MAX_EVENT_BYTES};
use regwatch::registry::{ParticipantKind, Registry};
use serde_json::{json, Value};

use crate::support::*;

fn registry() -> Registry {
    Registry::new(vec![participant("P", ParticipantKind::Broker, 1)]).unwrap()
}

fn valid() -> Value {
    json!({"schema": "regwatch.event.v1", "event_id": "e1", "participant_id": "P",
           "kind": "infosec", "occurred_at": "2026-03-02T09:30:00+08:00",
           "incident_id": "I", "category": "outage"})
}

fn with(key: &str, value: Value) -> Vec<u8> {
    let mut v = valid();
    v[key] = value;
    serde_json::to_vec(&v).unwrap()
}

fn without(key: &str) -> Vec<u8> {
    let mut v = valid();
    v.as_object_mut().unwrap().remove(key);
    serde_json::to_vec(&v).unwrap()
}

fn check(bytes: &[u8], expect: Reject) {
    let got = decode(bytes, &registry(), MAX_EVENT_BYTES);
    assert_eq!(
        got.err(),
        Some(expect),
        "input {}",
        String::from_utf8_lossy(bytes)
    );
}

#[test]
fn the_valid_event_is_accepted() {
    let bytes = serde_json::to_vec(&valid()).unwrap();
    let e = decode(&bytes, &registry(), MAX_EVENT_BYTES).unwrap();
    assert_eq!(e.event_id, "e1");
    assert_eq!(e.incident.unwrap().incident_id, "I");
}

#[test]
fn too_large() {
    let mut v = valid();
    v["description"] = json!("x".repeat(MAX_EVENT_BYTES));
    let bytes = serde_json::to_vec(&v).unwrap();
    check(
        &bytes,
        Reject::TooLarge {
            size: bytes.len(),
            limit: MAX_EVENT_BYTES,
        },
    );
    assert_eq!(Reject::TooLarge { size: 1, limit: 0 }.code(), "too_large");
}

#[test]
fn not_json() {
    for bad in [
        &b""[..],
        b"{",
        b"{\"schema\":",
        b"nope",
        b"{\"a\":1}}",
        b"\xff\xfe",
        b"{\"a\":01}",
    ] {
        check(bad, Reject::NotJson);
    }
}

#[test]
fn not_an_object() {
    for bad in [&b"[]"[..], b"42", b"\"text\"", b"null", b"true"] {
        check(bad, Reject::NotObject);
    }
}

#[test]
fn unknown_schema_wins_over_other_problems() {
    check(
        &with("schema", json!("regwatch.event.v2")),
        Reject::UnknownSchema,
    );
    let mut v = valid();
    v["schema"] = json!("other");
    v["loss_cny"] = json!("not a number");
    check(&serde_json::to_vec(&v).unwrap(), Reject::UnknownSchema);
    check(&with("schema", json!(1)), Reject::WrongType(Field::Schema));
}

#[test]
fn missing_field_names_the_field() {
    for (key, field) in [
        ("schema", Field::Schema),
        ("event_id", Field::EventId),
        ("participant_id", Field::ParticipantId),
        ("kind", Field::Kind),
        ("occurred_at", Field::OccurredAt),
        ("incident_id", Field::IncidentId),
        ("category", Field::Category),
    ] {
        check(&without(key), Reject::MissingField(field));
        // `null` reads as absent.
        if key != "schema" {
            check(&with(key, Value::Null), Reject::MissingField(field));
        }
    }
    let r = Reject::MissingField(Field::IncidentId);
    assert_eq!(
        (r.code(), r.to_string().as_str()),
        ("missing_field", "missing field `incident_id`")
    );
}

#[test]
fn heartbeats_need_no_incident() {
    let mut v = valid();
    v["kind"] = json!("heartbeat");
    v.as_object_mut().unwrap().remove("incident_id");
    v.as_object_mut().unwrap().remove("category");
    let bytes = serde_json::to_vec(&v).unwrap();
    assert!(decode(&bytes, &registry(), MAX_EVENT_BYTES)
        .unwrap()
        .incident
        .is_none());
}

#[test]
fn duplicate_field() {
    let text = br#"{"schema":"regwatch.event.v1","event_id":"a","event_id":"b","participant_id":"P","kind":"heartbeat","occurred_at":"2026-03-02T09:30:00Z"}"#;
    check(text, Reject::DuplicateField(Field::EventId));
}

#[test]
fn wrong_type_names_the_field() {
    for (key, value, field) in [
        ("event_id", json!(7), Field::EventId),
        ("participant_id", json!(["P"]), Field::ParticipantId),
        ("kind", json!({"k": 1}), Field::Kind),
        ("occurred_at", json!(1772415000), Field::OccurredAt),
        ("status", json!(true), Field::Status),
        ("loss_cny", json!("1000"), Field::Figure(Figure::LossCny)),
        (
            "affected_investors",
            json!(1.5),
            Field::Figure(Figure::AffectedInvestors),
        ),
        (
            "records_exposed",
            json!("5"),
            Field::Figure(Figure::RecordsExposed),
        ),
        ("instrument", json!(600000), Field::Instrument),
    ] {
        check(&with(key, value), Reject::WrongType(field));
    }
}

#[test]
fn bad_value_names_the_field() {
    for (key, value, field) in [
        ("event_id", json!(""), Field::EventId),
        ("event_id", json!("x".repeat(129)), Field::EventId),
        (
            "participant_id",
            json!("p".repeat(65)),
            Field::ParticipantId,
        ),
        ("incident_id", json!(""), Field::IncidentId),
        ("kind", json!("phishing"), Field::Kind),
        ("status", json!("closed"), Field::Status),
        ("category", json!("spoofing"), Field::Category),
        ("category", json!("meteor"), Field::Category),
        ("system", json!("mainframe"), Field::System),
        ("scope", json!("most"), Field::Scope),
        ("record_type", json!("dna"), Field::RecordType),
        (
            "affected_units_pct",
            json!(100.5),
            Field::Figure(Figure::AffectedUnitsPct),
        ),
        ("loss_cny", json!(-1), Field::Figure(Figure::LossCny)),
        (
            "affected_investors",
            json!(-3),
            Field::Figure(Figure::AffectedInvestors),
        ),
        (
            "cancel_ratio",
            json!(1.2),
            Field::Figure(Figure::CancelRatio),
        ),
        (
            "volume_share",
            json!(-0.1),
            Field::Figure(Figure::VolumeShare),
        ),
    ] {
        check(&with(key, value), Reject::BadValue(field));
    }
    // 128 characters (multi-byte) is still within bounds.
    let bytes = with("event_id", json!("事".repeat(128)));
    assert!(decode(&bytes, &registry(), MAX_EVENT_BYTES).is_ok());
    // An integral float is an integer; a signed move may be negative.
    assert!(decode(
        &with("affected_investors", json!(1e6)),
        &registry(),
        MAX_EVENT_BYTES
    )
    .is_ok());
    assert!(decode(
        &with("price_move_pct", json!(-9.5)),
        &registry(),
        MAX_EVENT_BYTES
    )
    .is_ok());
}

#[test]
fn bad_timestamp_names_the_field() {
    check(
        &with("occurred_at", json!("2026-03-02 9:30")),
        Reject::BadTimestamp(Field::OccurredAt),
    );
    check(
        &with("occurred_at", json!("2026-03-02T09:30:00")),
        Reject::BadTimestamp(Field::OccurredAt),
    );
    check(
        &with("started_at", json!("2026-02-30T09:30:00Z")),
        Reject::BadTimestamp(Field::StartedAt),
    );
}

#[test]
fn invalid_utf8_anywhere_is_not_json() {
    let good = serde_json::to_vec(&valid()).unwrap();
    // In an unknown member's value, in an unknown key, in a known value.
    for (from, to) in [
        (&b"\"kind\""[..], &b"\"x\":\"\xff\",\"kind\""[..]),
        (b"\"kind\"", b"\"\xc3\":1,\"kind\""),
        (b"\"I\"", b"\"I\xff\""),
    ] {
        let text = String::from_utf8_lossy(&good).into_owned();
        let at = text.find(std::str::from_utf8(from).unwrap()).unwrap();
        let mut bytes = good[..at].to_vec();
        bytes.extend_from_slice(to);
        bytes.extend_from_slice(&good[at + from.len()..]);
        check(&bytes, Reject::NotJson);
    }
}

#[test]
fn a_present_but_unusable_schema_outranks_earlier_problems() {
    check(
        br#"{"event_id":1,"schema":5}"#,
        Reject::WrongType(Field::Schema),
    );
}

#[test]
fn timestamps_outside_2000_to_2099_are_bad() {
    check(
        &with("occurred_at", json!("9999-01-01T00:00:00Z")),
        Reject::BadTimestamp(Field::OccurredAt),
    );
    check(
        &with("started_at", json!("1970-01-01T00:00:00Z")),
        Reject::BadTimestamp(Field::StartedAt),
    );
    assert!(decode(
        &with("occurred_at", json!("2099-12-31T23:59:59Z")),
        &registry(),
        MAX_EVENT_BYTES
    )
    .is_ok());
}

#[test]
fn unregistered_participant() {
    check(
        &with("participant_id", json!("NOBODY")),
        Reject::UnregisteredParticipant,
    );
}

#[test]
fn key_mismatch() {
    assert_eq!(check_key(Some(b"P"), "P"), Ok(()));
    assert_eq!(check_key(Some(b"Q"), "P"), Err(Reject::KeyMismatch));
    assert_eq!(check_key(None, "P"), Err(Reject::KeyMismatch));
}

#[test]
fn kind_changed_and_capacity_are_engine_rejections() {
    // Covered with their setup in lifecycle.rs; here: the codes and messages are stable.
    for (r, code) in [
        (Reject::KindChanged, "kind_changed"),
        (Reject::ParticipantCapacity(2), "participant_capacity"),
        (Reject::EngineCapacity(2), "engine_capacity"),
        (Reject::Stale, "stale"),
    ] {
        assert_eq!(r.code(), code);
        assert!(Reject::CODES.contains(&code));
        assert!(!r.to_string().is_empty());
    }
}

#[test]
fn unknown_fields_are_ignored_however_nested() {
    let mut v = valid();
    v["x_vendor"] = json!({"deep": [1, {"a": [null, "s"]}], "n": -1.5e300});
    v["description"] = json!("带有转义的\n文本 \u{1F600}");
    let bytes = serde_json::to_vec(&v).unwrap();
    assert!(decode(&bytes, &registry(), MAX_EVENT_BYTES).is_ok());
}

#[test]
fn escaped_strings_are_decoded() {
    let text = br#"{"schema":"regwatch.event.v1","event_id":"e\u0031","participant_id":"\u0050","kind":"heartbeat","occurred_at":"2026-03-02T09:30:00Z"}"#;
    let e = decode(text, &registry(), MAX_EVENT_BYTES).unwrap();
    assert_eq!(e.event_id, "e1");
}
