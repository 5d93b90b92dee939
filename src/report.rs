//! `regwatch report`: a participant's incidents over a period, for the exemption decision,
//! straight from the history topic (no daemon needed): the topic is read to its end into a
//! desk, and the export (`desk::export`) is written as JSON or CSV. `complete` says whether
//! every partition of the subscribed events topics had a live owner that wrote its story
//! within `history.stale_after`, and `as_of` since when.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::Config;
use crate::desk::{export, reader, Desk};
use crate::time::Timestamp;

/// What to export.
pub struct Request {
    pub participant: String,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub csv: bool,
}

/// Reads the history and writes the export to `out`.
pub fn run(cfg: &Config, req: &Request, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg.history.enabled,
        "[history] enabled = false: there is no history topic to report from"
    );
    let desk = Desk::for_participant(cfg.history.clone(), &req.participant);
    reader::load(
        &cfg.kafka,
        &cfg.history.topic,
        &desk,
        Duration::from_secs(60),
    )?;
    let total = source_partitions(cfg).unwrap_or(0);
    let coverage = desk.coverage(total);
    let rows =
        desk.read(|store| export::rows(store, &req.participant, req.from, req.to, &cfg.rules));
    if req.csv {
        out.write_all(export::csv(&rows).as_bytes())?;
    } else {
        let doc = export::document(&req.participant, req.from, req.to, &coverage, rows);
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        out.write_all(b"\n")?;
    }
    if !coverage.complete {
        tracing::warn!(
            covered = coverage.partitions_covered,
            total,
            "not every partition is covered by a live owner: the report may miss what was graded since {}",
            coverage.as_of
        );
    }
    Ok(())
}

fn source_partitions(cfg: &Config) -> anyhow::Result<i64> {
    let k = &cfg.kafka;
    let c: BaseConsumer = crate::ingest::client::reader(k).create()?;
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .context("broker metadata")?;
    let pattern = matches!(k.topics, crate::config::TopicSelection::Pattern(_));
    let matcher = k.topics.matcher().ok();
    Ok(crate::ingest::client::subscribed_partitions(
        &md,
        matcher.as_ref(),
        pattern,
    ))
}
