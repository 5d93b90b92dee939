//! Rules files: `Rules::compile` on arbitrary UTF-8. A grid that compiles is well formed
//! (ordered by level, within the per-axis limit), compiles the same again, and grades the
//! example day's incidents in an engine, clock deadlines included, without panicking; every
//! alert it raises reads back in the outbox.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use regwatch::decode::{decode, MAX_EVENT_BYTES};
use regwatch::score::{Axis, Level, Rules};
use regwatch::time::Timestamp;

/// `score::rules::MAX_RULES_PER_AXIS` (grading keeps one bit per rule of an axis).
const MAX_RULES_PER_AXIS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rules) = Rules::compile(text) else {
        return;
    };
    assert_eq!(rules.digest(), Rules::text_digest(text));
    let again = Rules::compile(text).expect("a grid that compiled compiles again");
    assert_eq!(again.len(), rules.len());
    let mut n = 0;
    for axis in Axis::ALL {
        let of = rules.of(axis);
        assert_eq!(of, again.of(axis));
        assert!(of.len() <= MAX_RULES_PER_AXIS);
        assert!(
            of.windows(2).all(|w| w[0].level >= w[1].level),
            "highest first"
        );
        assert!(of
            .iter()
            .all(|r| r.axis == axis && r.level != Level::None && !r.id.trim().is_empty()));
        assert_ne!(rules.exemption_line(axis), Level::None);
        n += of.len();
    }
    assert_eq!(n, rules.len());

    // Grade the example day with it, as the daemon would after a reload.
    let registry = regwatch_fuzz::registry();
    let mut engine = regwatch_fuzz::engine(Arc::new(rules));
    let mut alerts = Vec::new();
    let mut last = Timestamp(0);
    for line in regwatch_fuzz::example_incident_events() {
        // The example day holds a few events replay rejects; they grade nothing.
        let Ok(event) = decode(line.as_bytes(), &registry, MAX_EVENT_BYTES) else {
            continue;
        };
        last = last.max(event.occurred_at);
        engine.advance_to(last, &mut alerts);
        let _ = engine.apply(&event, &mut alerts);
    }
    // A day later: every deadline of the grid has fired, reminders included.
    engine.advance_to(last.plus_millis(24 * 60 * 60_000), &mut alerts);
    for alert in &alerts {
        regwatch_fuzz::check_alert_readable(alert);
    }
    let _ = engine.take_changes();
});
