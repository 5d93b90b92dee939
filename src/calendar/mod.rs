//! Market calendars as data: which instants are inside trading sessions (CONTRACT.md
//! section 2, "Trading time (v1.1)").
//!
//! The engine counts an outage's `trading_minutes` (the part of its duration inside the
//! sessions of the participant's calendar) with [`Calendar::trading_ms`], and schedules the
//! instant an open outage's trading minutes cross a threshold with
//! [`Calendar::after_trading_ms`]. Calendars come from a TOML file; the defaults
//! (`cn-stock`, `cn-futures`) are `config/calendars.toml`, built into the binary
//! ([`Calendars::builtin`]).
//!
//! # File format
//!
//! ```toml
//! [closures.cn-exchanges]            # a closed-date list, shared by calendars
//! years = [2026]                     # years whose closed dates are known (coverage)
//! dates = ["2026-01-01..2026-01-02", "2026-04-06"]   # ranges include both ends
//!
//! [[calendar]]
//! name = "cn-futures"                # unique; letters, digits, '-', '_', '.'
//! utc_offset = "+08:00"              # fixed offset of local time, no DST
//! weekdays = ["mon", "tue", "wed", "thu", "fri"]     # optional; this is the default
//! sessions = ["09:00-10:15", "10:30-11:30", "13:30-15:00"]   # local, half-open
//! night_sessions = ["21:00-23:00"]   # optional
//! closures = "cn-exchanges"          # required: the closed-date list it observes
//! ```
//!
//! - A trading day is a configured weekday that is not a closed date. Day sessions run on
//!   trading days. The night sessions of trading day D run on the evening of D (same local
//!   date), and only when the next configured weekday after D is a trading day: a Friday
//!   evening trades when Monday does; there is none on the evening before a holiday.
//! - Sessions are `HH:MM-HH:MM`, end after start, end by 24:00 (no session crosses midnight),
//!   and no two sessions (day or night) overlap; touching is fine.
//! - A year not in the closure list's `years` is not covered: every configured weekday of it
//!   trades (never a silent zero), [`Calendar::covers`] says false, and callers warn.
//! - Every refusal names the file (the caller's `origin`), the entry and the reason:
//!   `calendars.toml: calendar "cn-stock": session "09:15-11:70": bad time "11:70" ...`.
//!   Unknown keys are refused.
//!
//! # Invariants
//!
//! - Queries never allocate and never loop over days: a per-local-day table of cumulative
//!   trading minutes (2000-01-01 to 2100-01-01; no trading time outside it) makes
//!   [`Calendar::trading_ms`] O(1) and [`Calendar::after_trading_ms`] a binary search.
//! - Millisecond exactness: for `ms > 0` within the table, `t = after_trading_ms(from, ms)`
//!   gives `trading_ms(from, t) == ms` and `trading_ms(from, t - 1ms) < ms`.

mod file;
mod table;

#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

use self::table::{Table, DAY_MS};
use crate::time::{civil_from_days, Timestamp};

/// The default calendars of CONTRACT.md section 2, as shipped in `config/calendars.toml`.
pub const DEFAULT_CALENDARS: &str = include_str!("../../config/calendars.toml");

/// A refused calendar file: where (file, entry) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalendarError {
    origin: String,
    entry: String,
    reason: String,
}

impl CalendarError {
    /// The file (or other origin) given by the caller.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The entry at fault (`calendar "cn-stock"`, `closures "cn-exchanges"`); empty when the
    /// fault is the file as a whole.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for CalendarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if !self.entry.is_empty() {
            write!(f, "{}: ", self.entry)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for CalendarError {}

/// Index of a calendar in its [`Calendars`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CalendarId(pub u16);

/// All calendars of one file, in file order.
#[derive(Debug)]
pub struct Calendars {
    calendars: Vec<Calendar>,
}

impl Calendars {
    /// The built-in `config/calendars.toml` (a test proves it parses).
    pub fn builtin() -> Calendars {
        Calendars::from_toml(DEFAULT_CALENDARS, "config/calendars.toml (built in)")
            .expect("the built-in calendars parse (tested)")
    }

    /// The built-in calendars, built once per process and shared.
    pub fn shared_builtin() -> std::sync::Arc<Calendars> {
        static BUILTIN: std::sync::OnceLock<std::sync::Arc<Calendars>> = std::sync::OnceLock::new();
        BUILTIN
            .get_or_init(|| std::sync::Arc::new(Calendars::builtin()))
            .clone()
    }

    /// Parses and validates a calendar file; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Calendars, CalendarError> {
        let parsed = file::parse(text).map_err(|r| CalendarError {
            origin: origin.to_string(),
            entry: r.entry,
            reason: r.reason,
        })?;
        let calendars = parsed
            .calendars
            .iter()
            .map(|spec| {
                let closure = &parsed.closures[spec.closure];
                Calendar {
                    name: spec.name.clone(),
                    basis: format!("sessions of {}", spec.name),
                    offset_ms: spec.offset_ms,
                    years: closure.years,
                    table: Table::build(spec, closure),
                }
            })
            .collect();
        Ok(Calendars { calendars })
    }

    /// Reads and parses the file at `path` (the path is the errors' origin).
    pub fn load(path: &Path) -> Result<Calendars, CalendarError> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Calendars::from_toml(&text, &origin),
            Err(e) => Err(CalendarError {
                origin,
                entry: String::new(),
                reason: format!("cannot read: {e}"),
            }),
        }
    }

    pub fn id(&self, name: &str) -> Option<CalendarId> {
        let i = self.calendars.iter().position(|c| c.name == name)?;
        // The file refuses more than u16::MAX calendars.
        u16::try_from(i).ok().map(CalendarId)
    }

    /// # Panics
    /// When `id` does not come from this `Calendars` ([`Calendars::id`]).
    pub fn get(&self, id: CalendarId) -> &Calendar {
        &self.calendars[usize::from(id.0)]
    }

    /// Calendar names in file order (a calendar's [`CalendarId`] is its position).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.calendars.iter().map(|c| c.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.calendars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calendars.is_empty()
    }
}

/// One market calendar: its sessions, closed dates and day table.
pub struct Calendar {
    name: String,
    basis: String,
    /// Local time = UTC + offset.
    offset_ms: i64,
    /// Bit `y - 2000` set when the closed dates of year `y` are known.
    years: u128,
    table: Table,
}

impl Calendar {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Trading milliseconds in `[from, to)`; 0 when `to <= from`.
    pub fn trading_ms(&self, from: Timestamp, to: Timestamp) -> i64 {
        if to <= from {
            return 0;
        }
        self.table.cumulative(self.local(to)) - self.table.cumulative(self.local(from))
    }

    /// Trading minutes in `[from, to)` (`trading_ms / 60 000`).
    pub fn trading_minutes(&self, from: Timestamp, to: Timestamp) -> f64 {
        self.trading_ms(from, to) as f64 / crate::time::MS_PER_MINUTE as f64
    }

    /// The first instant `t >= from` with `trading_ms(from, t) >= ms` (`from` itself when
    /// `ms <= 0`). None only when the day table (to 2099-12-31) holds less trading time.
    pub fn after_trading_ms(&self, from: Timestamp, ms: i64) -> Option<Timestamp> {
        if ms <= 0 {
            return Some(from);
        }
        let target = self.table.cumulative(self.local(from)).checked_add(ms)?;
        let local = self.table.locate(target)?;
        Some(Timestamp(local - self.offset_ms))
    }

    /// Whether the closed dates of the local year of `t` are known. Outside covered years
    /// every configured weekday trades (never a silent zero) and callers warn.
    pub fn covers(&self, t: Timestamp) -> bool {
        let (year, _, _) = civil_from_days(self.local(t).div_euclid(DAY_MS));
        (file::FIRST_YEAR..file::END_YEAR).contains(&year)
            && self.years & (1 << (year - file::FIRST_YEAR)) != 0
    }

    /// Whether `t` is inside a session (sessions are half-open: the end is outside).
    pub fn in_session(&self, t: Timestamp) -> bool {
        self.table.in_session(self.local(t))
    }

    /// A short description for grading reasons: `sessions of cn-stock`.
    pub fn basis(&self) -> &str {
        &self.basis
    }

    /// The fixed offset of local time from UTC, in milliseconds.
    pub fn utc_offset_ms(&self) -> i64 {
        self.offset_ms
    }

    fn local(&self, t: Timestamp) -> i64 {
        t.0.saturating_add(self.offset_ms)
    }
}

impl fmt::Debug for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Calendar")
            .field("name", &self.name)
            .field("offset_ms", &self.offset_ms)
            .field("sessions", &self.table.sessions())
            .field("covered_years", &format_args!("{:#x}", self.years))
            .finish_non_exhaustive()
    }
}
