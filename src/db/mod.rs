//! Postgres, non-blocking: two paths. [`Db::shared`] pipelines single short statements
//! from every request on a few long-lived connections ([`shared`]); [`Db::conn`] lends an
//! exclusive connection for transactions, `LISTEN` and long or cancellable statements.
//! On both, a statement whose request goes away is dealt with on the server (cancelled, or
//! on the shared path left to finish when cancelling could hit a neighbour); errors are
//! mapped for the HTTP edge; start-up waits for Postgres.
//!
//! Applications reach the [`Db`] through the environ's extensions, as a WSGI server
//! extension key would carry it:
//!
//! ```no_run
//! use awsgi::{Body, Environ, Error, StartResponse};
//! use pgbridge::db::{Db, Queries};
//!
//! async fn count(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
//!     let db = environ.extensions().get::<Db>().ok_or_else(|| Error::msg("no Db extension"))?;
//!     // One short statement: the shared, pipelined path.
//!     let row = db.shared().query_one("SELECT count(*) FROM pg_stat_activity", &[]).await?;
//!     let n: i64 = row.get(0);
//!     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
//!     Ok(Body::from(format!("{n} backends\n")))
//! }
//! ```

mod cancel;
mod conn;
pub mod connect;
pub mod defaults;
mod error;
pub mod failover;
pub mod listener;
pub mod migrate;
mod pool;
pub mod pooler;
mod queries;
pub mod replica;
mod scoped;
pub mod server_prepared;
mod shape;
pub mod shared;
mod sql;
mod statements;
mod unit;

pub use conn::{Conn, Tx};
pub use error::DbError;
pub use pool::{Db, DbConfig, PoolStatus, Ready};
pub use pooler::PoolMode;
pub use queries::{Params, Queries};
pub use scoped::Scoped;
pub use shared::{Shared, SharedConfig, SharedConnStatus};
pub use sql::UtcTime;
pub use statements::{Session, Statements};
pub use unit::{ACCOUNT_SETTING, Owner, RLS_ROLE, Step, Unit};
