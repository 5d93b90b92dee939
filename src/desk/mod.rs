//! The supervisors' desk: one view of the whole fleet from any instance.
//!
//! Every partition worker writes its incidents' story to the history topic (`[history]`,
//! `ingest/worker/history.rs`): each report that changed an incident, each alert and
//! reminder, the incident's view after every flush that changed it, and the partition's
//! watermark. Every instance reads that whole topic (`reader.rs`, no consumer group) into a
//! [`Store`], so any replica answers for every partition: `/incidents` (filters, pages),
//! `/incidents/{participant}/{incident}` (the timeline), `/participants`, `/silences`
//! (`silences.rs`), the exports
//! (`export.rs`) and the incident board (`page.rs`). A query reads the store; it never asks
//! a partition worker anything.
//!
//! Completeness is the watermarks': a partition is covered when its owner wrote a watermark
//! within `history.stale_after` and has not released it; the answer is `complete` only when
//! every partition of the subscribed events topics is covered and the reader has read the
//! history topic to its end as of moments ago, and it is `as_of` the oldest covered
//! watermark. During a rebalance the released partition is uncovered until its new owner has
//! restored and written; a dead owner's partition goes stale.

pub mod export;
pub mod keys;
pub mod page;
pub mod participants;
pub mod reader;
pub mod silences;
pub mod store;
pub mod table;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::RwLock;

pub use store::{Entry, Filter, ParticipantInfo, Store, Story, Watermark};

use crate::config::HistorySettings;
use crate::time::{wall_now, Timestamp};

/// The desk of one instance: the store the reader fills, and how far it has read.
pub struct Desk {
    pub settings: HistorySettings,
    store: RwLock<Store>,
    /// Wall time (ms) such that everything written to the history topic before it is
    /// folded; 0 until the reader first reached the end.
    caught_up_ms: AtomicI64,
    /// Wall time (ms) of the latest question waiting for the reader to reach the topic's
    /// end: until it has, the reader looks at its pace for questions.
    wanted_ms: AtomicI64,
    /// The history could not be had at start-up: the desk answers nothing.
    off: std::sync::atomic::AtomicBool,
}

/// A partition as the desk sees it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PartitionCover {
    pub topic: String,
    pub partition: i32,
    pub covered: bool,
    pub status: String,
    pub instance: String,
    /// When its owner last wrote its watermark, and the partition's engine clock then.
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<Timestamp>,
}

/// How much of the deployment an answer covers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Coverage {
    /// Every partition of the subscribed events topics is covered, and the history topic
    /// was read to its end moments ago.
    pub complete: bool,
    /// The oldest covered partition's watermark: everything its owner graded by then is in
    /// the answer (when nothing is covered: when the answer was assembled).
    pub as_of: Timestamp,
    pub partitions_total: i64,
    pub partitions_covered: usize,
    /// The reader has read the history topic to its end within `history.stale_after`.
    pub history_read: bool,
    pub partitions: Vec<PartitionCover>,
}

/// Brings an open incident's durations to the engine clock of its partition's latest
/// watermark (its view was written when it last changed; time has passed since): the
/// service duration, and its trading minutes in the calendar of the rules in force. Levels
/// are not touched: an escalation due to time is a change its owner writes.
pub fn project(view: &mut serde_json::Value, store: &Store, rules: &crate::score::Rules) {
    if view["status"] != "open" {
        return;
    }
    let time = |v: &serde_json::Value| v.as_str().and_then(Timestamp::parse_rfc3339);
    let (Some(topic), Some(partition)) = (view["topic"].as_str(), view["partition"].as_i64())
    else {
        return;
    };
    let Some(clock) = store
        .watermarks
        .get(&(topic.to_string(), partition as i32))
        .and_then(|w| w.clock)
    else {
        return;
    };
    let (Some(started), Some(as_of)) = (time(&view["started_at"]), time(&view["as_of"])) else {
        return;
    };
    if clock <= as_of {
        return;
    }
    let round = |m: f64| (m * 1000.0).round() / 1000.0;
    let minutes = round(clock.minutes_since(started));
    if view["duration_minutes"]
        .as_f64()
        .is_none_or(|d| d < minutes)
    {
        view["duration_minutes"] = minutes.into();
    }
    if let Some(name) = view["calendar"].as_str() {
        let calendar = rules.calendar(name);
        if calendar.name() == name {
            view["trading_minutes"] = round(calendar.trading_minutes(started, clock)).into();
        }
    }
    view["as_of"] = serde_json::to_value(clock).unwrap_or_default();
}

impl Desk {
    pub fn new(settings: HistorySettings) -> Desk {
        let store = Store::new(
            settings.max_incidents,
            settings.max_entries,
            settings.max_entries_total,
        );
        Desk {
            settings,
            store: RwLock::new(store),
            caught_up_ms: AtomicI64::new(0),
            wanted_ms: AtomicI64::new(0),
            off: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A desk of one participant's stories only (`regwatch report`: bounded by that
    /// participant's history, not the fleet's).
    pub fn for_participant(settings: HistorySettings, participant: &str) -> Desk {
        let desk = Desk::new(settings);
        desk.write(|s| {
            let store = std::mem::take(s);
            *s = store.only(participant);
        });
        desk
    }

    /// The daemon runs without the history (its topic could not be had).
    pub fn turn_off(&self) {
        self.off.store(true, Ordering::Relaxed);
    }

    pub fn is_on(&self) -> bool {
        !self.off.load(Ordering::Relaxed)
    }

    /// Reads the store.
    pub fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&self.store.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.store.write().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn caught_up(&self, as_of: Timestamp) {
        self.caught_up_ms
            .fetch_max(as_of.millis(), Ordering::Relaxed);
    }

    /// Asks the reader to take the topic's end now rather than at its idle pace.
    pub fn want_fresh(&self) {
        self.wanted_ms
            .fetch_max(wall_now().millis(), Ordering::Relaxed);
    }

    /// A question waits for what was written before it.
    pub(crate) fn is_wanted(&self) -> bool {
        self.caught_up_ms.load(Ordering::Relaxed) < self.wanted_ms.load(Ordering::Relaxed)
    }

    /// When the history was last known read to its end (`None`: not yet).
    pub fn read_to(&self) -> Option<Timestamp> {
        match self.caught_up_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Timestamp(ms)),
        }
    }

    /// How much of the deployment (`partitions_total` partitions of the subscribed events
    /// topics) the desk covers now.
    pub fn coverage(&self, partitions_total: i64) -> Coverage {
        let now = wall_now();
        let stale = self.settings.stale_after_ms;
        let partitions: Vec<PartitionCover> = self.read(|s| {
            s.watermarks
                .values()
                .map(|w| PartitionCover {
                    topic: w.topic.clone(),
                    partition: w.partition,
                    covered: w.status == "owned" && now.millis() - w.at.millis() <= stale,
                    status: w.status.clone(),
                    instance: w.instance.clone(),
                    at: w.at,
                    clock: w.clock,
                })
                .collect()
        });
        let covered: Vec<&PartitionCover> = partitions.iter().filter(|p| p.covered).collect();
        let history_read = self
            .read_to()
            .is_some_and(|t| now.millis() - t.millis() <= stale);
        let as_of = covered.iter().map(|p| p.at).min().unwrap_or(now);
        Coverage {
            complete: history_read
                && partitions_total > 0
                && covered.len() as i64 >= partitions_total,
            as_of,
            partitions_total,
            partitions_covered: covered.len(),
            history_read,
            partitions,
        }
    }
}
