//! regwatch grades information-security incidents and trading anomalies reported by the
//! participants of a capital-market fintech sandbox on the CSRC incident scale, on two axes
//! (investor loss, market order), and tells supervisors, per incident and in real time,
//! whether the incident is still eligible for the sandbox's exemption from punishment.
//!
//! # Bird's-eye view
//!
//! ```text
//! Kafka --ingest (one worker per partition)--> bytes --decode--> Event --score::Engine--> Alert
//!                                                                  ^            |
//!                 wall or event time (deadlines: escalation, gaps, eviction)    v
//!                 alerts topic / dead letters / state topic (ingest), stdout (replay), metrics
//! ```
//!
//! # Code map (in data-flow order)
//!
//! - [`config`]: the TOML file (+ `REGWATCH__` environment overrides) parsed raw, then
//!   validated into [`config::Config`], including the participant [`registry`].
//! - [`decode`]: the only module that knows the wire format; bytes -> [`decode::Event`] or a
//!   [`decode::Reject`] with a reason from a closed set.
//! - [`calendar`]: market calendars as data: an outage's trading minutes and their deadlines.
//! - [`score`]: the pure engine: the grid as data ([`score::Rules`]), incident state, clock,
//!   deadlines, transitions.
//! - [`alert`]: the alert shape of CONTRACT.md section 3 and its deterministic ids.
//! - [`ingest`]: the only module that knows rdkafka: consumer group, per-partition workers,
//!   at-least-once offsets, outputs, state topic.
//! - [`delivery`]: the webhook outbox: one consumer group per receiver on the alerts topic,
//!   signed requests, retries, circuit breaker, alert dead letters.
//! - [`app`]: the daemon's lifecycle (build, run until the shutdown signal, drain).
//! - [`telemetry`]: Prometheus metrics and the HTTP endpoints.
//! - [`replay`], [`demo`], [`simulate`]: the engine over a file; the daemon on an embedded
//!   Kafka; synthetic traffic.
//! - [`acls`]: the Kafka ACL matrix a configuration needs (`regwatch acls`).
//! - [`time`]: the engine's notion of time (RFC 3339 in and out) and the one wall-clock read.
//!
//! # Invariants
//!
//! - The engine never panics on input: every bad event is a `Reject` value.
//! - Levels of an open incident only rise; alerts are emitted only on transitions, and the
//!   same transition always has the same `alert_id`. Reminders of unresolved serious
//!   incidents are no alerts: their own topic, their own ids, never in replay.
//! - Decoding and scoring an event for a known incident allocate nothing (tests/alloc.rs).
//! - One partition, one owner: no lock per event; an offset is committed only after the
//!   state snapshot covering it and every alert before it are acknowledged.

pub mod acls;
pub mod actions;
pub mod alert;
pub mod app;
pub mod audit;
pub mod calendar;
pub mod config;
pub mod decode;
pub mod delivery;
pub mod demo;
pub mod desk;
pub mod ingest;
pub mod redrive;
pub mod registry;
pub mod replay;
pub mod report;
pub mod rulediff;
pub mod score;
pub mod simulate;
pub mod telemetry;
pub mod time;
