//! Per participant: what the desk knows of its incidents and its telemetry, for
//! `/participants` and the board.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::Store;
use crate::registry::Registry;
use crate::score::Level;

/// One participant's line.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    pub participant_id: String,
    pub participant_name: String,
    pub participant_kind: String,
    /// In this deployment's registry (a participant only the history knows was removed).
    pub registered: bool,
    pub open_incidents: usize,
    pub resolved_incidents: usize,
    /// Incidents, open or resolved, that lost the exemption (`exemption: ineligible`).
    pub ineligible_incidents: usize,
    /// The highest level among its open incidents.
    pub most_severe_open: Level,
    /// Its latest incident (by first report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_incident: Option<Value>,
    /// `silent` or `heard` with the latest telemetry-gap alert; `null`: never silent.
    pub telemetry: Value,
}

/// Every participant of the registry and of the history, by id.
pub fn summaries(store: &Store, registry: &Registry) -> BTreeMap<String, Summary> {
    let mut out: BTreeMap<String, Summary> = BTreeMap::new();
    let blank = |id: &str, name: &str, kind: &str, registered: bool| Summary {
        participant_id: id.to_string(),
        participant_name: name.to_string(),
        participant_kind: kind.to_string(),
        registered,
        open_incidents: 0,
        resolved_incidents: 0,
        ineligible_incidents: 0,
        most_severe_open: Level::None,
        last_incident: None,
        telemetry: Value::Null,
    };
    for (_, p) in registry.iter() {
        out.insert(
            p.id.to_string(),
            blank(&p.id, &p.name, p.kind.as_str(), true),
        );
    }
    for (id, info) in &store.participants {
        let s = out
            .entry(id.clone())
            .or_insert_with(|| blank(id, &info.participant_name, &info.participant_kind, false));
        s.telemetry = info.telemetry.clone().unwrap_or(Value::Null);
    }
    let mut latest: BTreeMap<&str, &Value> = BTreeMap::new();
    for ((participant, _), story) in &store.stories {
        let Some(view) = &story.view else { continue };
        let s = out
            .entry(participant.clone())
            .or_insert_with(|| blank(participant, "", "", false));
        if s.participant_name.is_empty() {
            s.participant_name = view["participant_name"].as_str().unwrap_or("").to_string();
            s.participant_kind = view["participant_kind"].as_str().unwrap_or("").to_string();
        }
        if story.is_open() {
            s.open_incidents += 1;
            let level = view["level"]
                .as_str()
                .and_then(Level::parse)
                .unwrap_or(Level::None);
            s.most_severe_open = s.most_severe_open.max(level);
        } else {
            s.resolved_incidents += 1;
        }
        if view["exemption"] == "ineligible" {
            s.ineligible_incidents += 1;
        }
        let newer = latest.get(participant.as_str()).is_none_or(|old| {
            old["first_reported_at"].as_str() < view["first_reported_at"].as_str()
        });
        if newer {
            latest.insert(participant, view);
        }
    }
    for (participant, view) in latest {
        if let Some(s) = out.get_mut(participant) {
            s.last_incident = Some(json!({
                "incident_id": view["incident_id"],
                "status": view["status"],
                "level": view["level"],
                "exemption": view["exemption"],
                "started_at": view["started_at"],
                "first_reported_at": view["first_reported_at"],
            }));
        }
    }
    out
}
