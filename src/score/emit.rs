//! Building alerts from incident state. Runs only on a transition (or a due reminder), so it
//! may allocate.

use std::fmt::Write;

use super::grade::AxisReport;
use super::incident::Incident;
use super::level::{Axis, Exemption, Level};
use super::rules::Rules;
use crate::alert::{
    gap_alert_id, incident_alert_id, reminder_alert_id, Alert, AlertStatus, AlertType, Trigger,
};
use crate::registry::Participant;
use crate::time::Timestamp;

/// An incident alert for the incident's current state.
pub fn incident_alert(
    rules: &Rules,
    p: &Participant,
    inc: &mut Incident,
    status: AlertStatus,
    trigger: Trigger,
    at: Timestamp,
    event_id: Option<&str>,
) -> Alert {
    let subject = inc.subject(p, rules, at);
    let mut axes = Axis::ALL.map(|axis| rules.explain(axis, &subject, inc.grade.get(axis)));
    let duration = (subject.minutes * 1000.0).round() / 1000.0;
    let trading = (subject.trading_minutes * 1000.0).round() / 1000.0;
    let calendar = subject.calendar.name().to_string();
    for axis in Axis::ALL {
        let i = axis.index();
        let report = &mut axes[i];
        report.score = report.score.max(inc.scores[i]);
        inc.scores[i] = report.score;
        let kept = &mut inc.reasons.get_or_insert_with(Default::default)[i];
        if report.reasons.is_empty() && report.level > Level::None {
            // Current figures no longer justify the level held (a stricter reload, another
            // category): the reasons it was reached for stand.
            report.reasons = kept.clone();
        } else {
            kept.clone_from(&report.reasons);
        }
    }
    let exemption = rules.exemption(inc.grade);
    let level = inc.grade.overall();
    let alert_id = incident_alert_id(
        &p.id,
        &inc.incident_id,
        inc.first_reported_at,
        status,
        inc.grade.investor_loss,
        inc.grade.market_order,
        exemption,
    );
    let [investor_loss, market_order] = axes;
    let mut alert = Alert {
        alert_id,
        alert_type: AlertType::Incident,
        participant_id: p.id.to_string(),
        incident_id: Some(inc.incident_id.to_string()),
        status,
        level,
        investor_loss,
        market_order,
        exemption,
        at,
        schema: crate::alert::ALERT_SCHEMA,
        trigger,
        participant_name: p.name.to_string(),
        participant_kind: p.kind.as_str(),
        event_kind: Some(inc.kind),
        category: Some(inc.category),
        system: inc.system,
        started_at: Some(inc.started_at),
        resolved_at: inc.resolved_at,
        duration_minutes: Some(duration),
        trading_minutes: Some(trading),
        calendar: Some(calendar),
        event_id: event_id.map(str::to_string),
        last_heard_at: None,
        reminder: None,
        reminder_of: None,
        closed_by: None,
        close_reason: None,
        summary: String::new(),
    };
    alert.summary = summarize(&alert);
    alert
}

/// A telemetry-gap alert: `firing` when the gap is detected, `resolved` when heard again.
pub fn gap_alert(
    p: &Participant,
    silent_since: Timestamp,
    status: AlertStatus,
    at: Timestamp,
) -> Alert {
    let none = || AxisReport {
        level: Level::None,
        score: 0,
        reasons: Vec::new(),
    };
    let (trigger, what) = match status {
        AlertStatus::Firing => (Trigger::Silent, "silent"),
        AlertStatus::Resolved => (Trigger::Heard, "heard again after silence"),
    };
    Alert {
        alert_id: gap_alert_id(&p.id, silent_since, status),
        alert_type: AlertType::TelemetryGap,
        participant_id: p.id.to_string(),
        incident_id: None,
        status,
        level: Level::General,
        investor_loss: none(),
        market_order: none(),
        exemption: Exemption::Eligible,
        at,
        schema: crate::alert::ALERT_SCHEMA,
        trigger,
        participant_name: p.name.to_string(),
        participant_kind: p.kind.as_str(),
        event_kind: None,
        category: None,
        system: None,
        started_at: None,
        resolved_at: None,
        duration_minutes: Some(
            ((at.millis() - silent_since.millis()) as f64 / 60.0).round() / 1000.0,
        ),
        trading_minutes: None,
        calendar: None,
        event_id: None,
        last_heard_at: Some(silent_since),
        reminder: None,
        reminder_of: None,
        closed_by: None,
        close_reason: None,
        summary: format!(
            "{} ({}): telemetry gap, {what}; last heard {silent_since}",
            p.id, p.name
        ),
    }
}

/// Reminder `k` of an open, alerted incident, due at `at`, `elapsed_ms` after it reached the
/// reminder level: the incident as its latest alert would show it at `at`, with its own id and
/// `reminder_of` naming that latest real alert (a firing one: the incident is open).
pub fn reminder_alert(
    rules: &Rules,
    p: &Participant,
    inc: &mut Incident,
    k: u32,
    elapsed_ms: i64,
    at: Timestamp,
) -> Alert {
    let mut alert = incident_alert(
        rules,
        p,
        inc,
        AlertStatus::Firing,
        Trigger::Reminder,
        at,
        None,
    );
    alert.alert_id = reminder_alert_id(&p.id, &inc.incident_id, inc.first_reported_at, k);
    alert.reminder = Some(k);
    alert.reminder_of = latest_alert_id(p, inc);
    let mut s = format!(
        "Reminder {k}: {} ({}, {}) incident {} [{}] still unresolved after {} at {}",
        alert.participant_name,
        alert.participant_id,
        alert.participant_kind,
        inc.incident_id,
        inc.category.as_str(),
        human_duration(elapsed_ms),
        alert.level,
    );
    let _ = write!(
        s,
        " (service duration {} min, exemption {}",
        alert.duration_minutes.unwrap_or_default(),
        exemption_word(alert.exemption)
    );
    axes_summary(&mut s, &alert);
    if let Some(of) = &alert.reminder_of {
        let _ = write!(s, "; latest alert {of}");
    }
    s.push(')');
    alert.summary = s;
    alert
}

/// `3h`, `1h30m`, `45m`, `2d4h`, `90s`: the largest units, zeros left out.
fn human_duration(ms: i64) -> String {
    let mut rest = ms.max(0) / 1000;
    let mut s = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= secs {
            let _ = write!(s, "{}{unit}", rest / secs);
            rest %= secs;
        }
    }
    if s.is_empty() {
        s.push_str("0s");
    }
    s
}

fn exemption_word(e: Exemption) -> &'static str {
    match e {
        Exemption::Eligible => "eligible",
        Exemption::Ineligible => "INELIGIBLE",
    }
}

/// `; market order <level> (<score>), <reasons>...; investor loss ...`
fn axes_summary(s: &mut String, a: &Alert) {
    for (name, axis) in [
        ("market order", &a.market_order),
        ("investor loss", &a.investor_loss),
    ] {
        let _ = write!(s, "; {name} {} ({})", axis.level, axis.score);
        for r in &axis.reasons {
            let _ = write!(
                s,
                ", {}: {} {} {} {}",
                r.rule, r.metric, r.observed, r.op, r.threshold
            );
            if let Some(basis) = &r.basis {
                let _ = write!(s, " ({basis})");
            }
        }
    }
}

fn summarize(a: &Alert) -> String {
    let mut s = format!(
        "{} ({}, {}) incident {} [{}] {}: {} ({}), exemption {}",
        a.participant_id,
        a.participant_name,
        a.participant_kind,
        a.incident_id.as_deref().unwrap_or(""),
        a.category.map_or("", |c| c.as_str()),
        a.status.as_str(),
        a.level,
        match a.trigger {
            Trigger::Opened => "opened",
            Trigger::Escalated => "escalated by a report",
            Trigger::Clock => "escalated by elapsed time",
            Trigger::Resolved => "resolved",
            Trigger::Closed => "closed by a person",
            Trigger::Reload => "escalated by a rules reload",
            Trigger::Silent | Trigger::Heard => "telemetry",
            Trigger::Reminder => "still unresolved (reminder)",
        },
        exemption_word(a.exemption)
    );
    axes_summary(&mut s, a);
    s
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn human_durations() {
        for (ms, text) in [
            (10_800_000, "3h"),
            (0, "0s"),
            (5_400_000, "1h30m"),
            (90_000, "1m30s"),
            (2_700_000, "45m"),
            (187_200_000, "2d4h"),
        ] {
            assert_eq!(human_duration(ms), text);
        }
    }
}

/// An open incident as the incident API shows it to supervisors: both axes with their
/// reasons, the exemption status, and the id of the latest alert to cite.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IncidentView {
    pub participant_id: String,
    pub participant_name: String,
    pub participant_kind: &'static str,
    pub incident_id: String,
    pub kind: crate::decode::EventKind,
    pub category: crate::decode::Category,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<crate::decode::System>,
    pub level: Level,
    pub investor_loss: AxisReport,
    pub market_order: AxisReport,
    pub exemption: Exemption,
    pub started_at: Timestamp,
    pub first_reported_at: Timestamp,
    pub last_report_at: Timestamp,
    pub duration_minutes: f64,
    /// The part of it inside the sessions of `calendar`.
    pub trading_minutes: f64,
    pub calendar: String,
    /// `open` or `resolved`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// The latest alert sent for it (absent while below `alerts.min_level`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_alert_id: Option<String>,
    pub reminders_sent: u32,
    /// When a person acknowledged it (its reminders stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<Timestamp>,
    pub summary: String,
    /// The engine time the view was taken at (what `duration_minutes` counts up to).
    pub as_of: Timestamp,
}

/// The view of an incident at `now` (open, or resolved: then as it was resolved).
pub fn incident_view(
    rules: &Rules,
    p: &Participant,
    inc: &Incident,
    now: Timestamp,
) -> IncidentView {
    let mut copy = inc.clone();
    let (status, trigger) = match inc.is_open() {
        true => (AlertStatus::Firing, Trigger::Escalated),
        false => (AlertStatus::Resolved, Trigger::Resolved),
    };
    let a = incident_alert(rules, p, &mut copy, status, trigger, now, None);
    IncidentView {
        participant_id: a.participant_id,
        participant_name: a.participant_name,
        participant_kind: a.participant_kind,
        incident_id: inc.incident_id.to_string(),
        kind: inc.kind,
        category: inc.category,
        system: inc.system,
        level: a.level,
        investor_loss: a.investor_loss,
        market_order: a.market_order,
        exemption: a.exemption,
        started_at: inc.started_at,
        first_reported_at: inc.first_reported_at,
        last_report_at: inc.last_report_at,
        duration_minutes: a.duration_minutes.unwrap_or_default(),
        trading_minutes: a.trading_minutes.unwrap_or_default(),
        calendar: a.calendar.unwrap_or_default(),
        status: if inc.is_open() { "open" } else { "resolved" },
        resolved_at: inc.resolved_at,
        last_alert_id: if inc.is_open() {
            latest_alert_id(p, inc)
        } else {
            resolved_alert_id(p, inc)
        },
        reminders_sent: inc.reminders_sent,
        acked_at: inc.acked_at,
        summary: a.summary,
        as_of: now,
    }
}

/// The id of the `resolved` alert of a resolved incident, if it was alerted.
fn resolved_alert_id(p: &Participant, inc: &Incident) -> Option<String> {
    inc.emitted.map(|e| {
        incident_alert_id(
            &p.id,
            &inc.incident_id,
            inc.first_reported_at,
            AlertStatus::Resolved,
            e.grade.investor_loss,
            e.grade.market_order,
            e.exemption,
        )
    })
}

/// The id of the latest real alert of an open incident (a firing one), if it was alerted.
fn latest_alert_id(p: &Participant, inc: &Incident) -> Option<String> {
    inc.emitted.map(|e| {
        incident_alert_id(
            &p.id,
            &inc.incident_id,
            inc.first_reported_at,
            AlertStatus::Firing,
            e.grade.investor_loss,
            e.grade.market_order,
            e.exemption,
        )
    })
}
