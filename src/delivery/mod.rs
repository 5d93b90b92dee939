//! Alert delivery to on-call staff: signed, deduplicable HTTP webhooks that are never lost.
//!
//! ```text
//! alerts topic ─┬─ group <outbox>.oncall ── lanes (one per partition) ── POST ── 2xx → store offset
//! reminders ────┘                                   │ 5xx, timeout, refused: back off, retry
//!               └─ group <outbox>.chat  ── ...      │ 429: Retry-After
//!                                                   └ other 4xx: alert dead-letter topic → store offset
//! ```
//!
//! - [`outbox`]: one consumer group per receiver, per-partition lanes, offsets stored only
//!   when an alert is done for that receiver; routing.
//! - [`lanes`]: the receiver's group membership: revoked lanes stop at once, a new
//!   receiver starts with the alerts raised since it was added (or catches up).
//! - [`policy`]: what a status means, back-off with jitter, `Retry-After`, circuit breaker.
//! - [`sign`]: HMAC-SHA256 signatures with key ids, and the reference verifier.
//! - [`payload`]: the native body and the Alertmanager webhook-v4 body.
//! - [`skips`]: operators' skips of a poison alert, read from the audit topic.

pub mod lanes;
pub mod outbox;
pub mod payload;
pub mod policy;
pub mod sign;
pub mod skips;

pub use outbox::{is_routed, route_matches, Outbox};
pub use policy::Cause;
