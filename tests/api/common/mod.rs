#![allow(dead_code)]
//! Test harness shared by the integration tests.
//!
//! A test that needs a program beyond Rust and PostgreSQL (nginx, PgBouncer, chromium, sqlx-cli,
//! patroni, …) is marked with `#[cfg_attr(skip_<program>, ignore = "SKIPPED: needs …: <install>")]`
//! and gets the program's path from [`programs::path`]: see [`programs`] for the mechanism.

pub mod accounts;
pub mod http;
pub mod nginx;
pub mod pg;
pub mod pgbouncer;
pub mod process;
pub mod programs;
pub mod resource;
pub mod service;
pub mod sse;
pub mod standby;
pub mod tls;
pub mod traffic;
