//! No secret in any log line, whatever `RUST_LOG` says.
//!
//! tokio-postgres logs every statement's parameters at `debug` (target
//! `tokio_postgres::query`: new passwords' Argon2id hashes, session tokens' SHA-256, note
//! contents) and every simple query's text (`tokio_postgres::simple_query`). The binary's
//! subscriber always carries [`never_secrets`], which stops those targets below `info`
//! (where they log nothing) even under `RUST_LOG=trace` or a directive naming them.
//! The service's own lines never carry a password, a token, a hash or a note's content;
//! configuration errors mask the database password ([`crate::db::connect::redact`]).

use tracing_subscriber::filter::{LevelFilter, Targets};

/// The log targets that carry statement parameters or statement text with values in it.
pub const CAPPED_TARGETS: [&str; 2] = ["tokio_postgres::query", "tokio_postgres::simple_query"];

/// A filter layer that lets everything through but the driver's statement logging (see
/// the [module docs](self)). Add it to the subscriber beside the `RUST_LOG` filter.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let subscriber = tracing_subscriber::fmt()
///     .with_env_filter("trace")
///     .finish()
///     .with(pgbridge::log_secrets::never_secrets());
/// tracing::subscriber::with_default(subscriber, || {
///     assert!(!tracing::enabled!(target: "tokio_postgres::query", tracing::Level::DEBUG));
///     assert!(tracing::enabled!(target: "pgbridge", tracing::Level::TRACE));
/// });
/// ```
pub fn never_secrets() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CAPPED_TARGETS.map(|target| (target, LevelFilter::INFO)))
}
