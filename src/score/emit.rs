//! Building alerts from incident state. Runs only on a transition, so it may allocate.

use std::fmt::Write;

use super::grade::AxisReport;
use super::incident::Incident;
use super::level::{Axis, Exemption, Level};
use super::rules::Rules;
use crate::alert::{gap_alert_id, incident_alert_id, Alert, AlertStatus, AlertType, Trigger};
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
    let subject = inc.subject(p, at);
    let mut axes = Axis::ALL.map(|axis| rules.explain(axis, &subject, inc.grade.get(axis)));
    let duration = (subject.minutes * 1000.0).round() / 1000.0;
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
        event_id: event_id.map(str::to_string),
        last_heard_at: None,
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
        event_id: None,
        last_heard_at: Some(silent_since),
        summary: format!(
            "{} ({}): telemetry gap, {what}; last heard {silent_since}",
            p.id, p.name
        ),
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
            Trigger::Reload => "escalated by a rules reload",
            Trigger::Silent | Trigger::Heard => "telemetry",
        },
        match a.exemption {
            Exemption::Eligible => "eligible",
            Exemption::Ineligible => "INELIGIBLE",
        }
    );
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
        }
    }
    s
}
