#![allow(dead_code)]
//! Test harness shared by the integration tests.

pub mod accounts;
pub mod http;
pub mod nginx;
pub mod pg;
pub mod pgbouncer;
pub mod process;
pub mod service;
pub mod sse;
pub mod standby;
pub mod tls;

/// Says that a test skipped, and why, where a person running `cargo test` sees it: straight
/// to the process's stderr, which libtest does not capture (it captures `eprintln!`).
pub fn skip_loudly(test: &str, why: &str) {
    use std::io::Write as _;
    let banner = format!(
        "\n==================== SKIPPED: {test} ====================\n{why}\n\
         ===========================================================\n"
    );
    let _ = std::io::stderr().write_all(banner.as_bytes());
}
