//! Alerts: what the engine emits (CONTRACT.md section 3), with deterministic ids.
//!
//! The contract's fields come first and keep their meaning; everything after `at` is an
//! extension (`schema`, `trigger`, participant details, timing, `summary`). An alert is built
//! only on a state transition, so building it may allocate.
//!
//! `alert_id` is the first 16 bytes, in hex, of SHA-256 over
//! `regwatch.alert.v1|incident|<participant_id>|<incident_id>|<first report, ms>|<status>|<investor_loss level>|<market_order level>|<exemption>`
//! (for a telemetry gap: `regwatch.alert.v1|telemetry_gap|<participant_id>|<silent since, ms>|<status>`).
//! The same incident reaching the same state therefore always gets the same id, across
//! replays, restarts and instances, and receivers can drop duplicates by id; an incident id
//! used again later (after the first incident was evicted) is another incident, with other
//! ids, because its first report is another.
//!
//! Reminders (trigger `reminder`, see `score/engine.rs`) are built like incident alerts but
//! are not alerts of the contract: the daemon writes them to its reminders topic, never to
//! the alerts topic, and replay never emits them. They carry `reminder` (k, from 1) and
//! `reminder_of` (the id of the incident's latest real alert), two fields ordinary alerts
//! never serialise, and the id
//! `regwatch.alert.v1|reminder|<participant_id>|<incident_id>|<first report, ms>|<k>`,
//! distinct from every real alert's since no real alert hashes the word `reminder` there.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::decode::{Category, EventKind, System};
use crate::score::{AxisReport, Exemption, Level};
use crate::time::Timestamp;

pub const ALERT_SCHEMA: &str = "regwatch.alert.v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    Incident,
    TelemetryGap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// Which transition produced the alert (CONTRACT.md section 3 names exactly these), or
/// `Reminder` for a reminder, which is no transition and no contract alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The incident first reached the configured minimum level.
    Opened,
    /// An axis rose (or the exemption status changed) because of a report.
    Escalated,
    /// An axis rose because time passed (an unresolved outage), with no new report.
    Clock,
    /// The incident was resolved.
    Resolved,
    /// A person closed the incident (`closed_by`, `close_reason`): a `resolved` alert.
    Closed,
    /// An axis rose because the rules were reloaded with a stricter grid.
    Reload,
    /// A participant fell silent for longer than the configured gap.
    Silent,
    /// A silent participant was heard from again.
    Heard,
    /// Not a transition: the incident is still unresolved at or above the reminder level, and
    /// another reminder interval has passed. Never on the alerts topic, never in replay.
    Reminder,
}

/// One alert, serialised as one JSON object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub alert_id: String,
    #[serde(rename = "type")]
    pub alert_type: AlertType,
    pub participant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    pub status: AlertStatus,
    pub level: Level,
    pub investor_loss: AxisReport,
    pub market_order: AxisReport,
    pub exemption: Exemption,
    pub at: Timestamp,
    // Extensions beyond the contract's minimum.
    pub schema: &'static str,
    pub trigger: Trigger,
    pub participant_name: String,
    pub participant_kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_kind: Option<EventKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// Service duration at `at` (or at resolution), in minutes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<f64>,
    /// The part of the service duration inside the sessions of the participant's market
    /// calendar, in minutes (what the grid counts on trading and market-data systems).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trading_minutes: Option<f64>,
    /// The market calendar `trading_minutes` was counted in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// The `event_id` of the report that caused the transition; absent for clock-driven ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// For telemetry gaps: when the participant was last heard from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heard_at: Option<Timestamp>,
    /// For reminders only: which reminder of the incident this is (1, 2, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reminder: Option<u32>,
    /// For reminders only: the `alert_id` of the incident's most recent real alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reminder_of: Option<String>,
    /// For trigger `closed`: who closed the incident, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    /// One line a person can read and cite.
    pub summary: String,
}

impl Alert {
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Deterministic incident alert id (see module docs).
pub fn incident_alert_id(
    participant_id: &str,
    incident_id: &str,
    first_reported_at: Timestamp,
    status: AlertStatus,
    investor_loss: Level,
    market_order: Level,
    exemption: Exemption,
) -> String {
    let exemption = match exemption {
        Exemption::Eligible => "eligible",
        Exemption::Ineligible => "ineligible",
    };
    digest_id(&[
        ALERT_SCHEMA,
        "incident",
        participant_id,
        incident_id,
        &first_reported_at.millis().to_string(),
        status.as_str(),
        investor_loss.as_str(),
        market_order.as_str(),
        exemption,
    ])
}

/// Deterministic telemetry-gap alert id (see module docs).
pub fn gap_alert_id(participant_id: &str, silent_since: Timestamp, status: AlertStatus) -> String {
    digest_id(&[
        ALERT_SCHEMA,
        "telemetry_gap",
        participant_id,
        &silent_since.millis().to_string(),
        status.as_str(),
    ])
}

/// Deterministic reminder id: reminder `k` of an incident (see module docs).
pub fn reminder_alert_id(
    participant_id: &str,
    incident_id: &str,
    first_reported_at: Timestamp,
    k: u32,
) -> String {
    digest_id(&[
        ALERT_SCHEMA,
        "reminder",
        participant_id,
        incident_id,
        &first_reported_at.millis().to_string(),
        &k.to_string(),
    ])
}

fn digest_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"|");
        }
        h.update(p.as_bytes());
    }
    crate::delivery::sign::hex(&h.finalize()[..16])
}
