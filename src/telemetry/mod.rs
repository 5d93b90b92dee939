//! What the daemon tells operators: Prometheus metrics, named observable events (each logs
//! and counts together), and the HTTP endpoints that serve them.

mod act;
mod api;
pub mod coverage;
mod http;
pub mod metrics;
pub mod web;

pub use api::DeskApi;
pub use http::{serve, Health};
pub use metrics::{Metrics, OUTCOMES};
