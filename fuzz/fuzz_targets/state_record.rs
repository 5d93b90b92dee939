//! The state topic, as a partition's next owner reads it: messages decoded by
//! `ingest::state::decode_entry` (key, then the JSON of a `StateRecord`), the latest value of
//! each key restored into an engine (`Engine::restore`), whose clock then moves on so that
//! restored deadlines, reminders and evictions fire. Nobody but regwatch should write that
//! topic (README, threat model), but a restore must survive whatever is there.
//!
//! Input: messages separated by NUL bytes; each is `key '\n' value`, or a key alone for a
//! tombstone. Keys of partition 0 of `sandbox.events` start with `sandbox.events|0|`.
//!
//! Invariants: the state MAC of a message checks out and arbitrary text as a MAC never
//! panics; a decoded record serializes back to itself; what the restored engine hands out
//! as state (`take_changes`) decodes again and restores into a fresh engine; every alert it
//! raises reads back in the outbox.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use regwatch::ingest::state::{decode_entry, key_prefix};
use regwatch::score::{Level, StateChange, StateRecord};
use regwatch::time::Timestamp;

const HOUR: i64 = 60 * 60_000;

fuzz_target!(|data: &[u8]| {
    let prefix = key_prefix("sandbox.events", 0);
    let mut latest: BTreeMap<&str, Option<StateRecord>> = BTreeMap::new();
    for message in data.split(|&b| b == 0) {
        let (key, payload) = match message.iter().position(|&b| b == b'\n') {
            Some(i) => (&message[..i], Some(&message[i + 1..])),
            None => (message, None),
        };
        // The MAC check runs on every message before it is decoded: any bytes, no panic,
        // and a MAC made for the message checks out.
        if let Ok(key_text) = std::str::from_utf8(key) {
            let secret = b"fuzz-record-key-0123456789";
            let mac = regwatch::delivery::sign::state_mac(secret, "st", key_text, payload);
            assert!(regwatch::delivery::sign::state_authentic(
                secret, "st", key_text, payload, &mac
            ));
            let forged = String::from_utf8_lossy(payload.unwrap_or_default());
            let _ =
                regwatch::delivery::sign::state_authentic(secret, "st", key_text, payload, &forged);
        }
        let Some((record_key, value)) = decode_entry(&prefix, Some(key), payload) else {
            continue;
        };
        match value {
            Ok(record) => {
                if let Some(r) = &record {
                    let json = serde_json::to_vec(r).expect("a record serializes");
                    let back: StateRecord =
                        serde_json::from_slice(&json).expect("a serialized record reads back");
                    assert_eq!(&back, r);
                    let _ = (r.key(), r.latest_instant());
                }
                latest.insert(record_key, record);
            }
            Err(_) => {
                latest.remove(record_key);
            }
        }
    }
    // As the worker does: the topic record is its own; the rest goes to the engine.
    let records: Vec<StateRecord> = latest
        .into_values()
        .flatten()
        .filter(|r| !matches!(r, StateRecord::Topic(_)))
        .collect();
    let mut engine = regwatch_fuzz::engine(regwatch_fuzz::default_rules());
    let summary = engine.restore(records);
    assert!(summary.forgotten.len() <= summary.skipped.len());
    let _ = engine.incident_views(None, Level::None);

    let mut alerts = Vec::new();
    let start = engine.clock().unwrap_or(Timestamp(1_772_413_200_000));
    for later in [0, HOUR, 25 * HOUR, 8 * 24 * HOUR] {
        engine.advance_to(start.plus_millis(later), &mut alerts);
    }
    for alert in &alerts {
        regwatch_fuzz::check_alert_readable(alert);
    }
    let _ = engine.incident_views(None, Level::None);
    let _ = engine.stats();

    // What the engine hands out as state is what a restore reads.
    let mut again = Vec::new();
    for change in engine.take_changes() {
        if let StateChange::Put(r) = change {
            let json = serde_json::to_vec(&r).expect("a record serializes");
            let key = format!("{prefix}{}", r.key());
            let (_, value) = decode_entry(&prefix, Some(key.as_bytes()), Some(&json))
                .expect("an engine key is the partition's");
            let back = value
                .expect("an engine record decodes")
                .expect("not a tombstone");
            assert_eq!(back, r);
            again.push(back);
        }
    }
    let mut fresh = regwatch_fuzz::engine(regwatch_fuzz::default_rules());
    let _ = fresh.restore(again);
});
