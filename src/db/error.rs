//! [`DbError`]: what can go wrong talking to Postgres, sorted by what a caller does about it.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use super::connect::ConnectError;
use super::failover::Sign;

/// A database failure, classified for the HTTP edge.
///
/// The `Display` text is for logs: it may hold driver detail, and never goes to a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// Postgres cannot be reached, refused or dropped the connection, or no pooled
    /// connection came free within the wait timeout. Worth retrying shortly (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The server refused a write as read-only (SQLSTATE `25006`): it is a standby now (a
    /// failover moved the primary) or `default_transaction_read_only` is on. Worth retrying
    /// shortly (503): the connection it happened on is not reused (see
    /// [`failover`](super::failover)), so the retry goes to the primary, once there is one.
    #[error("database is read-only: {0}")]
    ReadOnly(String),
    /// The server closed the connection (or is shutting down), or it broke on the wire.
    /// Worth retrying shortly (503): the connections opened before it are not reused (see
    /// [`failover`](super::failover)).
    #[error("database connection lost: {0}")]
    ConnectionLost(String),
    /// The statement ran past `statement_timeout`, or was cancelled.
    #[error("database statement timed out or was cancelled")]
    Timeout(#[source] tokio_postgres::Error),
    /// A unique or exclusion constraint refused the write (409).
    #[error("constraint {constraint:?} refused the write")]
    Conflict {
        /// The constraint's name, for the log and for mapping to a field.
        constraint: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Any other error from Postgres: a bug in a query, most likely (500).
    #[error("database query failed: {}", describe(.0))]
    Query(#[source] tokio_postgres::Error),
    /// The configuration cannot build a pool.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// A new connection could not be made; the error names why (refused, TLS, certificate,
    /// authentication, missing database) and where. See [`ConnectError::is_permanent`].
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

impl DbError {
    /// Whether retrying later may succeed: the database is down, busy, or timed out.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_)
                | Self::ReadOnly(_)
                | Self::ConnectionLost(_)
                | Self::Timeout(_)
                | Self::Connect(_)
        )
    }

    /// The sign of a failover this error is, if any: a read-only server, or a connection
    /// lost (see [`failover`](super::failover)).
    pub fn failover_sign(&self) -> Option<Sign> {
        match self {
            Self::ReadOnly(_) => Some(Sign::ReadOnly),
            Self::ConnectionLost(_) => Some(Sign::ConnectionLost),
            _ => None,
        }
    }

    /// Whether retrying cannot help: a connection failed for a reason that only a change
    /// of settings, password, certificate or server can fix (see [`ConnectError`]).
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Config(_) => true,
            Self::Connect(err) => err.is_permanent(),
            _ => false,
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(err: tokio_postgres::Error) -> Self {
        if err.is_closed() || is_io(&err) {
            return Self::ConnectionLost(describe(&err));
        }
        let Some(db) = err.as_db_error() else {
            // No server error: a protocol failure on the wire, or a row that did not fit.
            return Self::Unavailable(describe(&err));
        };
        let code = db.code();
        if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            return Self::ReadOnly(describe(&err));
        }
        if *code == SqlState::QUERY_CANCELED {
            return Self::Timeout(err);
        }
        if *code == SqlState::UNIQUE_VIOLATION || *code == SqlState::EXCLUSION_VIOLATION {
            let constraint = db.constraint().unwrap_or_default().to_owned();
            return Self::Conflict {
                constraint,
                source: err,
            };
        }
        // Class 08 (connection exception), 53 (insufficient resources), 57P0x (shutdown,
        // crash, cannot connect now): the server, not the query, is the problem.
        let class = &code.code()[..2];
        if class == "08"
            || class == "53"
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            if *code == SqlState::ADMIN_SHUTDOWN || *code == SqlState::CRASH_SHUTDOWN {
                // The server is going away (Patroni stopping or demoting it).
                return Self::ConnectionLost(describe(&err));
            }
            return Self::Unavailable(describe(&err));
        }
        Self::Query(err)
    }
}

/// Whether the connection broke on the wire (reset, broken pipe, end of file).
fn is_io(err: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The driver's error with its causes (tokio-postgres' `Display` says only "db error"),
/// and a hint where the cause is a known misconfiguration.
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.contains("unsupported startup parameter") {
        text.push_str(
            " (a transaction pooler such as PgBouncer refuses startup options: \
             set DB_POOL_MODE=transaction)",
        );
    }
    text
}

impl From<PoolError> for DbError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Backend(err) => err.into(),
            other => Self::Unavailable(other.to_string()),
        }
    }
}
