//! `regwatch incidents`: an answer of `/incidents` as a table a terminal shows, most severe
//! first as the API orders it, with the coverage line that says whether it is the whole
//! fleet.

use std::fmt::Write;

use serde_json::Value;

const COLUMNS: [&str; 9] = [
    "LEVEL",
    "PARTICIPANT",
    "INCIDENT",
    "STATUS",
    "EXEMPTION",
    "INVESTOR_LOSS",
    "MARKET_ORDER",
    "STARTED",
    "LAST_ALERT",
];

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The table of an `/incidents` answer, then its coverage line.
pub fn render(answer: &Value) -> String {
    let rows: Vec<[String; 9]> = answer["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            [
                cell(&i["level"]),
                cell(&i["participant_id"]),
                cell(&i["incident_id"]),
                cell(&i["status"]),
                cell(&i["exemption"]),
                cell(&i["investor_loss"]["level"]),
                cell(&i["market_order"]["level"]),
                cell(&i["started_at"]),
                cell(&i["last_alert_id"]),
            ]
        })
        .collect();
    let mut widths = COLUMNS.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(&COLUMNS.map(String::from));
    for r in &rows {
        line(r);
    }
    let _ = writeln!(
        out,
        "{} of {} incidents; {}, as of {}",
        rows.len(),
        cell(&answer["total"]).replace('-', &rows.len().to_string()),
        match (answer["complete"].as_bool(), answer["scope"].as_str()) {
            (Some(true), _) => "complete: every partition".to_string(),
            (_, Some("local")) => "NOT complete: this instance's own partitions only".to_string(),
            _ => format!(
                "NOT complete: {} of {} partitions covered",
                cell(&answer["partitions_covered"]),
                cell(&answer["partitions_total"])
            ),
        },
        cell(&answer["as_of"])
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_with_aligned_columns_and_its_coverage() {
        let answer = json!({
            "complete": false, "scope": "fleet", "total": 2, "partitions_covered": 2,
            "partitions_total": 3, "as_of": "2026-03-02T10:00:00.000Z",
            "incidents": [
                {"level": "major", "participant_id": "GZ-BRK-0001", "incident_id": "LEAK\u{1b}[2J",
                 "status": "open", "exemption": "ineligible", "investor_loss": {"level": "major"},
                 "market_order": {"level": "none"}, "started_at": "2026-03-02T09:30:00.000Z",
                 "last_alert_id": "a1"},
                {"level": "general", "participant_id": "P", "incident_id": "I", "status": "resolved",
                 "exemption": "eligible", "investor_loss": {"level": "general"},
                 "market_order": {"level": "none"}, "started_at": "2026-03-02T09:00:00.000Z"}
            ]
        });
        let t = render(&answer);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("LEVEL    PARTICIPANT  INCIDENT"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("major    GZ-BRK-0001  LEAK [2J"),
            "control characters are not sent to the terminal: {t}"
        );
        assert!(lines[2].ends_with('-'), "no alert yet: {t}");
        assert_eq!(lines[3], "2 of 2 incidents; NOT complete: 2 of 3 partitions covered, as of 2026-03-02T10:00:00.000Z");
    }
}
