//! The desk's materialized history: every incident's latest view and timeline, every
//! participant's telemetry status, every partition's watermark, folded from the history
//! topic's records in any order they arrive (a redelivered record changes nothing).
//!
//! Bounded: at most `max_incidents` stories and `max_entries_total` timeline entries in all
//! (beyond either the resolved stories updated longest ago go first, then the oldest), and
//! `max_entries` entries per incident (the first entry and the latest ones are kept; the
//! story says how many were dropped).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::keys;
use crate::score::{Axis, Level};
use crate::time::Timestamp;

/// One thing that happened to an incident.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Entry {
    /// When it happened (engine time: the report's `occurred_at`, the alert's `at`).
    pub at: Timestamp,
    /// `report`, `alert` (a contract alert: opened, escalated, clock, reload, resolved) or
    /// `reminder`.
    pub kind: &'static str,
    /// The report's `event_id` or the alert's `alert_id`.
    pub id: String,
    /// The record as written: the report (changed figures, grade after it) or the alert.
    pub record: Value,
}

/// An incident's story.
#[derive(Clone, Debug, Default)]
pub struct Story {
    /// The latest view (`IncidentView` as JSON), once one was read.
    pub view: Option<Value>,
    pub entries: Vec<Entry>,
    /// Entries dropped beyond `max_entries`.
    pub dropped: u64,
    ids: HashSet<String>,
    /// Order in which stories were last changed (for eviction).
    touched: u64,
}

impl Story {
    /// Each level an axis reached, in order: from its alerts (reminders aside), the axis,
    /// the level it left and the one it reached, the reasons (rule, metric, observed value,
    /// operator, threshold, citation), the minutes counted then (wall and trading) and the
    /// id of the alert that announced it.
    pub fn crossings(&self) -> Vec<Value> {
        let mut held = [Level::None; 2];
        let mut out = Vec::new();
        for e in self.entries.iter().filter(|e| e.kind == "alert") {
            for (i, axis) in [Axis::InvestorLoss, Axis::MarketOrder]
                .into_iter()
                .enumerate()
            {
                let a = &e.record[axis.as_str()];
                let level = level_of(&a["level"]);
                if level > held[i] {
                    out.push(serde_json::json!({
                        "at": e.at,
                        "axis": axis.as_str(),
                        "from": held[i],
                        "to": level,
                        "reasons": a["reasons"],
                        "duration_minutes": e.record["duration_minutes"],
                        "trading_minutes": e.record["trading_minutes"],
                        "calendar": e.record["calendar"],
                        "trigger": e.record["trigger"],
                        "alert_id": e.id,
                    }));
                    held[i] = level;
                }
            }
        }
        out
    }

    pub fn is_open(&self) -> bool {
        self.view
            .as_ref()
            .is_none_or(|v| v["status"].as_str() != Some("resolved"))
    }

    /// Adds an entry once; returns how many entries the story gained (0 or 1).
    fn add(&mut self, entry: Entry, max: usize) -> usize {
        if !self.ids.insert(format!("{}|{}", entry.kind, entry.id)) {
            return 0;
        }
        // In time order. At one instant a report goes before the alerts it caused (it is
        // written at the flush after them); otherwise in the order written, which one
        // history partition per participant keeps.
        let rank = |e: &Entry| (e.at, e.kind != "report");
        let key = rank(&entry);
        let at = self.entries.partition_point(|e| rank(e) <= key);
        self.entries.insert(at, entry);
        if self.entries.len() > max {
            // The first entry (how it began) stays; the oldest after it goes.
            self.entries.remove(1);
            self.dropped += 1;
            return 0;
        }
        1
    }
}

/// A participant as the desk knows it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ParticipantInfo {
    pub participant_id: String,
    pub participant_name: String,
    pub participant_kind: String,
    /// The latest telemetry-gap alert: `silent` (firing) or `heard` (resolved), with when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Value>,
}

/// A partition's watermark, as its owner last wrote it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    pub topic: String,
    pub partition: i32,
    pub offset: Option<i64>,
    pub clock: Option<Timestamp>,
    pub at: Timestamp,
    pub status: String,
    pub instance: String,
}

/// Which incidents a query wants.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// The participants graded now (the registry): an open incident of a participant
    /// removed from it is no longer graded by anyone, its state deleted, so it is not
    /// shown as open (its story stays readable by id). `None`: no such check.
    pub registered: Option<std::sync::Arc<std::collections::HashSet<String>>>,
    pub participant: Option<String>,
    /// Overall level at least this (or, with `axis`, that axis' level).
    pub min_level: Level,
    pub axis: Option<Axis>,
    /// `eligible` or `ineligible`.
    pub exemption: Option<String>,
    /// `open`, `resolved`, or both (`None`).
    pub status: Option<String>,
    /// The incident's span (started to resolved, or to its view's time) meets [from, to].
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

fn level_of(v: &Value) -> Level {
    v.as_str().and_then(Level::parse).unwrap_or(Level::None)
}

pub(super) fn time_of(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(Timestamp::parse_rfc3339)
}

impl Filter {
    pub fn admits(&self, view: &Value) -> bool {
        if let Some(p) = &self.participant {
            if view["participant_id"].as_str() != Some(p) {
                return false;
            }
        }
        let level = match self.axis {
            Some(axis) => level_of(&view[axis.as_str()]["level"]),
            None => level_of(&view["level"]),
        };
        if level < self.min_level {
            return false;
        }
        if let Some(e) = &self.exemption {
            if view["exemption"].as_str() != Some(e) {
                return false;
            }
        }
        if let Some(s) = &self.status {
            if view["status"].as_str() != Some(s) {
                return false;
            }
        }
        if let Some(known) = &self.registered {
            let p = view["participant_id"].as_str().unwrap_or_default();
            if view["status"] == "open" && !known.contains(p) {
                return false;
            }
        }
        let started = time_of(&view["started_at"]).unwrap_or_default();
        // An open incident's known span ends at its view's engine time.
        let ended = time_of(&view["resolved_at"])
            .or_else(|| time_of(&view["as_of"]))
            .unwrap_or(Timestamp(i64::MAX));
        if self.to.is_some_and(|to| started > to) || self.from.is_some_and(|from| ended < from) {
            return false;
        }
        true
    }
}

/// Most severe first: level, then ineligible before eligible, then open before resolved,
/// then the latest report first, then by ids.
pub fn severity_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    level_of(&b["level"])
        .cmp(&level_of(&a["level"]))
        .then_with(|| (b["exemption"] == "ineligible").cmp(&(a["exemption"] == "ineligible")))
        .then_with(|| (b["status"] == "open").cmp(&(a["status"] == "open")))
        .then_with(|| {
            time_of(&b["last_report_at"])
                .unwrap_or_default()
                .cmp(&time_of(&a["last_report_at"]).unwrap_or_default())
        })
        .then_with(|| {
            a["participant_id"]
                .as_str()
                .cmp(&b["participant_id"].as_str())
        })
        .then_with(|| a["incident_id"].as_str().cmp(&b["incident_id"].as_str()))
}

/// Everything the desk has read.
#[derive(Default)]
pub struct Store {
    max_incidents: usize,
    max_entries: usize,
    /// Timeline entries held by all stories together, and their bound.
    entries: usize,
    max_entries_total: usize,
    /// Fold only this participant's records (and every watermark): `regwatch report`.
    only: Option<String>,
    pub stories: HashMap<(String, String), Story>,
    pub participants: BTreeMap<String, ParticipantInfo>,
    pub watermarks: BTreeMap<(String, i32), Watermark>,
    /// Operators' silences, by id (`silences.rs`).
    pub silences: BTreeMap<String, super::silences::Silence>,
    /// Records folded, refused (no valid MAC) and unreadable; stories evicted.
    pub folded: u64,
    pub refused: u64,
    pub unreadable: u64,
    pub evicted: u64,
    touches: u64,
}

impl Store {
    pub fn new(max_incidents: usize, max_entries: usize, max_entries_total: usize) -> Store {
        Store {
            max_incidents: max_incidents.max(1),
            max_entries: max_entries.max(2),
            max_entries_total: max_entries_total.max(2),
            ..Store::default()
        }
    }

    /// A store that keeps one participant's stories only (and every watermark).
    pub fn only(mut self, participant: &str) -> Store {
        self.only = Some(participant.to_string());
        self
    }

    /// Folds one history record of `kind`. Returns false (and counts it) when it is not
    /// readable.
    pub fn fold(&mut self, kind: &str, value: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<Value>(value) else {
            self.unreadable += 1;
            return false;
        };
        if let Some(only) = &self.only {
            if kind != keys::WATERMARK && v["participant_id"].as_str() != Some(only) {
                return true;
            }
        }
        let ids = |v: &Value| {
            Some((
                v["participant_id"].as_str()?.to_string(),
                v["incident_id"].as_str().map(str::to_string),
            ))
        };
        let done = match kind {
            keys::REPORT => match (ids(&v), time_of(&v["at"]), v["event_id"].as_str()) {
                (Some((p, Some(i))), Some(at), Some(event_id)) => {
                    let entry = Entry {
                        at,
                        kind: "report",
                        id: event_id.to_string(),
                        record: v.clone(),
                    };
                    self.add(p, i, entry);
                    true
                }
                _ => false,
            },
            keys::ALERT => match (ids(&v), time_of(&v["at"]), v["alert_id"].as_str()) {
                (Some((p, incident)), Some(at), Some(alert_id)) => {
                    self.meet(&v);
                    match incident {
                        Some(i) => {
                            let kind = if v["trigger"] == "reminder" {
                                "reminder"
                            } else {
                                "alert"
                            };
                            let entry = Entry {
                                at,
                                kind,
                                id: alert_id.to_string(),
                                record: v.clone(),
                            };
                            self.add(p, i, entry);
                        }
                        None => self.telemetry(&p, &v, at),
                    }
                    true
                }
                _ => false,
            },
            keys::ACTION => match (ids(&v), time_of(&v["applied_at"]), v["action_id"].as_str()) {
                (Some((p, Some(i))), Some(at), Some(action_id)) => {
                    let entry = Entry {
                        at,
                        kind: "action",
                        id: action_id.to_string(),
                        record: v.clone(),
                    };
                    self.add(p, i, entry);
                    true
                }
                // A participant's own action (a silence, its early end).
                (Some((_, None)), Some(_), Some(_)) => {
                    super::silences::fold(&mut self.silences, &v)
                }
                _ => false,
            },
            keys::VIEW => match ids(&v) {
                Some((p, Some(i))) => {
                    self.meet(&v);
                    self.story(p, i).view = Some(v);
                    true
                }
                _ => false,
            },
            keys::WATERMARK => match serde_json::from_value::<Watermark>(v) {
                Ok(w) => {
                    let key = (w.topic.clone(), w.partition);
                    // A watermark never goes back in time (a stale owner's late write).
                    let keep = self.watermarks.get(&key).is_some_and(|old| old.at > w.at);
                    if !keep {
                        self.watermarks.insert(key, w);
                    }
                    true
                }
                Err(_) => false,
            },
            _ => false,
        };
        if done {
            self.folded += 1;
            self.bound();
        } else {
            self.unreadable += 1;
        }
        done
    }

    /// Adds an entry to the story of `participant`/`incident`, within the bounds.
    fn add(&mut self, participant: String, incident: String, entry: Entry) {
        let max = self.max_entries;
        self.entries += self.story(participant, incident).add(entry, max);
    }

    fn story(&mut self, participant: String, incident: String) -> &mut Story {
        self.touches += 1;
        let story = self.stories.entry((participant, incident)).or_default();
        story.touched = self.touches;
        story
    }

    /// Learns a participant's name and kind from a view or an alert.
    fn meet(&mut self, v: &Value) {
        let Some(id) = v["participant_id"].as_str() else {
            return;
        };
        let info = self.participants.entry(id.to_string()).or_default();
        info.participant_id = id.to_string();
        if let Some(name) = v["participant_name"].as_str() {
            info.participant_name = name.to_string();
        }
        if let Some(kind) = v["participant_kind"].as_str() {
            info.participant_kind = kind.to_string();
        }
    }

    fn telemetry(&mut self, participant: &str, v: &Value, at: Timestamp) {
        let info = self
            .participants
            .entry(participant.to_string())
            .or_default();
        let newer = info
            .telemetry
            .as_ref()
            .and_then(|t| time_of(&t["at"]))
            .is_none_or(|old| old <= at);
        if newer {
            let status = if v["status"] == "firing" {
                "silent"
            } else {
                "heard"
            };
            info.telemetry = Some(serde_json::json!({
                "status": status,
                "at": v["at"],
                "last_heard_at": v["last_heard_at"],
                "alert_id": v["alert_id"],
            }));
        }
    }

    /// Keeps at most `max_incidents` stories and `max_entries_total` timeline entries: the
    /// resolved stories touched longest ago go first, then the oldest (down to nine tenths
    /// of each bound, so a full desk does not sort per record).
    fn bound(&mut self) {
        if self.stories.len() <= self.max_incidents && self.entries <= self.max_entries_total {
            return;
        }
        let stories = self.max_incidents - self.max_incidents / 10;
        let entries = self.max_entries_total - self.max_entries_total / 10;
        let mut order: Vec<(bool, u64, (String, String))> = self
            .stories
            .iter()
            .map(|(k, s)| (s.is_open(), s.touched, k.clone()))
            .collect();
        order.sort();
        for (_, _, key) in order {
            if self.stories.len() <= stories && self.entries <= entries {
                break;
            }
            if let Some(story) = self.stories.remove(&key) {
                self.entries -= story.entries.len();
                self.evicted += 1;
            }
        }
    }

    /// Timeline entries held, all stories together.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The views that `filter` admits, most severe first.
    pub fn select(&self, filter: &Filter) -> Vec<&Value> {
        let mut found: Vec<&Value> = self
            .stories
            .values()
            .filter_map(|s| s.view.as_ref())
            .filter(|v| filter.admits(v))
            .collect();
        found.sort_by(|a, b| severity_order(a, b));
        found
    }

    pub fn get(&self, participant: &str, incident: &str) -> Option<&Story> {
        self.stories
            .get(&(participant.to_string(), incident.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(p: &str, i: &str, level: &str, status: &str) -> Vec<u8> {
        let resolved_at = (status == "resolved").then_some("2026-03-02T10:00:00.000Z");
        serde_json::to_vec(&json!({
            "resolved_at": resolved_at,
            "participant_id": p, "incident_id": i, "level": level, "status": status,
            "exemption": if level == "major" { "ineligible" } else { "eligible" },
            "investor_loss": {"level": level}, "market_order": {"level": "none"},
            "started_at": "2026-03-02T09:30:00.000Z",
            "last_report_at": "2026-03-02T09:40:00.000Z",
        }))
        .unwrap()
    }

    #[test]
    fn reports_and_alerts_fold_once_in_time_order() {
        let mut s = Store::new(10, 100, 1000);
        let report = |id: &str, at: &str| {
            serde_json::to_vec(
                &json!({"participant_id": "P", "incident_id": "I", "event_id": id, "at": at}),
            )
            .unwrap()
        };
        assert!(s.fold(keys::REPORT, &report("e2", "2026-03-02T09:40:00.000Z")));
        assert!(s.fold(keys::REPORT, &report("e1", "2026-03-02T09:30:00.000Z")));
        assert!(s.fold(keys::REPORT, &report("e1", "2026-03-02T09:30:00.000Z")));
        let alert = serde_json::to_vec(&json!({"participant_id": "P", "incident_id": "I", "alert_id": "a1", "at": "2026-03-02T09:35:00.000Z", "trigger": "opened"})).unwrap();
        assert!(s.fold(keys::ALERT, &alert));
        let story = s.get("P", "I").unwrap();
        let ids: Vec<&str> = story.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["e1", "a1", "e2"]);
        let up = serde_json::to_vec(&json!({"participant_id": "P", "incident_id": "I", "alert_id": "a2", "at": "2026-03-02T09:45:00.000Z", "trigger": "escalated",
            "investor_loss": {"level": "major", "reasons": [{"rule": "r", "threshold": 5.0}]}, "market_order": {"level": "general"}, "duration_minutes": 15.0})).unwrap();
        assert!(s.fold(keys::ALERT, &up));
        let crossings = s.get("P", "I").unwrap().crossings();
        assert_eq!(crossings.len(), 2, "{crossings:?}");
        assert_eq!(crossings[0]["axis"], "investor_loss");
        assert_eq!(crossings[0]["from"], "none");
        assert_eq!(crossings[0]["to"], "major");
        assert_eq!(crossings[0]["alert_id"], "a2");
        assert_eq!(crossings[0]["reasons"][0]["rule"], "r");
        assert_eq!(crossings[1]["axis"], "market_order");
        assert!(!s.fold(keys::REPORT, b"not json"));
        assert_eq!(s.unreadable, 1);
    }

    #[test]
    fn filters_and_severity_order() {
        let mut s = Store::new(10, 100, 1000);
        s.fold(keys::VIEW, &view("P", "low", "general", "open"));
        s.fold(keys::VIEW, &view("P", "high", "major", "open"));
        s.fold(keys::VIEW, &view("Q", "done", "larger", "resolved"));
        let all = s.select(&Filter::default());
        let ids: Vec<&str> = all
            .iter()
            .map(|v| v["incident_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["high", "done", "low"]);
        let open = Filter {
            status: Some("open".into()),
            ..Filter::default()
        };
        assert_eq!(s.select(&open).len(), 2);
        let severe = Filter {
            min_level: Level::Larger,
            axis: Some(Axis::InvestorLoss),
            ..Filter::default()
        };
        assert_eq!(s.select(&severe).len(), 2);
        let market = Filter {
            min_level: Level::General,
            axis: Some(Axis::MarketOrder),
            ..Filter::default()
        };
        assert!(s.select(&market).is_empty());
        let ineligible = Filter {
            exemption: Some("ineligible".into()),
            ..Filter::default()
        };
        assert_eq!(s.select(&ineligible).len(), 1);
        let later = Filter {
            from: Timestamp::parse_rfc3339("2026-03-03T00:00:00Z"),
            ..Filter::default()
        };
        assert_eq!(s.select(&later).len(), 2, "the resolved one ended before");
    }

    #[test]
    fn the_entries_of_all_stories_together_are_bounded() {
        let mut s = Store::new(100, 100, 20);
        for i in 0..30 {
            let r = json!({"participant_id": "P", "incident_id": format!("I{}", i % 6), "event_id": format!("e{i}"), "at": "2026-03-02T09:30:00.000Z"});
            s.fold(keys::REPORT, &serde_json::to_vec(&r).unwrap());
            assert!(s.entries() <= 20, "{}", s.entries());
        }
        let held: usize = s.stories.values().map(|st| st.entries.len()).sum();
        assert_eq!(held, s.entries());
        assert!(s.evicted > 0);
    }

    #[test]
    fn a_full_desk_evicts_resolved_stories_first_and_timelines_keep_their_start() {
        let mut s = Store::new(10, 3, 1000);
        for i in 0..10 {
            s.fold(
                keys::VIEW,
                &view("P", &format!("r{i}"), "general", "resolved"),
            );
        }
        s.fold(keys::VIEW, &view("P", "open", "general", "open"));
        assert!(s.stories.len() <= 10);
        assert!(s.get("P", "open").is_some());
        assert!(s.get("P", "r0").is_none(), "the oldest resolved went first");
        for (n, at) in ["09:30", "09:31", "09:32", "09:33"].iter().enumerate() {
            let r = json!({"participant_id": "P", "incident_id": "open", "event_id": format!("e{n}"), "at": format!("2026-03-02T{at}:00.000Z")});
            s.fold(keys::REPORT, &serde_json::to_vec(&r).unwrap());
        }
        let story = s.get("P", "open").unwrap();
        let ids: Vec<&str> = story.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["e0", "e2", "e3"]);
        assert_eq!(story.dropped, 1);
    }
}
