//! What goes over the wire: an alert read back from the alerts (or reminders) topic, and the
//! two bodies a receiver can ask for.
//!
//! - `native`: the record's bytes exactly as the engine wrote them (CONTRACT.md section 3),
//!   so a native body hashes and signs the same in every attempt and on every instance.
//! - `alertmanager`: Prometheus Alertmanager's webhook payload, `"version": "4"`, one alert
//!   per request (regwatch does no grouping; `truncatedAlerts` is always 0). Labels carry
//!   what receivers filter on (`alertname`, `severity`, participant, incident, both axes,
//!   exemption); annotations carry what people read (`summary`, `description` with every
//!   reason and its citation, `alert_id`, `trigger`, and `reminder`/`reminder_of` for
//!   reminders). `fingerprint` identifies the incident (or the participant's telemetry gap),
//!   so a bridge threads every alert of one incident together, as Alertmanager threads the
//!   notifications of one alert. `endsAt` is the zero time while firing, as Alertmanager
//!   sends it.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::alert::{AlertStatus, AlertType};
use crate::score::{Exemption, Level};

/// An alert read back from Kafka, with the fields routing needs.
#[derive(Debug)]
pub struct Parsed {
    pub value: Value,
    pub alert_id: String,
    pub alert_type: AlertType,
    pub participant_id: String,
    pub status: AlertStatus,
    pub level: Level,
    pub exemption: Exemption,
    /// For a reminder: which one (1, 2, ...).
    pub reminder: Option<u64>,
}

/// Reads an alert record; the error says which field is missing or wrong.
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON alert: {e}"))?;
    let text = |field: &str| {
        value
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("alert field {field:?} missing or not a string"))
    };
    let alert_id = text("alert_id")?.to_string();
    let participant_id = text("participant_id")?.to_string();
    let alert_type = match text("type")? {
        "incident" => AlertType::Incident,
        "telemetry_gap" => AlertType::TelemetryGap,
        other => return Err(format!("unknown alert type {other:?}")),
    };
    let status = match text("status")? {
        "firing" => AlertStatus::Firing,
        "resolved" => AlertStatus::Resolved,
        other => return Err(format!("unknown alert status {other:?}")),
    };
    let level = Level::parse(text("level")?).ok_or("unknown alert level")?;
    let exemption = match text("exemption")? {
        "eligible" => Exemption::Eligible,
        "ineligible" => Exemption::Ineligible,
        other => return Err(format!("unknown exemption {other:?}")),
    };
    let reminder = value.get("reminder").and_then(Value::as_u64);
    Ok(Parsed {
        alert_id,
        alert_type,
        participant_id,
        status,
        level,
        exemption,
        reminder,
        value,
    })
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

/// Alertmanager's `severity` label for a level.
fn severity(level: Level) -> &'static str {
    match level {
        Level::Major | Level::Extraordinary => "critical",
        Level::Larger => "warning",
        Level::General | Level::None => "info",
    }
}

/// Alertmanager renders a firing alert's end as the zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The Alertmanager webhook-v4 body for one alert, as `receiver` sees it. `external_url`
/// (`delivery.external_url`, where supervisors reach this daemon's HTTP endpoint) becomes
/// `externalURL`, and `generatorURL` links to the participant's open incidents there.
pub fn alertmanager(p: &Parsed, receiver: &str, external_url: &str) -> Vec<u8> {
    let v = &p.value;
    let status = p.status.as_str();
    let mut identity = Map::new();
    let mut labels = Map::new();
    let alertname = match p.alert_type {
        AlertType::Incident => "RegwatchIncident",
        AlertType::TelemetryGap => "RegwatchTelemetryGap",
    };
    identity.insert("alertname".into(), json!(alertname));
    identity.insert("participant_id".into(), json!(p.participant_id));
    if p.alert_type == AlertType::Incident {
        identity.insert("incident_id".into(), json!(str_of(v, "incident_id")));
    }
    labels.extend(identity.clone());
    labels.insert("severity".into(), json!(severity(p.level)));
    labels.insert("level".into(), json!(p.level.as_str()));
    labels.insert(
        "exemption".into(),
        json!(match p.exemption {
            Exemption::Eligible => "eligible",
            Exemption::Ineligible => "ineligible",
        }),
    );
    for field in ["participant_name", "participant_kind", "category", "system"] {
        if let Some(s) = v.get(field).and_then(Value::as_str) {
            labels.insert(field.into(), json!(s));
        }
    }
    if p.alert_type == AlertType::Incident {
        for axis in ["investor_loss", "market_order"] {
            let level = v[axis]["level"].as_str().unwrap_or("none");
            labels.insert(axis.into(), json!(level));
        }
    }

    let mut annotations = Map::new();
    annotations.insert("summary".into(), json!(str_of(v, "summary")));
    annotations.insert("description".into(), json!(describe(v)));
    annotations.insert("alert_id".into(), json!(p.alert_id));
    annotations.insert("trigger".into(), json!(str_of(v, "trigger")));
    annotations.insert("at".into(), json!(str_of(v, "at")));
    if let Some(n) = p.reminder {
        annotations.insert("reminder".into(), json!(n.to_string()));
        annotations.insert("reminder_of".into(), json!(str_of(v, "reminder_of")));
    }

    let starts_at = ["started_at", "last_heard_at", "at"]
        .iter()
        .map(|f| str_of(v, f))
        .find(|s| !s.is_empty())
        .unwrap_or(ZERO_TIME);
    let ends_at = match p.status {
        AlertStatus::Resolved => {
            let r = str_of(v, "resolved_at");
            if r.is_empty() {
                str_of(v, "at")
            } else {
                r
            }
        }
        AlertStatus::Firing => ZERO_TIME,
    };
    let group_key = format!(
        "{{}}:{{{}}}",
        identity
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let body = json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": identity.clone(),
        "commonLabels": labels.clone(),
        "commonAnnotations": annotations.clone(),
        "externalURL": external_url,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": starts_at,
            "endsAt": ends_at,
            "generatorURL": generator_url(external_url, &p.participant_id),
            "fingerprint": fingerprint(&identity),
        }],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Every reason of both axes, one per line, with its rule, observation and citation.
fn describe(v: &Value) -> String {
    let mut lines = Vec::new();
    for (name, axis) in [
        ("market order", "market_order"),
        ("investor loss", "investor_loss"),
    ] {
        let a = &v[axis];
        let Some(reasons) = a["reasons"].as_array() else {
            continue;
        };
        lines.push(format!(
            "{name}: {} (score {})",
            a["level"].as_str().unwrap_or("none"),
            a["score"]
        ));
        for r in reasons {
            lines.push(format!(
                "- {}: {} {} {} {} ({})",
                str_of(r, "rule"),
                str_of(r, "metric"),
                r["observed"],
                str_of(r, "op"),
                r["threshold"],
                str_of(r, "cite"),
            ));
        }
    }
    lines.join("\n")
}

/// 16 hex digits of SHA-256 over the identity labels, in their (sorted) order.
fn fingerprint(identity: &Map<String, Value>) -> String {
    let mut h = Sha256::new();
    for (k, v) in identity {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_str().unwrap_or("").as_bytes());
        h.update([0]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `<external_url>/incidents?participant=<id>`, or empty without an external URL.
fn generator_url(external_url: &str, participant_id: &str) -> String {
    if external_url.is_empty() {
        return String::new();
    }
    let id: String = participant_id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!(
        "{}/incidents?participant={id}",
        external_url.trim_end_matches('/')
    )
}
