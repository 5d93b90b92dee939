//! `[history]`: every incident's story, kept in Kafka for the supervisors' desk (`desk/`).
//!
//! ```toml
//! [history]
//! enabled = true                 # write the history topic and serve the fleet-wide desk
//! topic = "regwatch.history"     # reports, alerts, incident views, partition watermarks
//! retention = "180d"             # how long the topic keeps a record (retention.ms when regwatch creates it)
//! max_incidents = 100000         # incidents one instance's desk holds (the oldest resolved go first)
//! max_entries = 500              # timeline entries kept per incident (the first and the latest)
//! max_entries_total = 200000     # timeline entries one desk holds, all incidents together
//! stale_after = "30s"            # a partition whose owner wrote nothing newer is not covered
//! ```

use serde::Deserialize;

use super::{duration_or, invalid, ConfigError};

#[derive(Clone, Debug, PartialEq)]
pub struct HistorySettings {
    pub enabled: bool,
    pub topic: String,
    pub retention_ms: i64,
    pub max_incidents: usize,
    pub max_entries: usize,
    pub max_entries_total: usize,
    pub stale_after_ms: i64,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            enabled: true,
            topic: "regwatch.history".into(),
            retention_ms: 180 * 86_400_000,
            max_incidents: 100_000,
            max_entries: 500,
            max_entries_total: 200_000,
            stale_after_ms: 30_000,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHistory {
    enabled: Option<bool>,
    topic: Option<String>,
    retention: Option<String>,
    max_incidents: Option<usize>,
    max_entries: Option<usize>,
    max_entries_total: Option<usize>,
    stale_after: Option<String>,
}

impl RawHistory {
    pub(super) fn validate(self) -> Result<HistorySettings, ConfigError> {
        let d = HistorySettings::default();
        let topic = self.topic.unwrap_or(d.topic);
        if topic.is_empty()
            || !topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(invalid(
                "history.topic",
                format!("{topic:?} is not a Kafka topic name"),
            ));
        }
        let retention_ms = duration_or("history.retention", self.retention, d.retention_ms)?;
        if retention_ms < 3_600_000 {
            return Err(invalid(
                "history.retention",
                "shorter than an hour: supervisors could not read what happened",
            ));
        }
        let max_incidents = self.max_incidents.unwrap_or(d.max_incidents);
        if !(1..=10_000_000).contains(&max_incidents) {
            return Err(invalid(
                "history.max_incidents",
                format!("{max_incidents} is outside 1..=10000000"),
            ));
        }
        let max_entries = self.max_entries.unwrap_or(d.max_entries);
        if !(10..=1_000_000).contains(&max_entries) {
            return Err(invalid(
                "history.max_entries",
                format!("{max_entries} is outside 10..=1000000"),
            ));
        }
        let max_entries_total = self.max_entries_total.unwrap_or(d.max_entries_total);
        if !(max_entries..=100_000_000).contains(&max_entries_total) {
            return Err(invalid(
                "history.max_entries_total",
                format!("{max_entries_total} is outside history.max_entries..=100000000"),
            ));
        }
        let stale_after_ms =
            duration_or("history.stale_after", self.stale_after, d.stale_after_ms)?;
        if stale_after_ms < 1_000 {
            return Err(invalid("history.stale_after", "shorter than a second"));
        }
        Ok(HistorySettings {
            enabled: self.enabled.unwrap_or(d.enabled),
            topic,
            retention_ms,
            max_incidents,
            max_entries,
            max_entries_total,
            stale_after_ms,
        })
    }
}
