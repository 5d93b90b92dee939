//! `regwatch replay`: the daemon's engine over a JSON-lines file, clock driven by event time.
//!
//! Each alert is written to `out` as one JSON line, in order. A rejected line is reported on
//! `err` with its line number and reason and the replay goes on. Blank lines are skipped.
//! Lines are read as bytes, so invalid UTF-8 is a rejection like any other.
//!
//! A line holding a person's action (`regwatch.action.v1`, see `crate::actions`) is applied
//! at its own time, as the daemon applies it from the events partition.
//!
//! Replay writes the contract's alerts only: the engine's reminders are turned off first,
//! whatever its settings say (CONTRACT.md section 3: nothing re-emits an alert).

use std::io::{self, BufRead, Write};

use crate::alert::Alert;
use crate::score::{Engine, Outcome};
use crate::time::Timestamp;

/// What a replay did, for the closing line on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub lines: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub alerts: u64,
}

/// Runs `input` through `engine`, with its reminders turned off. With `until`, the clock is finally advanced to that
/// instant, so deadlines after the last event (an outage still open) fire too.
pub fn replay(
    engine: &mut Engine,
    mut input: impl BufRead,
    out: &mut impl Write,
    err: &mut impl Write,
    until: Option<Timestamp>,
) -> io::Result<ReplaySummary> {
    engine.disable_reminders();
    let mut summary = ReplaySummary::default();
    let mut line = Vec::with_capacity(4096);
    let mut alerts: Vec<Alert> = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        summary.lines += 1;
        let bytes = trim_line(&line);
        // Blank: JSON white space only (a form feed is not, and is rejected).
        if bytes
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            continue;
        }
        // A person's action (`regwatch.action.v1`, as the daemon reads it from the events
        // partition): applied at its own time.
        if let Some(action) = as_action(bytes) {
            engine.advance_to(action.at, &mut alerts);
            match engine.act(&action, &mut alerts) {
                Ok(_) => summary.accepted += 1,
                Err(why) => {
                    summary.rejected += 1;
                    writeln!(err, "line {}: action refused: {why}", summary.lines)?;
                }
            }
            summary.alerts += write_alerts(&mut alerts, out)?;
            continue;
        }
        match engine.process(bytes, &mut alerts) {
            Ok(Outcome::Duplicate) => summary.duplicates += 1,
            Ok(_) => summary.accepted += 1,
            Err(reject) => {
                summary.rejected += 1;
                writeln!(
                    err,
                    "line {}: rejected ({}): {reject}",
                    summary.lines,
                    reject.code()
                )?;
            }
        }
        summary.alerts += write_alerts(&mut alerts, out)?;
    }
    if let Some(t) = until {
        engine.advance_to(t, &mut alerts);
        summary.alerts += write_alerts(&mut alerts, out)?;
    }
    out.flush()?;
    Ok(summary)
}

/// The line as an action record, if it is one (and well formed).
fn as_action(bytes: &[u8]) -> Option<crate::actions::Action> {
    let marker = crate::actions::SCHEMA.as_bytes();
    bytes
        .windows(marker.len())
        .any(|w| w == marker)
        .then(|| crate::actions::Action::parse(bytes).ok())
        .flatten()
}

fn write_alerts(alerts: &mut Vec<Alert>, out: &mut impl Write) -> io::Result<u64> {
    let n = alerts.len() as u64;
    for a in alerts.drain(..) {
        serde_json::to_writer(&mut *out, &a)?;
        out.write_all(b"\n")?;
    }
    Ok(n)
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &line[..end]
}
