//! The integration tests, one test binary (one link, one shared Postgres cluster) with a
//! module per subject. Run one subject with `cargo test --test api notes::`.
//!
//! `tests/emfile.rs` stays a binary of its own: it lowers the process's `RLIMIT_NOFILE`.

mod common;

mod auth;
mod binary;
mod browser;
mod bulkheads;
mod edge;
mod embedded;
mod event_limits;
mod events;
mod failover;
mod harness_smoke;
mod logs;
mod migrations;
mod notes;
mod notes_props;
mod openapi;
mod ownership;
mod percore;
mod policy_plans;
mod prometheus;
mod resilience;
mod resource_kit;
mod scale;
mod scopes;
mod seed_apps;
mod server_limits;
mod sessions_cache;

mod shared;
mod soak;
mod startup;
mod tls;
