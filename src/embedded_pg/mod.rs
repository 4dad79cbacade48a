//! A private PostgreSQL cluster from the machine's server binaries: the default database of
//! `cargo run` (no `DATABASE_URL`), and the test harness's throwaway clusters.
//!
//! | file | job |
//! | --- | --- |
//! | `binaries.rs` | find `initdb`/`pg_ctl`: on `PATH`, else the newest `/usr/lib/postgresql/*/bin` |
//! | `user.rs` | whom the cluster runs as (as root: the `postgres` user, since initdb refuses root) |
//! | `initdb.rs` | create a data directory |
//! | `server.rs` | `pg_ctl start`/`stop`/`status`, and waiting until the server answers |
//! | `watchdog.rs` | stop the cluster when its owner process ends, however it ends |
//! | `embedded.rs` | the service's cluster: create or reuse one in a folder, stop it on exit |
//!
//! ```no_run
//! # async fn run() -> Result<(), pgbridge::embedded_pg::EmbeddedPgError> {
//! use pgbridge::embedded_pg::EmbeddedPg;
//!
//! let pg = EmbeddedPg::open(std::path::Path::new(".pgbridge")).await?;
//! println!("DATABASE_URL={}", pg.url());
//! // ... serve ...
//! pg.stop().await?; // the data stays in .pgbridge/pgdata
//! # Ok(()) }
//! ```

mod binaries;
mod embedded;
mod initdb;
mod server;
mod user;
mod watchdog;

pub use binaries::find_bin_dir;
pub use embedded::{EmbeddedPg, NO_BINARIES_HELP};
pub use initdb::Initdb;
pub use server::{PgServer, START_TIMEOUT, StopMode, shell_quote, socket_path_fits};
pub use user::cluster_user;
pub use watchdog::Watchdog;

/// Why a private cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    /// No `initdb`/`pg_ctl` on `PATH` or under `/usr/lib/postgresql/*/bin`.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql/*/bin"
    )]
    NoBinaries,
    /// Running as root with no `postgres` system user to run the cluster as.
    #[error(
        "running as root, the cluster needs a `postgres` system user to run as (initdb \
         refuses root): install PostgreSQL, or run as another user"
    )]
    NoPostgresUser,
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A SQL statement on the new cluster failed.
    #[error("{what}: {source}")]
    Sql {
        /// What was being done.
        what: String,
        /// Postgres's reason.
        source: tokio_postgres::Error,
    },
    /// Anything else, said in full (tool output, the end of the server log).
    #[error("{0}")]
    Other(String),
}

impl EmbeddedPgError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
