//! Records on the alerts and reminders topics, as the outbox reads them:
//! `delivery::payload::parse`, then, on what parses, the Alertmanager v4 body a receiver of
//! that format is sent (which must be JSON with the alert's status).
#![no_main]

use libfuzzer_sys::fuzz_target;
use regwatch::alert::AlertType;
use regwatch::delivery::payload;
use regwatch::score::Level;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = payload::parse(data) else {
        return;
    };
    // The routing fields are the record's own.
    assert_eq!(
        parsed.value["alert_id"].as_str(),
        Some(parsed.alert_id.as_str())
    );
    assert_eq!(
        parsed.value["participant_id"].as_str(),
        Some(parsed.participant_id.as_str())
    );
    assert_eq!(
        parsed.value["status"].as_str(),
        Some(parsed.status.as_str())
    );
    assert_eq!(
        Level::parse(parsed.value["level"].as_str().unwrap_or("")),
        Some(parsed.level)
    );
    let t = match parsed.alert_type {
        AlertType::Incident => "incident",
        AlertType::TelemetryGap => "telemetry_gap",
    };
    assert_eq!(parsed.value["type"].as_str(), Some(t));
    regwatch_fuzz::check_alertmanager(&parsed);
});
