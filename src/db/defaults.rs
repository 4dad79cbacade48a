//! The database settings' defaults, written once.
//!
//! [`DbConfig::new`](super::DbConfig::new), [`SharedConfig::default`](super::SharedConfig),
//! [`ReadConfig::new`](super::replica::ReadConfig::new) and the `DB_*`/`READ_*` flags of
//! [`Config`](crate::config::Config) all read these, so a program that builds its pool by
//! hand gets what `pgbridge --help` shows. Units are those of the flags.
//!
//! ```
//! use pgbridge::db::{DbConfig, defaults};
//!
//! let config = DbConfig::new("postgres://app@localhost/app");
//! assert_eq!(config.pool_size, defaults::POOL_SIZE);
//! assert_eq!(config.pool_wait.as_millis(), u128::from(defaults::POOL_TIMEOUT_MS));
//! ```

/// Most pooled connections (`DB_POOL_SIZE`).
pub const POOL_SIZE: usize = 16;

/// Milliseconds a request waits for a pooled connection (`DB_POOL_TIMEOUT_MS`).
pub const POOL_TIMEOUT_MS: u64 = 2_000;

/// Milliseconds opening one connection may take (`DB_CONNECT_TIMEOUT_MS`).
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;

/// `statement_timeout`, in milliseconds (`DB_STATEMENT_TIMEOUT_MS`).
pub const STATEMENT_TIMEOUT_MS: u64 = 15_000;

/// Shared, pipelined connections; `0`: one per CPU core (`DB_SHARED_CONNECTIONS`).
pub const SHARED_CONNECTIONS: usize = 0;

/// Most statements in flight on one shared connection (`DB_SHARED_MAX_IN_FLIGHT`).
pub const SHARED_MAX_IN_FLIGHT: usize = 256;

/// Most statements waiting for room on the shared connections (`DB_SHARED_MAX_QUEUED`).
pub const SHARED_MAX_QUEUED: usize = 4096;

/// Most pooled connections per standby (`DB_READ_POOL_SIZE`).
pub const READ_POOL_SIZE: usize = 8;

/// Milliseconds a read with a WAL position waits for a standby (`READ_LSN_WAIT_MS`).
pub const READ_LSN_WAIT_MS: u64 = 50;

/// Milliseconds of replay lag past which a standby is skipped (`READ_MAX_LAG_MS`).
pub const READ_MAX_LAG_MS: u64 = 5_000;
