//! [`StartError`]: why the service did not start, or stopped with an error.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::db::DbError;
use crate::db::migrate::MigrateError;
use crate::embedded_pg::EmbeddedPgError;

/// Why [`Application::build`](super::Application::build) or
/// [`Application::run_until`](super::Application::run_until) failed. The binary logs it
/// (`pgbridge stopped`) and exits with status 1.
///
/// ```
/// use pgbridge::StartError;
///
/// let busy = std::io::Error::from(std::io::ErrorKind::AddrInUse);
/// let err = StartError::Listen { addr: "127.0.0.1:8080".parse().unwrap(), source: busy };
/// assert!(err.to_string().starts_with("cannot listen on 127.0.0.1:8080: "));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `BIND_ADDR` could not be bound (a busy port, an address of no interface).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A socket was passed (`LISTEN_FDS`), but it is not a usable TCP listener.
    #[error("LISTEN_FDS is set, but fd 3 is not a usable TCP listener: {0}")]
    ListenFds(std::io::Error),
    /// The embedded PostgreSQL (no `DATABASE_URL`) did not start.
    #[error(
        "the embedded PostgreSQL in {} did not start (set DATABASE_URL to use another server): {source}",
        dir.display()
    )]
    Embedded {
        /// `EMBEDDED_PG_DIR`.
        dir: PathBuf,
        /// Why.
        source: EmbeddedPgError,
    },
    /// The database settings are wrong, or the database refused us for good (a wrong
    /// password, a missing database, a certificate problem).
    #[error(transparent)]
    Db(#[from] DbError),
    /// The migrations could not be applied.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// Serving failed (a core's thread or runtime did not start, a core stopped on its own).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl StartError {
    /// Whether the machine has no PostgreSQL server binaries for the embedded database:
    /// the binary then prints [`NO_BINARIES_HELP`](crate::embedded_pg::NO_BINARIES_HELP)
    /// (the three ways on) instead of a log line.
    ///
    /// ```
    /// use pgbridge::StartError;
    /// use pgbridge::embedded_pg::EmbeddedPgError;
    ///
    /// let err = StartError::Embedded { dir: ".pgbridge".into(), source: EmbeddedPgError::NoBinaries };
    /// assert!(err.is_no_binaries());
    /// ```
    pub fn is_no_binaries(&self) -> bool {
        matches!(
            self,
            Self::Embedded {
                source: EmbeddedPgError::NoBinaries,
                ..
            }
        )
    }
}
