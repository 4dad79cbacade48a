#![allow(dead_code)]
//! Test harness shared by the integration tests.

pub mod http;
pub mod nginx;
pub mod pg;
pub mod pgbouncer;
pub mod process;
pub mod service;
pub mod sse;
pub mod standby;
