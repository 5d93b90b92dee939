//! Exports for the exemption decision: a participant's incidents over a period, each with
//! its verdict, the reasons with their citations and every alert id, as JSON and as CSV
//! (`regwatch report`, `GET /report`).

use serde_json::{json, Value};

use super::{Filter, Store};
use crate::time::Timestamp;

/// The incidents of `participant` whose span meets [from, to], oldest first, each as one
/// JSON object.
pub fn rows(
    store: &Store,
    participant: &str,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    rules: &crate::score::Rules,
) -> Vec<Value> {
    let filter = Filter {
        participant: Some(participant.to_string()),
        from,
        to,
        ..Filter::default()
    };
    let mut views = store.select(&filter);
    views.sort_by(|a, b| {
        a["first_reported_at"]
            .as_str()
            .cmp(&b["first_reported_at"].as_str())
            .then_with(|| a["incident_id"].as_str().cmp(&b["incident_id"].as_str()))
    });
    views
        .into_iter()
        .map(|v| {
            let mut v = v.clone();
            super::project(&mut v, store, rules);
            let story = store.get(
                v["participant_id"].as_str().unwrap_or(""),
                v["incident_id"].as_str().unwrap_or(""),
            );
            let alerts: Vec<Value> = story
                .map(|s| {
                    s.entries
                        .iter()
                        .filter(|e| e.kind == "alert")
                        .map(|e| {
                            json!({
                                "alert_id": e.id,
                                "at": e.at,
                                "trigger": e.record["trigger"],
                                "status": e.record["status"],
                                "level": e.record["level"],
                                "exemption": e.record["exemption"],
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let reports = story.map_or(0, |s| {
                s.entries.iter().filter(|e| e.kind == "report").count()
            });
            let mut reasons = Vec::new();
            for axis in ["investor_loss", "market_order"] {
                for r in v[axis]["reasons"].as_array().into_iter().flatten() {
                    let mut r = r.clone();
                    r["axis"] = json!(axis);
                    reasons.push(r);
                }
            }
            json!({
                "participant_id": v["participant_id"],
                "participant_name": v["participant_name"],
                "incident_id": v["incident_id"],
                "kind": v["kind"],
                "category": v["category"],
                "status": v["status"],
                "started_at": v["started_at"],
                "first_reported_at": v["first_reported_at"],
                "resolved_at": v["resolved_at"],
                "level": v["level"],
                "investor_loss": v["investor_loss"]["level"],
                "market_order": v["market_order"]["level"],
                "exemption": v["exemption"],
                "duration_minutes": v["duration_minutes"],
                "trading_minutes": v["trading_minutes"],
                "calendar": v["calendar"],
                "reasons": reasons,
                "alerts": alerts,
                "last_alert_id": v["last_alert_id"],
                "reports": reports,
                "summary": v["summary"],
            })
        })
        .collect()
}

/// The JSON export: what was asked, how complete the desk was, and the incidents.
pub fn document(
    participant: &str,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    coverage: &super::Coverage,
    rows: Vec<Value>,
) -> Value {
    json!({
        "schema": "regwatch.report.v1",
        "participant_id": participant,
        "from": from,
        "to": to,
        "generated_at": crate::time::wall_now(),
        "complete": coverage.complete,
        "as_of": coverage.as_of,
        "count": rows.len(),
        "incidents": rows,
    })
}

/// The CSV columns, in order.
pub const COLUMNS: [&str; 18] = [
    "participant_id",
    "participant_name",
    "incident_id",
    "kind",
    "category",
    "status",
    "started_at",
    "resolved_at",
    "level",
    "investor_loss",
    "market_order",
    "exemption",
    "duration_minutes",
    "trading_minutes",
    "reasons",
    "citations",
    "alert_ids",
    "summary",
];

/// One reason as a line a supervisor can file: `investor_loss major: rule R (loss_cny 6000000 >= 5000000)`.
pub fn reason_text(r: &Value) -> String {
    format!(
        "{} {}: {} ({} {} {} {})",
        r["axis"].as_str().unwrap_or(""),
        r["level"].as_str().unwrap_or(""),
        r["rule"].as_str().unwrap_or(""),
        r["metric"].as_str().unwrap_or(""),
        number(&r["observed"]),
        r["op"].as_str().unwrap_or(""),
        number(&r["threshold"]),
    )
}

fn number(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn field(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled. A field
/// a spreadsheet would take for a formula is prefixed with a quote mark.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The rows as CSV with a header line (CRLF line ends).
pub fn csv(rows: &[Value]) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for r in rows {
        let reasons = r["reasons"].as_array().cloned().unwrap_or_default();
        let line: Vec<String> = COLUMNS
            .iter()
            .map(|c| match *c {
                "reasons" => reasons
                    .iter()
                    .map(reason_text)
                    .collect::<Vec<_>>()
                    .join(" | "),
                "citations" => reasons
                    .iter()
                    .map(|r| field(&r["cite"]))
                    .collect::<Vec<_>>()
                    .join(" | "),
                "alert_ids" => r["alerts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| field(&a["alert_id"]))
                    .collect::<Vec<_>>()
                    .join(" "),
                other => field(&r[other]),
            })
            .map(|f| csv_field(&f))
            .collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_field("-1.5"), "-1.5");
    }

    #[test]
    fn a_row_lists_reasons_with_citations_and_alert_ids() {
        let row = json!({
            "participant_id": "P", "incident_id": "I", "level": "major",
            "reasons": [{"axis": "investor_loss", "level": "major", "rule": "loss-major",
                         "metric": "loss_cny", "observed": 6000000.0, "op": ">=",
                         "threshold": 5000000.0, "cite": "CSRC 2.3, \"loss\""}],
            "alerts": [{"alert_id": "a1"}, {"alert_id": "a2"}],
        });
        let text = csv(&[row]);
        let mut lines = text.split("\r\n");
        assert_eq!(lines.next().unwrap(), COLUMNS.join(","));
        let line = lines.next().unwrap();
        assert!(
            line.contains("investor_loss major: loss-major (loss_cny 6000000.0 >= 5000000.0)"),
            "{line}"
        );
        assert!(line.contains("\"CSRC 2.3, \"\"loss\"\"\""), "{line}");
        assert!(line.contains(",a1 a2,"), "{line}");
    }
}
