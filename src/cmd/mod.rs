//! Subcommands of the binary that live outside `main.rs`.

pub mod api;
