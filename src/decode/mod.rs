//! The only module that knows the wire format: message bytes -> [`Event`] or [`Reject`].
//!
//! Invariant: decoding never panics and never allocates per field on the common path (strings
//! borrow from the input); every failure is one [`Reject`] from a closed set.

mod event;
mod json;
mod parse;
mod reject;

pub use event::{
    Category, Event, EventKind, Figure, Figures, IncidentReport, RecordType, Scope, Status, System,
    Word, FIGURE_COUNT,
};
pub use parse::{check_key, decode, MAX_EVENT_BYTES, SCHEMA_V1};
pub use reject::{Field, Reject};
