//! Postgres, non-blocking: a pool from config, a connection whose queries are cancelled on
//! the server when the request awaiting them goes away, error mapping, and start-up waiting.
//!
//! Applications reach the [`Db`] through the environ's extensions, as a WSGI server
//! extension key would carry it:
//!
//! ```no_run
//! use pgbridge::awsgi::{Body, Environ, Error, StartResponse};
//! use pgbridge::db::Db;
//!
//! async fn count(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
//!     let db = environ.extensions().get::<Db>().ok_or_else(|| Error::msg("no Db extension"))?;
//!     let conn = db.conn().await?;
//!     let row = conn.query_one("SELECT count(*) FROM pg_stat_activity", &[]).await?;
//!     let n: i64 = row.get(0);
//!     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
//!     Ok(Body::from(format!("{n} backends\n")))
//! }
//! ```

mod conn;
pub mod connect;
mod error;
pub mod listener;
pub mod migrate;
mod pool;
pub mod pooler;
pub mod replica;
mod scoped;

pub use conn::{Conn, Tx, cancels_sent};
pub use error::DbError;
pub use pool::{Db, DbConfig, PoolStatus, Ready};
pub use pooler::PoolMode;
pub use scoped::{ACCOUNT_SETTING, RLS_ROLE, Scoped};
