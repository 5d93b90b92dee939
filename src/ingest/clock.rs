//! A partition's event-time clock (CONTRACT.md section 1, v1.1): the instant its engine is
//! graded at.
//!
//! While the partition is behind (a backlog after downtime, a restart, a rebalance or lag) the
//! clock is the Kafka record timestamp of the newest message consumed from it, never ahead of
//! wall-clock time; once the partition has caught up to its end (the consumer's position has
//! reached the high watermark), it follows wall-clock time. A backlog is therefore graded as
//! it happened: regwatch's own downtime or lag never becomes incident duration, an escalation,
//! a telemetry gap or a reminder.
//!
//! Record timestamps are input, and input can be wrong: a timestamp older than the newest
//! one (clock skew between producers, `CreateTime` set by a participant) leaves the clock
//! where it is; one ahead of wall time is taken as wall time (a future record must not drag
//! the clock ahead of wall time). Both are reported so the caller counts them; a future one
//! only beyond [`FUTURE_TOLERANCE_MS`], since brokers' and this host's clocks differ a little.
//!
//! Pure: the caller passes wall time and whether the partition is caught up.

use crate::time::Timestamp;

/// How far ahead of wall time a record timestamp may be before it is reported as future.
pub const FUTURE_TOLERANCE_MS: i64 = 10_000;

/// Something odd about a record timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// Older than a record consumed before it (the clock stays where it is).
    Backwards,
    /// Ahead of wall time by more than [`FUTURE_TOLERANCE_MS`] (taken as wall time).
    Future,
    /// The record carries no timestamp (taken as wall time).
    Missing,
}

impl Anomaly {
    pub const ALL: [Anomaly; 3] = [Anomaly::Backwards, Anomaly::Future, Anomaly::Missing];

    pub fn as_str(self) -> &'static str {
        match self {
            Anomaly::Backwards => "backwards",
            Anomaly::Future => "future",
            Anomaly::Missing => "missing",
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PartitionClock {
    /// The newest record timestamp consumed (capped at wall time), if any.
    newest: Option<i64>,
}

impl PartitionClock {
    /// A consumed record's timestamp: returns the instant the engine is to be at before the
    /// record is applied, and what was odd about the timestamp.
    pub fn record(
        &mut self,
        timestamp: Option<i64>,
        wall: Timestamp,
    ) -> (Timestamp, Option<Anomaly>) {
        let wall = wall.millis();
        let (ts, anomaly) = match timestamp {
            None => (wall, Some(Anomaly::Missing)),
            Some(ts) if ts > wall.saturating_add(FUTURE_TOLERANCE_MS) => {
                (wall, Some(Anomaly::Future))
            }
            Some(ts) if self.newest.is_some_and(|n| ts < n) => (ts, Some(Anomaly::Backwards)),
            Some(ts) => (ts.min(wall), None),
        };
        let newest = self.newest.map_or(ts, |n| n.max(ts));
        self.newest = Some(newest);
        (Timestamp(newest), anomaly)
    }

    /// The engine time now: wall time once the partition is caught up; before, the newest
    /// record timestamp consumed (`None` before the first record: the clock stays).
    pub fn now(&self, caught_up: bool, wall: Timestamp) -> Option<Timestamp> {
        if caught_up {
            Some(wall)
        } else {
            self.newest.map(Timestamp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALL: Timestamp = Timestamp(1_000_000_000);

    #[test]
    fn behind_it_follows_the_records_and_caught_up_the_wall() {
        let mut c = PartitionClock::default();
        assert_eq!(c.now(false, WALL), None, "nothing read: the clock stays");
        assert_eq!(c.now(true, WALL), Some(WALL));
        let old = WALL.millis() - 3_600_000;
        assert_eq!(c.record(Some(old), WALL), (Timestamp(old), None));
        assert_eq!(c.now(false, WALL), Some(Timestamp(old)));
        assert_eq!(c.record(Some(old + 5), WALL), (Timestamp(old + 5), None));
        assert_eq!(c.now(true, WALL), Some(WALL), "caught up: wall time");
    }

    #[test]
    fn odd_timestamps_never_move_the_clock_back_or_past_the_wall() {
        let mut c = PartitionClock::default();
        let t = WALL.millis() - 60_000;
        c.record(Some(t), WALL);
        assert_eq!(
            c.record(Some(t - 1_000), WALL),
            (Timestamp(t), Some(Anomaly::Backwards)),
            "a record running backwards leaves the clock"
        );
        assert_eq!(
            c.record(Some(WALL.millis() + 86_400_000), WALL),
            (WALL, Some(Anomaly::Future)),
            "a record from tomorrow is taken as now"
        );
        assert_eq!(c.now(false, WALL), Some(WALL));
        // A little ahead (broker clock skew): capped, not reported.
        let mut c = PartitionClock::default();
        assert_eq!(c.record(Some(WALL.millis() + 500), WALL), (WALL, None));
        assert_eq!(
            c.record(None, Timestamp(WALL.millis() + 1)),
            (Timestamp(WALL.millis() + 1), Some(Anomaly::Missing))
        );
    }
}
