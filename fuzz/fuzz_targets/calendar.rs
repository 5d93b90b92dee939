//! Calendar files: `Calendars::from_toml` (the parser and checks of `calendar/file.rs`, then
//! the day tables) on arbitrary UTF-8. Calendars that load answer every query, and keep the
//! module's documented exactness: for `ms > 0`, `t = after_trading_ms(from, ms)` gives
//! `trading_ms(from, t) == ms` and `trading_ms(from, t - 1ms) < ms`; and no interval holds
//! more trading time than it lasts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regwatch::calendar::Calendars;
use regwatch::time::Timestamp;

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

/// Instants to query from: inside the table, at and past both of its ends, and the extremes.
const FROM: [i64; 7] = [
    1_772_413_200_000, // 2026-03-02T01:00:00Z, a Monday (09:00 in +08:00)
    1_772_413_200_000 + 5 * DAY + 13 * 60 * MINUTE + 7, // a Saturday afternoon, odd ms
    946_684_800_000 - DAY, // 1999-12-31T00:00:00Z
    4_102_444_800_000 - 3 * 60 * MINUTE, // 2099-12-31T21:00:00Z
    4_102_444_800_000 + DAY, // past the table
    i64::MIN,
    i64::MAX,
];

/// Trading amounts to look for.
const MS: [i64; 7] = [
    1,
    MINUTE - 1,
    MINUTE,
    4 * 60 * MINUTE + 1,
    30 * DAY,
    20_000 * DAY,
    i64::MAX,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let calendars = match Calendars::from_toml(text, "fuzz.toml") {
        Ok(c) => c,
        Err(e) => {
            assert_eq!(e.origin(), "fuzz.toml");
            let _ = e.to_string();
            return;
        }
    };
    assert!(!calendars.is_empty());
    let names: Vec<&str> = calendars.names().collect();
    assert_eq!(names.len(), calendars.len());
    for name in &names {
        let id = calendars.id(name).expect("a listed name has an id");
        let cal = calendars.get(id);
        assert_eq!(cal.name(), *name);
        assert!(cal.utc_offset_ms().abs() < DAY);
        for &from in &FROM {
            let from = Timestamp(from);
            let _ = cal.covers(from);
            let _ = cal.in_session(from);
            for &to in &FROM {
                let to = Timestamp(to);
                let t = cal.trading_ms(from, to);
                assert!(t >= 0, "{name}: trading_ms({from:?}, {to:?}) = {t}");
                if to > from {
                    let span = (to.millis() as i128) - (from.millis() as i128);
                    assert!(i128::from(t) <= span, "{name}: {t} ms in a {span} ms span");
                } else {
                    assert_eq!(t, 0);
                }
            }
            for &ms in &MS {
                let Some(t) = cal.after_trading_ms(from, ms) else {
                    continue;
                };
                assert!(t > from, "{name}: after_trading_ms({from:?}, {ms}) = {t:?}");
                assert_eq!(
                    cal.trading_ms(from, t),
                    ms,
                    "{name}: from {from:?}, {ms} ms"
                );
                assert!(
                    cal.trading_ms(from, t.plus_millis(-1)) < ms,
                    "{name}: not the first"
                );
                assert!(
                    cal.in_session(t.plus_millis(-1)),
                    "{name}: {t:?} ends no session"
                );
            }
        }
    }
});
