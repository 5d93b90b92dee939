//! Trading time and deadlines of the built-in calendars, against worked examples, an
//! independent day-by-day oracle and the round-trip property.

use super::*;
use crate::time::{days_from_civil, MS_PER_MINUTE};

const STOCK: &str = "cn-stock";
const FUTURES: &str = "cn-futures";

/// Beijing wall time `YYYY-MM-DD HH:MM` -> instant.
fn bj(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(&format!("{}T{}:00+08:00", &s[..10], &s[11..]))
        .unwrap_or_else(|| panic!("bad test time {s:?}"))
}

fn cal<'a>(all: &'a Calendars, name: &str) -> &'a Calendar {
    all.get(all.id(name).expect("calendar exists"))
}

#[test]
fn builtin_holds_exactly_the_two_contract_calendars() {
    let all = Calendars::builtin();
    assert_eq!(all.names().collect::<Vec<_>>(), [STOCK, FUTURES]);
    assert_eq!(all.len(), 2);
    assert_eq!(all.id(STOCK), Some(CalendarId(0)));
    assert_eq!(all.id(FUTURES), Some(CalendarId(1)));
    assert_eq!(all.id("cn-bonds"), None);
    assert_eq!(all.get(CalendarId(1)).name(), FUTURES);
    assert_eq!(cal(&all, STOCK).basis(), "sessions of cn-stock");
    assert_eq!(cal(&all, FUTURES).utc_offset_ms(), 8 * 3_600_000);
}

#[test]
fn trading_minutes() {
    let all = Calendars::builtin();
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, i64, &str)] = &[
        (STOCK, "2026-11-30 09:30", "2026-11-30 10:00", 30, "inside a session"),
        (STOCK, "2026-11-30 11:20", "2026-11-30 13:15", 25, "across lunch"),
        (STOCK, "2026-11-30 14:30", "2026-12-01 09:45", 60, "across a night"),
        (STOCK, "2026-11-27 14:50", "2026-11-30 09:20", 15, "across a weekend"),
        (STOCK, "2026-09-30 14:50", "2026-10-08 09:20", 15, "across National Day"),
        (STOCK, "2026-02-13 15:00", "2026-02-24 09:15", 0, "Spring Festival, Feb 23 closed"),
        (STOCK, "2026-11-30 11:40", "2026-11-30 12:50", 0, "starts and ends in lunch"),
        (STOCK, "2026-11-30 08:00", "2026-11-30 16:00", 255, "starts and ends outside"),
        (STOCK, "2026-11-28 00:00", "2026-11-30 00:00", 0, "a weekend"),
        (STOCK, "2026-11-30 00:00", "2026-12-07 00:00", 5 * 255, "a week"),
        (STOCK, "2026-11-30 10:00", "2026-11-30 10:00", 0, "empty"),
        (STOCK, "2026-11-30 11:00", "2026-11-30 10:00", 0, "reversed"),
        (STOCK, "2026-12-31 14:00", "2027-01-04 09:30", 60 + 255 + 15, "into 2027: weekdays trade"),
        (FUTURES, "2026-11-30 09:00", "2026-11-30 15:00", 225, "the day sessions"),
        (FUTURES, "2026-11-30 10:00", "2026-11-30 10:45", 30, "across the 10:15 break"),
        (FUTURES, "2026-11-30 20:00", "2026-12-01 09:10", 130, "a normal night"),
        (FUTURES, "2026-11-27 20:30", "2026-11-30 09:05", 125, "Friday night, Monday trades"),
        (FUTURES, "2026-09-30 20:00", "2026-09-30 23:59", 0, "evening before National Day"),
        (FUTURES, "2026-09-24 20:00", "2026-09-24 23:30", 0, "Thursday before closed Friday"),
        (FUTURES, "2026-09-24 15:00", "2026-09-28 09:30", 30, "over closed Friday Sep 25"),
        (FUTURES, "2026-02-13 20:00", "2026-02-13 23:30", 0, "Friday before closed Monday"),
        (FUTURES, "2026-10-07 20:00", "2026-10-08 09:00", 0, "last holiday evening"),
        (FUTURES, "2026-10-08 21:00", "2026-10-08 22:00", 60, "first evening after it"),
        (FUTURES, "2026-09-30 14:50", "2026-10-08 09:20", 30, "across National Day"),
        (FUTURES, "2026-11-30 00:00", "2026-12-07 00:00", 5 * (225 + 120), "a week"),
        (FUTURES, "2026-12-31 20:00", "2027-01-01 00:00", 120, "Jan 1 2027 not covered: trades"),
        (STOCK, "2100-01-04 10:00", "2100-01-04 11:00", 0, "beyond the day table"),
    ];
    for &(name, from, to, minutes, what) in cases {
        let got = cal(&all, name).trading_ms(bj(from), bj(to));
        assert_eq!(
            got,
            minutes * MS_PER_MINUTE,
            "{name} {from} -> {to}: {what}"
        );
    }
    let extremes = cal(&all, STOCK).trading_ms(Timestamp::MIN, Timestamp(i64::MAX));
    assert!(extremes > 0, "the whole table, without overflow");
    assert_eq!(
        cal(&all, STOCK).trading_minutes(bj("2026-11-30 11:20"), bj("2026-11-30 13:15")),
        25.0
    );
}

#[test]
fn deadline_instants() {
    let all = Calendars::builtin();
    #[rustfmt::skip]
    let cases: &[(&str, &str, i64, Option<&str>, &str)] = &[
        (STOCK, "2026-11-30 11:20", 30, Some("2026-11-30 13:20"), "10 before lunch, 20 after"),
        (STOCK, "2026-11-27 14:58", 5, Some("2026-11-30 09:18"), "Friday into Monday"),
        (STOCK, "2026-11-30 11:00", 30, Some("2026-11-30 11:30"), "ends at the session's end"),
        (STOCK, "2026-11-28 10:00", 1, Some("2026-11-30 09:16"), "from a Saturday"),
        (STOCK, "2026-09-30 14:50", 15, Some("2026-10-08 09:20"), "across National Day"),
        (STOCK, "2026-12-31 14:30", 60, Some("2027-01-01 09:45"), "into uncovered 2027"),
        (STOCK, "2026-11-30 10:00", 0, Some("2026-11-30 10:00"), "nothing to wait"),
        (STOCK, "2026-11-30 10:00", -5, Some("2026-11-30 10:00"), "negative"),
        (STOCK, "1999-12-31 10:00", 1, Some("2000-01-03 09:16"), "before the table"),
        (STOCK, "2099-12-31 14:00", 24 * 60, None, "past the table's end"),
        (STOCK, "2150-01-01 10:00", 1, None, "beyond the table"),
        (FUTURES, "2026-11-30 22:50", 20, Some("2026-12-01 09:10"), "across 23:00 into morning"),
        (FUTURES, "2026-11-30 14:50", 30, Some("2026-11-30 21:20"), "into the night session"),
        (FUTURES, "2026-09-30 14:50", 15, Some("2026-10-08 09:05"), "no night before holiday"),
        (FUTURES, "2026-09-24 14:30", 60, Some("2026-09-28 09:30"), "over closed Friday Sep 25"),
        (FUTURES, "2026-11-27 22:00", 90, Some("2026-11-30 09:30"), "Friday night into Monday"),
    ];
    for &(name, from, minutes, expect, what) in cases {
        let got = cal(&all, name).after_trading_ms(bj(from), minutes * MS_PER_MINUTE);
        assert_eq!(got, expect.map(bj), "{name} {from} + {minutes} min: {what}");
    }
    assert_eq!(
        cal(&all, STOCK).after_trading_ms(bj("2026-11-30 10:00"), i64::MAX),
        None
    );
}

#[test]
fn coverage_follows_the_local_year() {
    let all = Calendars::builtin();
    let stock = cal(&all, STOCK);
    let utc = |s: &str| Timestamp::parse_rfc3339(s).expect("test time");
    let cases = [
        (bj("2026-01-01 00:00"), true),
        (bj("2026-12-31 23:59"), true),
        (bj("2027-01-01 00:00"), false),
        (utc("2026-12-31T20:00:00Z"), false), // 2027-01-01 04:00 in Beijing
        (utc("2025-12-31T16:00:00Z"), true),  // 2026-01-01 00:00 in Beijing
        (utc("2025-12-31T15:59:59.999Z"), false),
        (Timestamp::MIN, false),
        (Timestamp(i64::MAX), false),
    ];
    for (t, expect) in cases {
        assert_eq!(stock.covers(t), expect, "{t}");
    }
}

#[test]
fn in_session() {
    let all = Calendars::builtin();
    let ms = |s: &str, delta: i64| bj(s).plus_millis(delta);
    #[rustfmt::skip]
    let cases = [
        (STOCK, ms("2026-11-30 09:15", 0), true),
        (STOCK, ms("2026-11-30 09:15", -1), false),
        (STOCK, ms("2026-11-30 11:30", -1), true),
        (STOCK, ms("2026-11-30 11:30", 0), false),
        (STOCK, ms("2026-11-28 10:00", 0), false),
        (STOCK, ms("2026-10-01 10:00", 0), false),
        (FUTURES, ms("2026-11-30 21:00", 0), true),
        (FUTURES, ms("2026-11-27 23:00", -1), true),
        (FUTURES, ms("2026-09-30 21:00", 0), false),
        (FUTURES, ms("2026-11-30 10:20", 0), false),
        (STOCK, Timestamp::MIN, false),
    ];
    for (name, t, expect) in cases {
        assert_eq!(cal(&all, name).in_session(t), expect, "{name} {t}");
    }
}

/// The contract's 2026 exchange holidays, written out day by day.
const HOLIDAYS_2026: [(i64, i64); 19] = [
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

/// Whether a local day (days since the epoch) trades, from the contract's text.
fn oracle_trades(day: i64) -> bool {
    let weekday = (day + 3).rem_euclid(7); // 0 = Monday
    let (y, m, d) = civil_from_days(day);
    weekday < 5 && !(y == 2026 && HOLIDAYS_2026.contains(&(m, d)))
}

/// Trading ms in [from, to) walking local days, independent of the day table.
fn oracle(futures: bool, from: Timestamp, to: Timestamp) -> i64 {
    let (from, to) = (from.0 + 8 * 3_600_000, to.0 + 8 * 3_600_000);
    let hm = |h: i64, m: i64| (h * 60 + m) * MS_PER_MINUTE;
    let mut total = 0;
    for day in from.div_euclid(DAY_MS)..=to.div_euclid(DAY_MS) {
        if !oracle_trades(day) {
            continue;
        }
        let next_weekday = if (day + 3).rem_euclid(7) == 4 {
            day + 3
        } else {
            day + 1
        };
        let mut sessions = if futures {
            vec![
                (hm(9, 0), hm(10, 15)),
                (hm(10, 30), hm(11, 30)),
                (hm(13, 30), hm(15, 0)),
            ]
        } else {
            vec![(hm(9, 15), hm(11, 30)), (hm(13, 0), hm(15, 0))]
        };
        if futures && oracle_trades(next_weekday) {
            sessions.push((hm(21, 0), hm(23, 0)));
        }
        for (s, e) in sessions {
            let (s, e) = (day * DAY_MS + s, day * DAY_MS + e);
            total += (e.min(to) - s.max(from)).max(0);
        }
    }
    total
}

/// splitmix64: a small deterministic generator (no crate needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: i64) -> i64 {
        (self.next() % n as u64) as i64
    }
}

#[test]
fn agrees_with_a_day_by_day_oracle() {
    let all = Calendars::builtin();
    let mut rng = Rng(7);
    let start = bj("2025-12-20 00:00").0;
    let span = bj("2027-01-10 00:00").0 - start;
    for (name, futures) in [(STOCK, false), (FUTURES, true)] {
        let calendar = cal(&all, name);
        for _ in 0..3000 {
            let from = Timestamp(start + rng.below(span));
            let to = from.plus_millis(rng.below(12 * DAY_MS));
            let expect = oracle(futures, from, to);
            assert_eq!(
                calendar.trading_ms(from, to),
                expect,
                "{name} {from} -> {to}"
            );
        }
    }
    // Every day of 2026: open at 10:00 exactly when the contract says it trades.
    let stock = cal(&all, STOCK);
    for day in days_from_civil(2026, 1, 1)..days_from_civil(2027, 1, 1) {
        let ten = Timestamp(day * DAY_MS + 2 * 3_600_000); // 10:00 Beijing
        assert_eq!(stock.in_session(ten), oracle_trades(day), "{ten}");
    }
}

#[test]
fn deadlines_round_trip_to_the_millisecond() {
    let all = Calendars::builtin();
    let mut rng = Rng(42);
    let start = bj("2025-06-01 00:00").0;
    let span = bj("2027-06-01 00:00").0 - start;
    for name in [STOCK, FUTURES] {
        let calendar = cal(&all, name);
        for i in 0..4000 {
            let from = Timestamp(start + rng.below(span));
            let ms = 1 + match i % 4 {
                0 => rng.below(MS_PER_MINUTE),
                1 => rng.below(240 * MS_PER_MINUTE),
                2 => rng.below(5 * DAY_MS),
                _ => rng.below(60 * DAY_MS),
            };
            let t = calendar
                .after_trading_ms(from, ms)
                .expect("inside the table");
            let before = t.plus_millis(-1);
            assert!(t > from, "{name} {from} + {ms}");
            assert_eq!(
                calendar.trading_ms(from, t),
                ms,
                "{name} {from} + {ms} -> {t}"
            );
            assert_eq!(
                calendar.trading_ms(from, before),
                ms - 1,
                "{name} {from} + {ms}"
            );
            assert!(calendar.in_session(before), "{name}: {before} trades");
            let mid = Timestamp(from.0 + rng.below(t.0 - from.0 + 1));
            let split = calendar.trading_ms(from, mid) + calendar.trading_ms(mid, t);
            assert_eq!(split, ms, "{name} additivity at {mid}");
        }
    }
}
