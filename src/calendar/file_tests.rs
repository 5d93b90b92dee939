//! The calendar file: what it refuses (one case per refusal, each naming the origin, the
//! entry and the reason) and what operators may write.

use super::*;
use crate::time::MS_PER_MINUTE;

const ORIGIN: &str = "test/calendars.toml";

const CLOSURE: &str = "[closures.x]\nyears = [2026]\ndates = []\n";

/// A file with closure list `x` and one calendar `c` holding `fields`.
fn one(fields: &str) -> String {
    format!("{CLOSURE}\n[[calendar]]\nname = \"c\"\nclosures = \"x\"\n{fields}\n")
}

/// A calendar `c` with an offset, `sessions` and optional further fields.
fn sessions(list: &str, more: &str) -> String {
    one(&format!(
        "utc_offset = \"+08:00\"\nsessions = {list}\n{more}"
    ))
}

/// A file with a closure list `x` holding `dates` for `years`, and a valid calendar.
fn closure(years: &str, dates: &str) -> String {
    format!(
        "[closures.x]\nyears = {years}\ndates = {dates}\n\n[[calendar]]\nname = \"c\"\n\
         closures = \"x\"\nutc_offset = \"+08:00\"\nsessions = [\"09:00-11:00\"]\n"
    )
}

fn refuse(text: &str, expect: &[&str]) {
    let msg = match Calendars::from_toml(text, ORIGIN) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    };
    assert!(msg.starts_with("test/calendars.toml: "), "{msg}");
    assert!(
        msg.contains("not valid TOML") || !msg.contains('\n'),
        "one line: {msg}"
    );
    for part in expect {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
}

#[test]
fn refusals() {
    #[rustfmt::skip]
    let cases: Vec<(String, Vec<&str>)> = vec![
        // bad times
        (sessions(r#"["09:00-25:00"]"#, ""), vec![r#"calendar "c": session "09:00-25:00": bad time "25:00""#]),
        (sessions(r#"["9:5-11:00"]"#, ""), vec![r#"calendar "c": session "9:5-11:00": bad time "9:5""#]),
        (sessions(r#"["09:15-11:70"]"#, ""), vec![r#"calendar "c": session "09:15-11:70": bad time "11:70""#]),
        (sessions(r#"["09:15"]"#, ""), vec![r#"session "09:15": expected HH:MM-HH:MM"#]),
        // end not after start
        (sessions(r#"["11:30-09:15"]"#, ""), vec![r#"calendar "c": session "11:30-09:15": end 09:15 is not after start 11:30"#]),
        (sessions(r#"["10:00-10:00"]"#, ""), vec!["end 10:00 is not after start 10:00"]),
        // across midnight
        (sessions(r#"["09:00-11:00"]"#, r#"night_sessions = ["21:00-24:30"]"#),
            vec![r#"calendar "c": night session "21:00-24:30": ends after 24:00: a session cannot cross midnight"#]),
        (sessions(r#"["09:00-11:00"]"#, r#"night_sessions = ["21:00-01:00"]"#),
            vec![r#"night session "21:00-01:00": end 01:00 is not after start 21:00 (a session cannot cross midnight)"#]),
        // overlaps
        (sessions(r#"["09:00-11:30", "11:00-12:00"]"#, ""),
            vec![r#"calendar "c": session "11:00-12:00" overlaps session "09:00-11:30""#]),
        (sessions(r#"["09:00-15:00"]"#, r#"night_sessions = ["14:00-16:00"]"#),
            vec![r#"calendar "c": night session "14:00-16:00" overlaps session "09:00-15:00""#]),
        (sessions(r#"["09:00-15:00"]"#, r#"night_sessions = ["21:00-23:00", "22:00-22:30"]"#),
            vec![r#"night session "22:00-22:30" overlaps night session "21:00-23:00""#]),
        // dates and ranges
        (closure("[2026]", r#"["2026-02-30"]"#), vec![r#"closures "x": date "2026-02-30": no such date"#]),
        (closure("[2026]", r#"["2026-1-1"]"#), vec![r#"closures "x": date "2026-1-1": expected YYYY-MM-DD"#]),
        (closure("[2026]", r#"["2026-02-20..2026-02-16"]"#), vec![r#"closures "x": date "2026-02-20..2026-02-16": the range ends before it starts"#]),
        (closure("[2026]", r#"["2026-02-16.."]"#), vec![r#"closures "x": date "2026-02-16..": expected YYYY-MM-DD"#]),
        (closure("[2026]", r#"["2026-02-16...2026-02-18"]"#), vec![r#"date "2026-02-16...2026-02-18": expected YYYY-MM-DD"#]),
        // dates outside the covered years
        (closure("[2026]", r#"["2027-01-01"]"#), vec![r#"closures "x": date "2027-01-01": year 2027 is not in this entry's `years`"#]),
        (closure("[2026]", r#"["2026-12-31..2027-01-04"]"#), vec!["year 2027 is not in this entry's `years`"]),
        (closure("[1999]", "[]"), vec![r#"closures "x": year 1999 is outside the supported range 2000..=2099"#]),
        // references and names
        (one("utc_offset = \"+08:00\"\nsessions = [\"09:00-11:00\"]").replace("closures = \"x\"", "closures = \"y\""),
            vec![r#"calendar "c": unknown closures "y" (known: x)"#]),
        (format!("{}\n[[calendar]]\nname = \"c\"\nclosures = \"x\"\nutc_offset = \"+00:00\"\nsessions = [\"10:00-11:00\"]\n",
            sessions(r#"["09:00-11:00"]"#, "")),
            vec![r#"calendar "c": duplicate calendar name "c""#]),
        (sessions(r#"["09:00-11:00"]"#, "").replace("name = \"c\"", "name = \"c s\""), vec![r#"calendar "c s": bad name "c s""#]),
        // weekdays
        (sessions(r#"["09:00-11:00"]"#, r#"weekdays = ["mon", "monday"]"#),
            vec![r#"calendar "c": unknown weekday "monday" (known: mon, tue, wed, thu, fri, sat, sun)"#]),
        (sessions(r#"["09:00-11:00"]"#, r#"weekdays = ["mon", "mon"]"#), vec![r#"weekday "mon" listed twice"#]),
        (sessions(r#"["09:00-11:00"]"#, "weekdays = []"), vec![r#"calendar "c": `weekdays` is empty"#]),
        // offsets
        (one("utc_offset = \"+8\"\nsessions = [\"09:00-11:00\"]"), vec![r#"calendar "c": bad utc_offset "+8" (expected +HH:MM or -HH:MM)"#]),
        (one("utc_offset = \"+25:00\"\nsessions = [\"09:00-11:00\"]"), vec![r#"bad utc_offset "+25:00""#]),
        (one("utc_offset = \"08:00\"\nsessions = [\"09:00-11:00\"]"), vec![r#"bad utc_offset "08:00""#]),
        // unknown keys, missing keys, wrong types
        (sessions(r#"["09:00-11:00"]"#, "nigth_sessions = []"), vec![r#"calendar "c": unknown field `nigth_sessions`, expected one of"#]),
        (closure("[2026]", "[]").replace("years =", "holidays = []\nyears ="), vec![r#"closures "x": unknown field `holidays`, expected `years` or `dates`"#]),
        (format!("calendars = []\n{}", sessions(r#"["09:00-11:00"]"#, "")),
            vec!["test/calendars.toml: unknown key `calendars` (known: closures, calendar)"]),
        (one("utc_offset = \"+08:00\""), vec![r#"calendar "c": "#, "missing field `sessions`"]),
        (sessions(r#""09:00-11:00""#, ""), vec![r#"calendar "c": sessions: invalid type: string "09:00-11:00", expected a sequence"#]),
        (sessions("[]", ""), vec![r#"calendar "c": `sessions` is empty"#]),
        (one("utc_offset = \"+08:00\"\nsessions = [\"09:00-11:00\"]").replace("name = \"c\"\n", ""),
            vec![r#"calendar[0]: missing field `name`"#]),
        // the file as a whole
        (CLOSURE.to_string(), vec!["test/calendars.toml: no [[calendar]] entries"]),
        ("[[calendar]\nname = \"c\"".to_string(), vec!["test/calendars.toml: not valid TOML"]),
        ("calendar = 3\n".to_string(), vec!["`calendar` must be an array of tables"]),
        ("calendar = [3]\n".to_string(), vec!["test/calendars.toml: calendar[0]: expected a table ([[calendar]])"]),
        (format!("closures = {{ x = 3 }}\n{}", sessions(r#"["09:00-11:00"]"#, "")).replacen("[closures.x]\nyears = [2026]\ndates = []\n", "", 1),
            vec![r#"test/calendars.toml: closures "x": expected a table"#]),
    ];
    for (text, expect) in &cases {
        refuse(text, expect);
    }
}

#[test]
fn load_names_the_path() {
    let dir = std::env::temp_dir().join(format!("regwatch-calendar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let missing = dir.join("missing.toml");
    let err = Calendars::load(&missing).expect_err("no such file");
    assert_eq!(err.origin(), missing.display().to_string());
    assert!(err.reason().starts_with("cannot read: "), "{err}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, sessions(r#"["09:00-25:00"]"#, "")).expect("write");
    let err = Calendars::load(&bad).expect_err("bad time");
    assert_eq!(err.origin(), bad.display().to_string());
    assert_eq!(err.entry(), r#"calendar "c""#);
    assert!(err
        .to_string()
        .starts_with(&format!("{}: calendar \"c\": ", bad.display())));

    let good = dir.join("good.toml");
    std::fs::write(&good, DEFAULT_CALENDARS).expect("write");
    assert_eq!(Calendars::load(&good).expect("loads").len(), 2);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// Operators can write calendars the defaults do not use: another offset, weekend days,
/// a 24-hour session, several years, ranges over weekends, a night rule over Saturday.
#[test]
fn operator_calendars() {
    let text = r#"
        [closures.y]
        years = [2026, 2027]
        dates = ["2026-12-24..2026-12-27", "2027-01-01"]

        [closures.none]
        years = []
        dates = []

        [[calendar]]
        name = "ny-like"
        utc_offset = "-05:00"
        weekdays = ["mon", "tue", "wed", "thu", "fri", "sat"]
        sessions = ["09:30-16:00"]
        night_sessions = ["18:00-24:00"]
        closures = "y"

        [[calendar]]
        name = "always"
        utc_offset = "+00:00"
        weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        sessions = ["00:00-24:00"]
        closures = "none"
    "#;
    let all = Calendars::from_toml(text, ORIGIN).expect("valid");
    let ny = all.get(all.id("ny-like").expect("ny"));
    let always = all.get(all.id("always").expect("always"));
    let at = |s: &str| Timestamp::parse_rfc3339(s).expect("test time");
    let min = |m: i64| m * MS_PER_MINUTE;
    #[rustfmt::skip]
    let cases = [
        // Fri 2026-12-18: day 390 min; night runs (next weekday Sat 19 trades).
        (ny, "2026-12-18T00:00:00-05:00", "2026-12-19T00:00:00-05:00", min(390 + 360)),
        // Wed 2026-12-23: no night (Thu 24 closed); Thu 24 .. Sun 27: nothing.
        (ny, "2026-12-23T00:00:00-05:00", "2026-12-28T00:00:00-05:00", min(390)),
        // Sat 2026-12-19: next weekday Mon 21 trades: night runs.
        (ny, "2026-12-19T17:00:00-05:00", "2026-12-20T00:00:00-05:00", min(360)),
        // Thu 2026-12-31: no night (Fri 2027-01-01 closed).
        (ny, "2026-12-31T00:00:00-05:00", "2027-01-01T00:00:00-05:00", min(390)),
        (always, "2026-12-25T00:00:00Z", "2026-12-27T00:00:00Z", min(2 * 1440)),
    ];
    for (calendar, from, to, expect) in cases {
        assert_eq!(
            calendar.trading_ms(at(from), at(to)),
            expect,
            "{} {from} -> {to}",
            calendar.name()
        );
    }
    assert!(ny.covers(at("2027-06-01T00:00:00-05:00")));
    assert!(!ny.covers(at("2028-01-01T00:00:00-05:00")));
    assert!(!always.covers(at("2026-06-01T00:00:00Z")));
    let deadline = always.after_trading_ms(at("2026-12-25T23:59:00Z"), min(2));
    assert_eq!(deadline, Some(at("2026-12-26T00:01:00Z")));
}
