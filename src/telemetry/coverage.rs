//! Calendar coverage: a market calendar knows the closed dates of the years it lists, and
//! counts every configured weekday as trading outside them (never a silent zero). A clock that
//! reaches an uncovered year is therefore a loud, counted warning: every minute this task
//! publishes, per calendar in use, how many days from now the calendar still covers
//! (`regwatch_calendar_coverage_days`, 0 once uncovered; alerts in `deploy/` fire below 30
//! and at 0) and, while today is uncovered, logs a warning and counts it
//! (`regwatch_calendar_uncovered_total`).

use std::sync::Arc;
use std::time::Duration;

use crate::calendar::Calendar;
use crate::registry::Registry;
use crate::score::Rules;
use crate::telemetry::Metrics;
use crate::time::{wall_now, Timestamp};

/// How far ahead coverage is looked at, in days.
pub const HORIZON_DAYS: u32 = 400;

const DAY_MS: i64 = 86_400_000;

/// Whole days from `now` on that `calendar` covers without a break (0: `now` is not
/// covered), up to [`HORIZON_DAYS`].
pub fn days_covered(calendar: &Calendar, now: Timestamp) -> u32 {
    (0..HORIZON_DAYS)
        .find(|d| !calendar.covers(now.plus_millis(i64::from(*d) * DAY_MS)))
        .unwrap_or(HORIZON_DAYS)
}

/// Publishes coverage now and every minute, for the calendars the registry's participants
/// use in the rules in force (reloads included).
pub async fn watch(
    mut rules: tokio::sync::watch::Receiver<Arc<Rules>>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        let current = rules.borrow_and_update().clone();
        let mut names: Vec<&str> = registry.iter().map(|(_, p)| &*p.calendar).collect();
        names.sort_unstable();
        names.dedup();
        let now = wall_now();
        for name in names {
            let Some(id) = current.calendars().id(name) else {
                continue;
            };
            let days = days_covered(current.calendars().get(id), now);
            metrics
                .ops
                .calendar_coverage_days
                .with_label_values(&[name])
                .set(i64::from(days));
            if days == 0 {
                metrics
                    .ops
                    .calendar_uncovered
                    .with_label_values(&[name])
                    .inc();
                tracing::warn!(calendar = name, now = %now, "the market calendar does not cover this year: every weekday counts as a trading day (no holidays); add the year's closed dates to the calendars file");
            }
        }
        tokio::select! {
            _ = tick.tick() => {}
            r = rules.changed() => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Calendars;

    #[test]
    fn coverage_ends_with_the_last_covered_year() {
        let c = Calendars::builtin();
        let stock = c.get(c.id("cn-stock").unwrap());
        let at = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        // Beijing midnight of 2027-01-01 is 2026-12-31T16:00Z.
        assert_eq!(days_covered(stock, at("2026-11-30T16:00:00Z")), 31);
        assert_eq!(days_covered(stock, at("2026-12-31T15:59:59Z")), 1);
        assert_eq!(days_covered(stock, at("2026-12-31T16:00:00Z")), 0);
        assert_eq!(days_covered(stock, at("2026-01-01T00:00:00Z")), 365);
    }
}
