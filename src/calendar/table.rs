//! The day table: trading time as prefix sums over local days, built once at load.
//!
//! Each local day from 2000-01-01 to 2099-12-31 has a session pattern (closed, day sessions
//! only, day + night sessions) and the cumulative trading minutes of all days before it.
//! Trading time up to an instant is then one table read plus a walk over that day's few
//! sessions, and the instant a trading amount is reached is one binary search over days:
//! no allocation and no loop over days on the query path. Outside the table (before 2000,
//! from 2100 on) no time is trading: [`Table::cumulative`] clamps.

use super::file::{Closure, Session, Spec, DAYS, FIRST_DAY};

pub(super) const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;

/// Pattern bits: the day sessions run / the night sessions run.
const DAY: u8 = 1;
const NIGHT: u8 = 2;

pub(super) struct Table {
    /// Sorted by start, disjoint, inside one local day.
    sessions: Vec<Session>,
    /// Per table day: [`DAY`] | [`NIGHT`] bits.
    pattern: Vec<u8>,
    /// `cum[i]`: trading minutes of table days `[0, i)`; `DAYS + 1` entries. Whole minutes
    /// because sessions are `HH:MM`; 100 years of 24-hour trading still fit a `u32`.
    cum: Vec<u32>,
}

impl Session {
    fn runs(&self, pattern: u8) -> bool {
        pattern & if self.night { NIGHT } else { DAY } != 0
    }
}

impl Table {
    pub(super) fn build(spec: &Spec, closure: &Closure) -> Table {
        let mut closed = vec![false; DAYS];
        for &d in &closure.closed {
            closed[d] = true;
        }
        let weekday_open = |d: usize| spec.weekdays & (1 << weekday(d)) != 0;
        // Past the table nothing is closed: the next weekday of 2099-12-31 trades.
        let trades = |d: usize| weekday_open(d) && !closed.get(d).copied().unwrap_or(false);
        let mut per_pattern = [0u32; 4];
        for (p, total) in per_pattern.iter_mut().enumerate() {
            let ms: i64 = spec
                .sessions
                .iter()
                .filter(|s| s.runs(p as u8))
                .map(|s| s.end - s.start)
                .sum();
            *total = (ms / MINUTE_MS) as u32;
        }
        let mut pattern = Vec::with_capacity(DAYS);
        let mut cum = Vec::with_capacity(DAYS + 1);
        cum.push(0u32);
        for d in 0..DAYS {
            let p = if trades(d) {
                // `weekdays` is never empty, so a configured weekday comes within 7 days.
                let next = (d + 1..=d + 7).find(|&n| weekday_open(n)).unwrap_or(d + 7);
                if trades(next) {
                    DAY | NIGHT
                } else {
                    DAY
                }
            } else {
                0
            };
            pattern.push(p);
            cum.push(cum[d] + per_pattern[usize::from(p)]);
        }
        Table {
            sessions: spec.sessions.clone(),
            pattern,
            cum,
        }
    }

    /// Trading ms from the table's start to the local instant `local` (ms since the epoch
    /// of local wall time), clamped to the table.
    pub(super) fn cumulative(&self, local: i64) -> i64 {
        let Some(d) = day_index(local) else {
            return if local < FIRST_DAY * DAY_MS {
                0
            } else {
                self.total()
            };
        };
        let before = i64::from(self.cum[d]) * MINUTE_MS;
        let ms_of_day = local.rem_euclid(DAY_MS);
        let mut within = 0;
        for s in &self.sessions {
            if s.start >= ms_of_day {
                break;
            }
            if s.runs(self.pattern[d]) {
                within += ms_of_day.min(s.end) - s.start;
            }
        }
        before + within
    }

    /// The first local instant whose [`Table::cumulative`] reaches `target` (> 0); None when
    /// the table holds less.
    pub(super) fn locate(&self, target: i64) -> Option<i64> {
        // cum[0] = 0 < target, so i >= 1: target lies in day i - 1, 0 < rest <= its total.
        let i = self
            .cum
            .partition_point(|&c| i64::from(c) * MINUTE_MS < target);
        if i == 0 || i == self.cum.len() {
            return None;
        }
        let d = i - 1;
        let mut rest = target - i64::from(self.cum[d]) * MINUTE_MS;
        let day_start = (FIRST_DAY + d as i64) * DAY_MS;
        for s in self.sessions.iter().filter(|s| s.runs(self.pattern[d])) {
            let len = s.end - s.start;
            if rest <= len {
                return Some(day_start + s.start + rest);
            }
            rest -= len;
        }
        None // unreachable: the day's sessions hold cum[d + 1] - cum[d] >= rest
    }

    pub(super) fn in_session(&self, local: i64) -> bool {
        let Some(d) = day_index(local) else {
            return false;
        };
        let ms_of_day = local.rem_euclid(DAY_MS);
        self.sessions
            .iter()
            .any(|s| s.runs(self.pattern[d]) && s.start <= ms_of_day && ms_of_day < s.end)
    }

    pub(super) fn sessions(&self) -> &[Session] {
        &self.sessions
    }

    fn total(&self) -> i64 {
        i64::from(self.cum[DAYS]) * MINUTE_MS
    }
}

/// The table day of a local instant, if inside the table.
fn day_index(local: i64) -> Option<usize> {
    let d = local.div_euclid(DAY_MS) - FIRST_DAY;
    usize::try_from(d).ok().filter(|&d| d < DAYS)
}

/// 0 = Monday .. 6 = Sunday, of a table day (2000-01-01 was a Saturday).
fn weekday(d: usize) -> u32 {
    ((FIRST_DAY + d as i64 + 3).rem_euclid(7)) as u32
}
