#![allow(dead_code)]
//! Test harness shared by the integration tests.

pub mod accounts;
pub mod http;
pub mod pg;
pub mod service;
pub mod sse;
