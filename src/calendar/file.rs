//! The calendar file: TOML text -> raw serde structs -> a validated [`File`].
//!
//! Everything an operator can get wrong is refused here, with the entry (`calendar "x"`,
//! `closures "y"`) and the reason; what leaves this module is exact: sessions sorted, inside
//! one local day and disjoint; closed dates inside covered years inside the day table's range.

use serde::Deserialize;

use crate::time::{days_from_civil, days_in_month};

/// The day table covers local dates from 2000-01-01 (inclusive) to 2100-01-01 (exclusive).
pub(super) const FIRST_YEAR: i64 = 2000;
pub(super) const END_YEAR: i64 = 2100;
/// Local days since the Unix epoch of 2000-01-01, the table's day 0.
pub(super) const FIRST_DAY: i64 = days_from_civil(FIRST_YEAR, 1, 1);
/// Number of days in the table.
pub(super) const DAYS: usize = (days_from_civil(END_YEAR, 1, 1) - FIRST_DAY) as usize;

const MINUTE_MS: i64 = 60_000;
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Why a file was refused: the entry at fault (empty for the file as a whole) and the reason.
pub(super) struct Refusal {
    pub entry: String,
    pub reason: String,
}

/// A validated calendar file.
pub(super) struct File {
    pub closures: Vec<Closure>,
    pub calendars: Vec<Spec>,
}

/// A validated closure list.
pub(super) struct Closure {
    pub name: String,
    /// Bit `y - FIRST_YEAR` is set when year `y` is covered.
    pub years: u128,
    /// Closed dates as day-table indices (weekends included when listed).
    pub closed: Vec<usize>,
}

/// A validated calendar, before its day table is built.
pub(super) struct Spec {
    pub name: String,
    pub offset_ms: i64,
    /// Bit 0 = Monday .. bit 6 = Sunday; never 0.
    pub weekdays: u8,
    /// Day and night sessions, sorted by start, disjoint, inside [0, 24:00].
    pub sessions: Vec<Session>,
    /// Index into [`File::closures`].
    pub closure: usize,
}

/// One session: milliseconds after local midnight, half-open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Session {
    pub start: i64,
    pub end: i64,
    pub night: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClosure {
    years: Vec<i64>,
    dates: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    name: String,
    utc_offset: String,
    #[serde(default)]
    weekdays: Option<Vec<String>>,
    sessions: Vec<String>,
    #[serde(default)]
    night_sessions: Vec<String>,
    closures: String,
}

/// Parses and validates a whole file.
pub(super) fn parse(text: &str) -> Result<File, Refusal> {
    let whole = |reason: String| Refusal {
        entry: String::new(),
        reason,
    };
    let top: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        whole(format!("not valid TOML: {}", e.to_string().trim_end()))
    })?;
    let mut raw_closures = toml::Table::new();
    let mut raw_calendars = Vec::new();
    for (key, value) in top {
        match (key.as_str(), value) {
            ("closures", toml::Value::Table(t)) => raw_closures = t,
            ("calendar", toml::Value::Array(a)) => raw_calendars = a,
            ("closures" | "calendar", _) => {
                return Err(whole(format!(
                    "`{key}` must be {}",
                    if key == "closures" {
                        "a table ([closures.NAME])"
                    } else {
                        "an array of tables ([[calendar]])"
                    }
                )))
            }
            _ => {
                return Err(whole(format!(
                    "unknown key `{key}` (known: closures, calendar)"
                )))
            }
        }
    }
    let mut closures = Vec::with_capacity(raw_closures.len());
    for (name, value) in raw_closures {
        let entry = format!("closures {name:?}");
        let refuse = |reason| Refusal {
            entry: entry.clone(),
            reason,
        };
        if !value.is_table() {
            return Err(refuse("expected a table ([closures.NAME])".into()));
        }
        let raw: RawClosure = from_value(value).map_err(refuse)?;
        closures.push(closure(name, raw).map_err(refuse)?);
    }
    if raw_calendars.is_empty() {
        return Err(whole("no [[calendar]] entries".into()));
    }
    if raw_calendars.len() > usize::from(u16::MAX) {
        return Err(whole(format!("more than {} calendars", u16::MAX)));
    }
    let mut calendars: Vec<Spec> = Vec::with_capacity(raw_calendars.len());
    for (index, value) in raw_calendars.into_iter().enumerate() {
        let entry = match value.get("name").and_then(toml::Value::as_str) {
            Some(name) => format!("calendar {name:?}"),
            None => format!("calendar[{index}]"),
        };
        let refuse = |reason| Refusal {
            entry: entry.clone(),
            reason,
        };
        if !value.is_table() {
            return Err(refuse("expected a table ([[calendar]])".into()));
        }
        let raw: RawCalendar = from_value(value).map_err(refuse)?;
        if calendars.iter().any(|c| c.name == raw.name) {
            return Err(refuse(format!("duplicate calendar name {:?}", raw.name)));
        }
        calendars.push(calendar(raw, &closures).map_err(refuse)?);
    }
    Ok(File {
        closures,
        calendars,
    })
}

/// Deserializes one entry, naming the field at fault (`sessions[1]: invalid type ...`).
fn from_value<T: serde::de::DeserializeOwned>(value: toml::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // toml appends "\nin `field`"; the path says it already.
        let inner = inner.split("\nin `").next().unwrap_or_default().trim();
        if path == "." || inner.starts_with("unknown field") {
            inner.replace('\n', " ")
        } else {
            format!("{path}: {}", inner.replace('\n', " "))
        }
    })
}

fn closure(name: String, raw: RawClosure) -> Result<Closure, String> {
    let mut years = 0u128;
    for &y in &raw.years {
        if !(FIRST_YEAR..END_YEAR).contains(&y) {
            return Err(format!(
                "year {y} is outside the supported range {FIRST_YEAR}..={}",
                END_YEAR - 1
            ));
        }
        years |= 1 << (y - FIRST_YEAR);
    }
    let mut closed = Vec::new();
    for text in &raw.dates {
        let bad = |reason: String| format!("date {text:?}: {reason}");
        let (first, last) = match text.split_once("..") {
            Some((a, b)) => (date(a.trim()).map_err(bad)?, date(b.trim()).map_err(bad)?),
            None => {
                let d = date(text).map_err(bad)?;
                (d, d)
            }
        };
        if last.0 < first.0 {
            return Err(bad("the range ends before it starts".into()));
        }
        for y in first.1..=last.1 {
            if years & (1 << (y - FIRST_YEAR)) == 0 {
                return Err(bad(format!(
                    "year {y} is not in this entry's `years` (add it there first)"
                )));
            }
        }
        closed.extend(first.0..=last.0);
    }
    Ok(Closure {
        name,
        years,
        closed,
    })
}

/// A `YYYY-MM-DD` date inside the table: (table index, year).
fn date(text: &str) -> Result<(usize, i64), String> {
    let b = text.as_bytes();
    let fields = (b.len() == 10 && b[4] == b'-' && b[7] == b'-')
        .then(|| {
            Some((
                number(b.get(0..4))?,
                number(b.get(5..7))?,
                number(b.get(8..10))?,
            ))
        })
        .flatten();
    let Some((y, m, d)) = fields else {
        return Err("expected YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD".into());
    };
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err("no such date".into());
    }
    if !(FIRST_YEAR..END_YEAR).contains(&y) {
        return Err(format!(
            "year {y} is outside the supported range {FIRST_YEAR}..={}",
            END_YEAR - 1
        ));
    }
    Ok(((days_from_civil(y, m, d) - FIRST_DAY) as usize, y))
}

fn calendar(raw: RawCalendar, closures: &[Closure]) -> Result<Spec, String> {
    let name_ok = !raw.name.is_empty()
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(format!(
            "bad name {:?} (letters, digits, '-', '_', '.'; not empty)",
            raw.name
        ));
    }
    let offset_ms = offset(&raw.utc_offset).ok_or_else(|| {
        format!(
            "bad utc_offset {:?} (expected +HH:MM or -HH:MM)",
            raw.utc_offset
        )
    })?;
    let weekdays = match &raw.weekdays {
        None => 0b1_1111,
        Some(list) => weekday_mask(list)?,
    };
    if raw.sessions.is_empty() {
        return Err("`sessions` is empty (a trading day needs at least one session)".into());
    }
    let mut sessions = Vec::with_capacity(raw.sessions.len() + raw.night_sessions.len());
    for (night, list) in [(false, &raw.sessions), (true, &raw.night_sessions)] {
        for text in list {
            let (start, end) =
                session(text).map_err(|r| format!("{} {text:?}: {r}", label(night)))?;
            sessions.push((Session { start, end, night }, text));
        }
    }
    sessions.sort_by_key(|(s, _)| s.start);
    for pair in sessions.windows(2) {
        let ((a, a_text), (b, b_text)) = (&pair[0], &pair[1]);
        if b.start < a.end {
            return Err(format!(
                "{} {b_text:?} overlaps {} {a_text:?}",
                label(b.night),
                label(a.night)
            ));
        }
    }
    let closure = closures
        .iter()
        .position(|c| c.name == raw.closures)
        .ok_or_else(|| {
            let known: Vec<&str> = closures.iter().map(|c| c.name.as_str()).collect();
            format!(
                "unknown closures {:?} (known: {})",
                raw.closures,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })?;
    Ok(Spec {
        name: raw.name,
        offset_ms,
        weekdays,
        sessions: sessions.into_iter().map(|(s, _)| s).collect(),
        closure,
    })
}

fn label(night: bool) -> &'static str {
    if night {
        "night session"
    } else {
        "session"
    }
}

fn weekday_mask(list: &[String]) -> Result<u8, String> {
    let mut mask = 0u8;
    for day in list {
        let bit = WEEKDAYS
            .iter()
            .position(|w| w == day)
            .ok_or_else(|| format!("unknown weekday {day:?} (known: {})", WEEKDAYS.join(", ")))?;
        if mask & (1 << bit) != 0 {
            return Err(format!("weekday {day:?} listed twice"));
        }
        mask |= 1 << bit;
    }
    if mask == 0 {
        return Err("`weekdays` is empty".into());
    }
    Ok(mask)
}

/// `HH:MM-HH:MM` -> (start, end) in ms after local midnight.
fn session(text: &str) -> Result<(i64, i64), String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| "expected HH:MM-HH:MM".to_string())?;
    let (start, end) = (time_of_day(a.trim())?, time_of_day(b.trim())?);
    let day = 24 * 60 * MINUTE_MS;
    if start > day || end > day {
        return Err("ends after 24:00: a session cannot cross midnight".into());
    }
    if end <= start {
        return Err(format!(
            "end {} is not after start {} (a session cannot cross midnight)",
            b.trim(),
            a.trim()
        ));
    }
    Ok((start, end))
}

/// `HH:MM` with HH <= 24 -> ms after midnight (24:30 passes here; [`session`] refuses it).
fn time_of_day(text: &str) -> Result<i64, String> {
    let b = text.as_bytes();
    let value = match (
        b.len() == 5 && b[2] == b':',
        number(b.get(0..2)),
        number(b.get(3..5)),
    ) {
        (true, Some(h), Some(m)) if h <= 24 && m <= 59 => Some((h * 60 + m) * MINUTE_MS),
        _ => None,
    };
    value.ok_or_else(|| format!("bad time {text:?} (expected HH:MM, 00:00 to 24:00)"))
}

/// `+HH:MM` / `-HH:MM` -> ms east of UTC.
fn offset(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let (h, m) = (number(b.get(1..3))?, number(b.get(4..6))?);
    if h > 23 || m > 59 {
        return None;
    }
    let ms = (h * 60 + m) * MINUTE_MS;
    match b[0] {
        b'+' => Some(ms),
        b'-' => Some(-ms),
        _ => None,
    }
}

/// ASCII digits only (no sign, no space) -> their value.
fn number(digits: Option<&[u8]>) -> Option<i64> {
    let digits = digits?;
    digits.iter().try_fold(0i64, |v, &c| {
        c.is_ascii_digit().then(|| v * 10 + i64::from(c - b'0'))
    })
}
