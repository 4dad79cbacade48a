//! The HTTP server loop, in place of `axum::serve`, which has no connection limits.
//!
//! | file | job |
//! | --- | --- |
//! | `accept.rs` | accept under the connection cap and the per-address limit; evict at the cap; back off when out of file descriptors |
//! | `conn.rs` | one connection: hyper HTTP/1.1, header-read and idle timeouts, drain/abort, eviction, hyper's 400/414/431 replaced |
//! | `evict.rs` | [`Connection`]: which connections go first at the cap (long anonymous requests) |
//! | `reject.rs` | answers the server writes itself (JSON error shape, `X-Request-Id`) |
//! | `shutdown.rs` | the graceful stop: stop accepting, drain, abort at the grace deadline |
//! | `stats.rs` | connection counters for `/metrics` |
//! | `fd_limit.rs` | raise `RLIMIT_NOFILE`; fit the cap under it |
//! | `percore.rs` | `RUNTIME=percore`: one current-thread runtime and server per core |
//! | `stack.rs` | [`Stack`]: the service served, the middleware stack boxed once, no outer `Router` |
//! | `woken.rs` | a connection's rare signals polled only when they woke its task |
//!
//! Handlers see `ConnectInfo<SocketAddr>` and the [`Connection`] extension, and TCP_NODELAY is set on every connection, as
//! with `axum::serve(..).into_make_service_with_connect_info::<SocketAddr>()`.
//!
//! ```no_run
//! # async fn run(router: axum::Router) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use pgbridge::server::{ConnectionStats, Limits, Server};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let limits = Limits {
//!     header_read_timeout: Duration::from_secs(10),
//!     idle_timeout: Duration::from_secs(60),
//!     max_connections: 10_000,
//!     max_connections_per_address: 256,
//! };
//! let stopped = Server::new(listener, router, limits, Arc::new(ConnectionStats::default()))
//!     .run(async { let _ = tokio::signal::ctrl_c().await; }, Duration::from_secs(30))
//!     .await;
//! println!("{stopped:?}");
//! # Ok(()) }
//! ```

mod accept;
mod conn;
mod evict;
mod fd_limit;
mod percore;
mod reject;
mod shutdown;
mod stack;
mod stats;
mod woken;

use std::time::Duration;

pub use evict::{Connection, Evictable};
pub use fd_limit::{RESERVED_DESCRIPTORS, connection_cap, raise_nofile_limit};
pub use percore::{PerCore, Runtime, settle};
pub use shutdown::{Server, Stopped};
pub use stack::Stack;
pub use stats::{ConnectionStats, TimedOut};

/// The bounds every client connection lives under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From the first byte of a request to the end of its headers.
    pub header_read_timeout: Duration,
    /// With no request in flight and no byte of a new one.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address (`0`: no limit); past it a
    /// new connection is answered 429 and closed.
    pub max_connections_per_address: usize,
}

/// Where the server is in its life; connection tasks watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish in-flight requests, then close.
    Draining,
    /// The grace period is over: drop everything now.
    Aborting,
}
