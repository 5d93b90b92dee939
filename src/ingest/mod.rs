//! The only module that knows rdkafka: the consumer group, per-partition workers that own
//! the engine state of their partition, at-least-once offsets, the outputs (alerts, dead
//! letters, state) and restoring state when a partition is taken over.

pub mod client;
pub mod clock;
pub mod closing;
pub mod group;
pub mod homes;
pub mod inspect;
pub mod ledger;
pub mod load;
pub mod mock;
pub mod output;
pub mod state;
pub mod tail;
pub mod telemetry;
pub mod trust;
pub mod txn;
pub mod worker;
