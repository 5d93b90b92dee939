//! The incident board: plain server-rendered HTML, no script, no external asset (the
//! daemon may run where there is no internet), one small stylesheet inline, readable on a
//! laptop and a phone. Three pages: the board (open incidents, most severe first, with
//! exemption status and both axes' reasons), a participant's page, and an incident's page
//! with its timeline drawn as an inline SVG chart (both axes' levels over time, each
//! crossing marked with its rule and threshold, the market calendar's sessions shaded).

use std::fmt::Write;

use serde_json::Value;

use super::participants::Summary;
use super::{Coverage, Filter, Story};
use crate::calendar::Calendars;
use crate::score::Level;
use crate::time::Timestamp;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a path segment (ids go into links).
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => String::new(),
        other => esc(&other.to_string()),
    }
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:12px;color:#111}\
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1em 0 .3em}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #ddd;vertical-align:top}\
th{background:#f3f3f3}.wrap{overflow-x:auto}a{color:#0645ad}\
.lv{font-weight:600;padding:1px 6px;border-radius:3px;white-space:nowrap}\
.none{background:#eee}.general{background:#dbeafe}.larger{background:#fde68a}.major{background:#fdba74}.extraordinary{background:#b91c1c;color:#fff}\
.ineligible{color:#b91c1c;font-weight:700}.eligible{color:#166534}\
.banner{padding:6px 10px;border-radius:4px;margin:6px 0}.ok{background:#dcfce7}.partial{background:#fee2e2}\
.reasons{font-size:.85em;color:#333}nav a{margin-right:12px}\
@media(max-width:700px){.wide{display:none}body{font-size:14px}}";

fn head(title: &str, refresh: bool) -> String {
    let mut s = String::from("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    if refresh {
        s.push_str("<meta http-equiv=\"refresh\" content=\"30\">");
    }
    let _ = write!(
        s,
        "<title>{} - regwatch</title><style>{STYLE}</style></head><body>",
        esc(title)
    );
    s.push_str("<nav><a href=\"/board\">Open incidents</a><a href=\"/board/participants\">Participants</a><a href=\"/board?status=all\">All incidents</a></nav>");
    s
}

fn level_badge(v: &Value) -> String {
    let l = v.as_str().unwrap_or("none");
    format!("<span class=\"lv {}\">{}</span>", esc(l), esc(l))
}

fn exemption(v: &Value) -> String {
    let e = v.as_str().unwrap_or("");
    let word = if e == "ineligible" {
        "lost (ineligible)"
    } else {
        "eligible"
    };
    format!("<span class=\"{}\">{word}</span>", esc(e))
}

fn coverage_banner(c: &Coverage) -> String {
    if c.complete {
        format!(
            "<div class=\"banner ok\" id=\"coverage\">Complete: every one of {} partitions, as of {}.</div>",
            c.partitions_total, c.as_of
        )
    } else {
        format!(
            "<div class=\"banner partial\" id=\"coverage\">Partial: {} of {} partitions covered{}, as of {}. Incidents of the other partitions may be missing or behind.</div>",
            c.partitions_covered,
            c.partitions_total,
            if c.history_read { "" } else { ", history not read to its end yet" },
            c.as_of
        )
    }
}

/// The reasons of one axis of a view, one line each with the rule, the observed value, the
/// threshold and the citation.
fn reasons(view: &Value, axis: &str) -> String {
    let mut s = String::new();
    for r in view[axis]["reasons"].as_array().into_iter().flatten() {
        let _ = write!(
            s,
            "<div>{} {} {} {} &rarr; {} <i>({})</i></div>",
            text(&r["metric"]),
            text(&r["observed"]),
            text(&r["op"]),
            text(&r["threshold"]),
            text(&r["rule"]),
            text(&r["cite"])
        );
    }
    s
}

fn incident_link(v: &Value) -> String {
    let p = v["participant_id"].as_str().unwrap_or("");
    let i = v["incident_id"].as_str().unwrap_or("");
    format!(
        "<a href=\"/board/incidents/{}/{}\">{}</a>",
        seg(p),
        seg(i),
        esc(i)
    )
}

fn participant_link(id: &str, name: &str) -> String {
    format!(
        "<a href=\"/board/participants/{}\">{}</a>{}",
        seg(id),
        esc(id),
        if name.is_empty() || name == id {
            String::new()
        } else {
            format!("<br><small>{}</small>", esc(name))
        }
    )
}

fn incidents_table(views: &[&Value]) -> String {
    let mut s = String::from("<div class=\"wrap\"><table class=\"incidents\"><tr><th>Level</th><th>Participant</th><th>Incident</th><th>Exemption</th><th>Investor loss</th><th>Market order</th><th class=\"wide\">Status</th><th class=\"wide\">Started</th></tr>");
    for v in views {
        let _ = write!(
            s,
            "<tr class=\"incident\"><td>{}</td><td>{}</td><td>{}<br><small>{} {}</small></td><td>{}</td><td>{}<div class=\"reasons\">{}</div></td><td>{}<div class=\"reasons\">{}</div></td><td class=\"wide\">{}</td><td class=\"wide\">{}</td></tr>",
            level_badge(&v["level"]),
            participant_link(
                v["participant_id"].as_str().unwrap_or(""),
                v["participant_name"].as_str().unwrap_or("")
            ),
            incident_link(v),
            text(&v["kind"]),
            text(&v["category"]),
            exemption(&v["exemption"]),
            level_badge(&v["investor_loss"]["level"]),
            reasons(v, "investor_loss"),
            level_badge(&v["market_order"]["level"]),
            reasons(v, "market_order"),
            text(&v["status"]),
            text(&v["started_at"]),
        );
    }
    s.push_str("</table></div>");
    if views.is_empty() {
        s.push_str("<p id=\"empty\">No incident.</p>");
    }
    s
}

/// The board: the incidents `filter` admits, most severe first.
pub fn board(views: &[&Value], filter: &Filter, coverage: &Coverage) -> String {
    let title = match filter.status.as_deref() {
        Some("open") => "Open incidents",
        Some("resolved") => "Resolved incidents",
        _ => "All incidents",
    };
    let mut s = head(title, true);
    let _ = write!(s, "<h1>{title} ({})</h1>", views.len());
    s.push_str(&coverage_banner(coverage));
    s.push_str(&incidents_table(views));
    s.push_str("</body></html>");
    s
}

/// Every participant, with its open and ineligible incidents and telemetry status.
pub fn participants(list: &[&Summary], coverage: &Coverage) -> String {
    let mut s = head("Participants", true);
    let _ = write!(s, "<h1>Participants ({})</h1>", list.len());
    s.push_str(&coverage_banner(coverage));
    s.push_str("<div class=\"wrap\"><table><tr><th>Participant</th><th>Kind</th><th>Open</th><th>Most severe open</th><th>Lost exemption</th><th class=\"wide\">Last incident</th><th>Telemetry</th></tr>");
    for p in list {
        let _ = write!(
            s,
            "<tr class=\"participant\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"wide\">{}</td><td>{}</td></tr>",
            participant_link(&p.participant_id, &p.participant_name),
            esc(&p.participant_kind),
            p.open_incidents,
            if p.open_incidents > 0 {
                level_badge(&Value::from(p.most_severe_open.as_str()))
            } else {
                String::new()
            },
            p.ineligible_incidents,
            p.last_incident
                .as_ref()
                .map(|l| format!("{} {}", text(&l["incident_id"]), text(&l["started_at"])))
                .unwrap_or_default(),
            telemetry(&p.telemetry),
        );
    }
    s.push_str("</table></div></body></html>");
    s
}

fn telemetry(t: &Value) -> String {
    match t["status"].as_str() {
        Some("silent") => format!(
            "<span class=\"ineligible\">silent</span> since {}",
            text(&t["last_heard_at"])
        ),
        Some(other) => format!("{} ({})", esc(other), text(&t["at"])),
        None => "no gap".into(),
    }
}

/// One participant: its line, its incidents and its silences.
pub fn participant(
    p: &Summary,
    views: &[&Value],
    silences: &[&super::silences::Silence],
    coverage: &Coverage,
) -> String {
    let mut s = head(&p.participant_id, true);
    let _ = write!(
        s,
        "<h1>{} <small>{}</small></h1><p>{} &middot; {} open &middot; {} resolved &middot; {} lost the exemption &middot; telemetry: {}{}</p>",
        esc(&p.participant_id),
        esc(&p.participant_name),
        esc(&p.participant_kind),
        p.open_incidents,
        p.resolved_incidents,
        p.ineligible_incidents,
        telemetry(&p.telemetry),
        if p.registered { "" } else { " &middot; not in the registry" }
    );
    let _ = write!(
        s,
        "<p><a href=\"/report?participant={0}&amp;format=csv\">Export CSV</a> &middot; <a href=\"/report?participant={0}\">Export JSON</a></p>",
        seg(&p.participant_id)
    );
    s.push_str(&coverage_banner(coverage));
    s.push_str(&incidents_table(views));
    s.push_str(&silences_table(silences, crate::time::wall_now()));
    s.push_str("</body></html>");
    s
}

/// Operators' silences of a participant, newest first, with their state at `now`.
fn silences_table(silences: &[&super::silences::Silence], now: crate::time::Timestamp) -> String {
    if silences.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<h2>Silences</h2><table><tr><th>State</th><th>From</th><th>Until</th><th>By</th><th>Why</th><th>Ended early by</th><th>Id</th></tr>",
    );
    for x in silences {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            x.state(now),
            x.starts_at,
            x.ends_at,
            esc(&x.author),
            esc(&x.reason),
            esc(x.expired_by.as_deref().unwrap_or("")),
            esc(&x.silence_id)
        );
    }
    s.push_str("</table>");
    s
}

/// One incident: its verdict, reasons, chart and timeline.
pub fn incident(story: &Story, calendars: &Calendars, coverage: &Coverage) -> String {
    let null = Value::Null;
    let v = story.view.as_ref().unwrap_or(&null);
    let pid = v["participant_id"].as_str().unwrap_or("");
    let iid = v["incident_id"].as_str().unwrap_or("");
    let mut s = head(&format!("{pid} {iid}"), true);
    let _ = write!(
        s,
        "<h1>{} <small>of {}</small></h1><p>{} &middot; exemption {} &middot; {} {} &middot; {} &middot; started {} &middot; {} min ({} trading min, {}){}</p>",
        esc(iid),
        participant_link(pid, ""),
        level_badge(&v["level"]),
        exemption(&v["exemption"]),
        text(&v["kind"]),
        text(&v["category"]),
        text(&v["status"]),
        text(&v["started_at"]),
        text(&v["duration_minutes"]),
        text(&v["trading_minutes"]),
        text(&v["calendar"]),
        match v["resolved_at"].as_str() {
            Some(r) => format!(" &middot; resolved {}", esc(r)),
            None => String::new(),
        }
    );
    s.push_str(&coverage_banner(coverage));
    let _ = write!(
        s,
        "<h2>Verdict</h2><table><tr><th>Axis</th><th>Level</th><th>Reasons</th></tr><tr><td>Investor loss</td><td>{}</td><td class=\"reasons\">{}</td></tr><tr><td>Market order</td><td>{}</td><td class=\"reasons\">{}</td></tr></table><p>{}</p>",
        level_badge(&v["investor_loss"]["level"]),
        reasons(v, "investor_loss"),
        level_badge(&v["market_order"]["level"]),
        reasons(v, "market_order"),
        text(&v["summary"]),
    );
    s.push_str("<h2>Timeline</h2>");
    s.push_str(&chart(story, calendars));
    s.push_str("<div class=\"wrap\"><table id=\"timeline\"><tr><th>At</th><th>What</th><th>Detail</th><th>Id</th></tr>");
    for e in &story.entries {
        let (what, detail) = match e.kind {
            "report" => {
                let changed: Vec<String> = e.record["changed"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{}={}", esc(k), text(v)))
                    .collect();
                let what = if e.record["opened"] == true {
                    "first report"
                } else if e.record["resolved"] == true {
                    "report: resolved"
                } else {
                    "report"
                };
                (
                    what.to_string(),
                    format!(
                        "{} &middot; investor loss {} &middot; market order {}",
                        if changed.is_empty() {
                            "no figure changed".into()
                        } else {
                            changed.join(", ")
                        },
                        text(&e.record["investor_loss"]),
                        text(&e.record["market_order"])
                    ),
                )
            }
            "action" => (
                format!(
                    "{} by {}{}",
                    text(&e.record["action"]),
                    text(&e.record["actor"]),
                    if e.record["outcome"] == "refused" {
                        " (refused)"
                    } else {
                        ""
                    }
                ),
                format!(
                    "{}{}",
                    text(&e.record["reason"]),
                    e.record["refusal"]
                        .as_str()
                        .map(|r| format!(" &middot; {}", esc(r)))
                        .unwrap_or_default()
                ),
            ),
            _ => (
                format!(
                    "{} {} {}",
                    e.kind,
                    text(&e.record["trigger"]),
                    level_badge(&e.record["level"])
                ),
                format!(
                    "{}<div class=\"reasons\">{}{}</div>",
                    text(&e.record["summary"]),
                    reasons(&e.record, "investor_loss"),
                    reasons(&e.record, "market_order")
                ),
            ),
        };
        let _ = write!(
            s,
            "<tr class=\"entry {}\"><td>{}</td><td>{}</td><td>{}</td><td><small>{}</small></td></tr>",
            e.kind,
            e.at,
            what,
            detail,
            esc(&e.id)
        );
    }
    s.push_str("</table></div>");
    if story.dropped > 0 {
        let _ = write!(
            s,
            "<p>{} older entries are not kept (history.max_entries).</p>",
            story.dropped
        );
    }
    s.push_str("</body></html>");
    s
}

/// The levels of both axes over time as an SVG step chart.
fn chart(story: &Story, calendars: &Calendars) -> String {
    const W: f64 = 900.0;
    const H: f64 = 260.0;
    const LEFT: f64 = 110.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 40.0;
    let null = Value::Null;
    let v = story.view.as_ref().unwrap_or(&null);
    let time = |x: &Value| x.as_str().and_then(Timestamp::parse_rfc3339);
    let mut points: Vec<(Timestamp, Level, Level, Option<&Value>)> = Vec::new();
    for e in &story.entries {
        let (il, mo) = match e.kind {
            "action" => continue,
            "report" => (&e.record["investor_loss"], &e.record["market_order"]),
            _ => (
                &e.record["investor_loss"]["level"],
                &e.record["market_order"]["level"],
            ),
        };
        let level = |x: &Value| x.as_str().and_then(Level::parse).unwrap_or(Level::None);
        points.push((
            e.at,
            level(il),
            level(mo),
            (e.kind == "alert").then_some(&e.record),
        ));
    }
    let start = time(&v["started_at"])
        .into_iter()
        .chain(points.first().map(|p| p.0))
        .min();
    let end = time(&v["resolved_at"])
        .or_else(|| time(&v["as_of"]))
        .into_iter()
        .chain(points.last().map(|p| p.0))
        .max();
    let (Some(t0), Some(t1)) = (start, end) else {
        return "<p>No timeline yet.</p>".into();
    };
    let span = (t1.millis() - t0.millis()).max(60_000) as f64;
    let x = |t: Timestamp| LEFT + (t.millis() - t0.millis()) as f64 / span * (W - LEFT - 10.0);
    let y = |l: Level| TOP + (4 - l as i32) as f64 / 4.0 * (H - TOP - BOTTOM);
    let mut s = format!(
        "<div class=\"wrap\"><svg id=\"chart\" viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"levels over time\" xmlns=\"http://www.w3.org/2000/svg\" style=\"max-width:{W}px;font-size:11px\">"
    );
    // Trading sessions of the incident's calendar, sampled along the axis.
    if let Some(cal) = v["calendar"].as_str().and_then(|n| calendars.id(n)) {
        let cal = calendars.get(cal);
        let steps = 600;
        let mut open: Option<f64> = None;
        for i in 0..=steps {
            let t = Timestamp(t0.millis() + (span * i as f64 / steps as f64) as i64);
            let inside = i < steps && cal.in_session(t);
            match (inside, open) {
                (true, None) => open = Some(x(t)),
                (false, Some(from)) => {
                    let _ = write!(
                        s,
                        "<rect class=\"session\" x=\"{from:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f1f5f9\"><title>trading session ({})</title></rect>",
                        (x(t) - from).max(1.0),
                        H - TOP - BOTTOM,
                        esc(cal.name())
                    );
                    open = None;
                }
                _ => {}
            }
        }
    }
    for l in Level::ALL {
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"4\" y=\"{:.1}\">{}</text>",
            W - 10.0,
            y(l),
            y(l),
            y(l) + 4.0,
            l.as_str()
        );
    }
    for (axis, color, dy) in [(0usize, "#1d4ed8", -2.0), (1, "#c2410c", 2.0)] {
        let mut d = String::new();
        let mut last: Option<(f64, f64)> = None;
        for p in &points {
            let level = if axis == 0 { p.1 } else { p.2 };
            let (px, py) = (x(p.0), y(level) + dy);
            match last {
                None => {
                    let _ = write!(d, "M{px:.1},{py:.1}");
                }
                Some((_, ly)) => {
                    let _ = write!(d, " L{px:.1},{ly:.1} L{px:.1},{py:.1}");
                }
            }
            last = Some((px, py));
        }
        if let Some((_, ly)) = last {
            let _ = write!(d, " L{:.1},{ly:.1}", x(t1));
        }
        let name = if axis == 0 {
            "investor loss"
        } else {
            "market order"
        };
        let _ = write!(
            s,
            "<path class=\"axis\" d=\"{d}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"><title>{name}</title></path>"
        );
    }
    // Each alert: a mark at its levels, with the rules and thresholds crossed.
    for p in &points {
        let Some(a) = p.3 else { continue };
        for (axis, level, color) in [
            ("investor_loss", p.1, "#1d4ed8"),
            ("market_order", p.2, "#c2410c"),
        ] {
            let crossed: Vec<String> = a[axis]["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    format!(
                        "{}: {} {} {} {}",
                        r["rule"].as_str().unwrap_or(""),
                        r["metric"].as_str().unwrap_or(""),
                        r["observed"],
                        r["op"].as_str().unwrap_or(""),
                        r["threshold"]
                    )
                })
                .collect();
            if crossed.is_empty() {
                continue;
            }
            let _ = write!(
                s,
                "<circle class=\"crossing\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{color}\"><title>{} {} at {}: {}</title></circle>",
                x(p.0),
                y(level),
                esc(a["alert_id"].as_str().unwrap_or("")),
                level.as_str(),
                p.0,
                esc(&crossed.join("; "))
            );
        }
    }
    let _ = write!(
        s,
        "<text x=\"{LEFT}\" y=\"{:.1}\">{t0}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{t1}</text>",
        H - 22.0,
        W - 10.0,
        H - 22.0
    );
    let _ = write!(
        s,
        "<text x=\"{LEFT}\" y=\"{:.1}\" fill=\"#1d4ed8\">&#9644; investor loss</text><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#c2410c\">&#9644; market order</text><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#64748b\">shaded: trading sessions</text></svg></div>",
        H - 6.0,
        LEFT + 140.0,
        H - 6.0,
        LEFT + 280.0,
        H - 6.0
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_links_are_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(seg("P 1/é"), "P%201%2F%C3%A9");
    }
}
