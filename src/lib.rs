//! regwatch grades information-security incidents and trading anomalies reported by the
//! participants of a capital-market fintech sandbox on the CSRC incident scale, on two axes
//! (investor loss, market order), and tells supervisors, per incident and in real time,
//! whether the incident is still eligible for the sandbox's exemption from punishment.
//!
//! # Bird's-eye view
//!
//! ```text
//! bytes --decode--> Event --score::Engine--> Alert --> stdout (replay) / alert sinks (daemon)
//!                              ^   |
//!                 wall or event time (deadlines: escalation, telemetry gaps, eviction)
//! ```
//!
//! # Code map (in data-flow order)
//!
//! - [`config`]: the TOML file (+ `REGWATCH__` environment overrides) parsed raw, then
//!   validated into [`config::Config`], including the participant [`registry`].
//! - [`decode`]: the only module that knows the wire format; bytes -> [`decode::Event`] or a
//!   [`decode::Reject`] with a reason from a closed set.
//! - [`score`]: the pure engine: the grid as data ([`score::Rules`]), incident state, clock,
//!   deadlines, transitions.
//! - [`alert`]: the alert shape of CONTRACT.md section 3 and its deterministic ids.
//! - [`replay`]: `regwatch replay`, the engine over a JSON-lines file.
//! - [`time`]: the engine's notion of time (RFC 3339 in and out).
//!
//! # Invariants
//!
//! - The engine never panics on input: every bad event is a `Reject` value.
//! - Levels of an open incident only rise; alerts are emitted only on transitions, and the
//!   same transition always has the same `alert_id`.
//! - Decoding and scoring an event for a known incident allocate nothing (tests/alloc.rs).

pub mod alert;
pub mod app;
pub mod config;
pub mod decode;
pub mod demo;
pub mod ingest;
pub mod registry;
pub mod replay;
pub mod score;
pub mod simulate;
pub mod telemetry;
pub mod time;
