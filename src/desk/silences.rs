//! The silences the desk knows of (see `crate::actions`): folded from the `silence` and
//! `unsilence` actions the owning partitions wrote to the history topic, applied. A
//! silence is broadcast to every partition of its participant, so several records tell of
//! one: they are one entry here, by `silence_id`; an early end keeps the earliest end any
//! partition applied. Expired silences are kept (the latest [`MAX_KEPT`]), like
//! Alertmanager's.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::store::time_of;
use crate::time::Timestamp;

/// Silences the desk keeps; beyond it the one that ended first goes.
pub const MAX_KEPT: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Silence {
    pub silence_id: String,
    pub participant_id: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub author: String,
    pub reason: String,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_reason: Option<String>,
}

impl Silence {
    /// `pending`, `active` or `expired` at `now`.
    pub fn state(&self, now: Timestamp) -> &'static str {
        if now < self.starts_at {
            "pending"
        } else if now < self.ends_at {
            "active"
        } else {
            "expired"
        }
    }

    /// As served: the silence with its state at `now`.
    pub fn served(&self, now: Timestamp) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["state"] = Value::from(self.state(now));
        v
    }
}

/// Folds one applied participant-level action record (the history's `Applied`); false when
/// it is not a silence's.
pub fn fold(silences: &mut BTreeMap<String, Silence>, v: &Value) -> bool {
    if v["outcome"] != "applied" {
        return v["action"] == "silence" || v["action"] == "unsilence";
    }
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    match v["action"].as_str() {
        Some("silence") => {
            let (Some(starts_at), Some(ends_at), Some(created_at)) = (
                time_of(&v["starts_at"]),
                time_of(&v["ends_at"]),
                time_of(&v["at"]),
            ) else {
                return false;
            };
            silences
                .entry(text("action_id"))
                .or_insert_with(|| Silence {
                    silence_id: text("action_id"),
                    participant_id: text("participant_id"),
                    starts_at,
                    ends_at,
                    author: text("actor"),
                    reason: text("reason"),
                    created_at,
                    expired_by: None,
                    expire_reason: None,
                });
        }
        Some("unsilence") => {
            let Some(at) = time_of(&v["applied_at"]) else {
                return false;
            };
            if let Some(s) = silences.get_mut(v["silence_id"].as_str().unwrap_or_default()) {
                let end = at.max(s.starts_at);
                if end < s.ends_at {
                    s.ends_at = end;
                    s.expired_by = Some(text("actor"));
                    s.expire_reason = Some(text("reason"));
                }
            }
        }
        _ => return false,
    }
    if silences.len() > MAX_KEPT {
        if let Some(first) = silences
            .values()
            .min_by_key(|s| s.ends_at)
            .map(|s| s.silence_id.clone())
        {
            silences.remove(&first);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_silence_from_many_partitions_and_its_early_end() {
        let mut all = BTreeMap::new();
        let silence = json!({"action": "silence", "action_id": "s1", "participant_id": "P",
            "actor": "alice", "reason": "maintenance", "at": "2026-03-02T01:00:00Z",
            "starts_at": "2026-03-02T01:00:00Z", "ends_at": "2026-03-02T05:00:00Z",
            "outcome": "applied", "applied_at": "2026-03-02T01:00:01Z"});
        assert!(fold(&mut all, &silence));
        assert!(fold(&mut all, &silence));
        assert_eq!(all.len(), 1);
        let s = &all["s1"];
        let at = |t: &str| Timestamp::parse_rfc3339(t).unwrap();
        assert_eq!(s.state(at("2026-03-02T00:59:00Z")), "pending");
        assert_eq!(s.state(at("2026-03-02T02:00:00Z")), "active");
        for applied in ["2026-03-02T03:00:02Z", "2026-03-02T03:00:00Z"] {
            let end = json!({"action": "unsilence", "action_id": "u1", "silence_id": "s1",
                "participant_id": "P", "actor": "bob", "reason": "done early",
                "at": "2026-03-02T03:00:00Z", "outcome": "applied", "applied_at": applied});
            assert!(fold(&mut all, &end));
        }
        let s = &all["s1"];
        assert_eq!(s.ends_at, at("2026-03-02T03:00:00Z"));
        assert_eq!(s.expired_by.as_deref(), Some("bob"));
        assert_eq!(s.served(at("2026-03-02T04:00:00Z"))["state"], "expired");
        // A refused one changes nothing.
        let mut refused = silence.clone();
        refused["outcome"] = json!("refused");
        refused["action_id"] = json!("s2");
        assert!(fold(&mut all, &refused));
        assert_eq!(all.len(), 1);
    }
}
