//! The integration test binary: the engine and the binary, end to end, with real files.

mod acls;
mod api;
mod backlog;
mod binding;
mod broker;
mod cli;
mod cluster;
mod compaction;
mod dashboards;
mod desk;
mod faults;
mod fencing;
mod grid;
mod kafka;
mod lifecycle;
mod props;
mod rejects;
mod reminders;
mod rules_diff;
mod security;
mod state;
mod state_auth;
mod support;
mod web;
mod webhook;
