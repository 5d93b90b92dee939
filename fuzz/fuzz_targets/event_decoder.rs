//! Message bytes from a participant: `decode::decode` against the example registry, then the
//! key check. A decoded event must satisfy everything the wire contract promises the engine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regwatch::decode::{check_key, decode, EventKind, Figure, Reject, MAX_EVENT_BYTES};
use regwatch::time::Timestamp;

/// The event-time window `decode` admits (2000-01-01 up to 2100-01-01 UTC).
const EARLIEST: i64 = 946_684_800_000;
const LATEST: i64 = 4_102_444_800_000;

fn id_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= 128
}

fuzz_target!(|data: &[u8]| {
    let registry = regwatch_fuzz::registry();
    let decoded = decode(data, &registry, MAX_EVENT_BYTES);

    // The same bytes as an action record (header `regwatch.action`): parsed and checked, or
    // refused with a reason; a parsed one reads back as itself.
    match regwatch::actions::Action::parse(data) {
        Ok(a) => {
            assert!(a.check().is_ok());
            let again = serde_json::to_vec(&a).unwrap();
            assert_eq!(regwatch::actions::Action::parse(&again).unwrap(), a);
        }
        Err(why) => assert!(!why.is_empty()),
    }

    // Every rejection has a stable code and a sentence.
    if let Err(reject) = &decoded {
        assert!(!reject.code().is_empty());
        let _ = reject.to_string();
    }
    // The size limit comes first, whatever the bytes.
    if !data.is_empty() {
        assert!(matches!(
            decode(data, &registry, data.len() - 1),
            Err(Reject::TooLarge { .. })
        ));
    }

    // The key: the message's own bytes as a key are accepted only when they are the id.
    let key = &data[..data.len().min(16)];
    for (_, p) in registry.iter() {
        assert_eq!(check_key(Some(key), &p.id).is_ok(), key == p.id.as_bytes());
    }

    let Ok(event) = decoded else {
        return;
    };
    // Decoding is a function of the bytes.
    assert_eq!(
        decode(data, &registry, MAX_EVENT_BYTES).as_ref(),
        Ok(&event)
    );

    let participant = registry.get(event.participant);
    assert!(check_key(Some(participant.id.as_bytes()), &participant.id).is_ok());
    assert_eq!(check_key(None, &participant.id), Err(Reject::KeyMismatch));
    assert!(id_ok(&event.event_id), "event_id {:?}", event.event_id);
    assert!((EARLIEST..LATEST).contains(&event.occurred_at.millis()));

    match (&event.incident, event.kind) {
        (None, EventKind::Heartbeat) => {}
        (Some(inc), EventKind::Infosec | EventKind::Trading) => {
            assert!(id_ok(&inc.incident_id), "incident_id {:?}", inc.incident_id);
            assert!(inc.category.belongs_to(event.kind));
            if let Some(t) = inc.started_at {
                assert!((EARLIEST..LATEST).contains(&t.millis()));
                // It prints as RFC 3339 and reads back as the same instant.
                assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t));
            }
            for (f, v) in inc.figures.iter() {
                assert!(v.is_finite(), "{f:?} = {v}");
                match f {
                    Figure::PriceMovePct | Figure::IndexMovePct => {}
                    Figure::AffectedUnitsPct => assert!((0.0..=100.0).contains(&v)),
                    Figure::CancelRatio | Figure::VolumeShare => {
                        assert!((0.0..=1.0).contains(&v))
                    }
                    Figure::AffectedInvestors
                    | Figure::RecordsExposed
                    | Figure::OrdersDelayed
                    | Figure::Orders => assert!(v >= 0.0 && v.fract() == 0.0, "{f:?} = {v}"),
                    _ => assert!(v >= 0.0, "{f:?} = {v}"),
                }
            }
        }
        (incident, kind) => panic!("{kind:?} event with incident {incident:?}"),
    }
    assert_eq!(
        Timestamp::parse_rfc3339(&event.occurred_at.to_string()),
        Some(event.occurred_at)
    );
});
