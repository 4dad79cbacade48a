//! [`Queries`]: what [`Shared`](super::Shared), [`Conn`](super::Conn) and [`Tx`](super::Tx)
//! have in common, so that data functions can be written once and run on either path.

use std::future::Future;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::DbError;

/// A statement's parameters.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Single statements, prepared once per connection, on whichever path the caller chose.
///
/// Write data functions against `&impl Queries` and let the handler pick the path:
/// `db.shared()` for a single short statement, `db.conn().await?` (or a transaction) for
/// the rest.
///
/// ```no_run
/// use pgbridge::db::{Db, DbError, Queries};
///
/// async fn count(q: &impl Queries) -> Result<i64, DbError> {
///     Ok(q.query_one("SELECT count(*) FROM notes", &[]).await?.get(0))
/// }
///
/// # async fn demo(db: Db) -> Result<(), DbError> {
/// let on_shared = count(db.shared()).await?;
/// let on_exclusive = count(&db.conn().await?).await?;
/// # Ok(()) }
/// ```
pub trait Queries {
    /// Runs `sql` and returns its rows.
    fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send;
    /// Runs `sql` and returns its one row; no row, or several, is an error.
    fn query_one(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Row, DbError>> + Send;
    /// Runs `sql` and returns its row, if any.
    fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Option<Row>, DbError>> + Send;
    /// Runs `sql` and returns the number of rows it changed.
    fn execute(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<u64, DbError>> + Send;
}

/// Implements [`Queries`] by forwarding to the type's inherent methods of the same names.
macro_rules! forward_queries {
    ($($ty:ty),*) => {$(
        impl Queries for $ty {
            fn query(&self, sql: &str, params: Params<'_>)
                -> impl Future<Output = Result<Vec<Row>, DbError>> + Send {
                <$ty>::query(self, sql, params)
            }
            fn query_one(&self, sql: &str, params: Params<'_>)
                -> impl Future<Output = Result<Row, DbError>> + Send {
                <$ty>::query_one(self, sql, params)
            }
            fn query_opt(&self, sql: &str, params: Params<'_>)
                -> impl Future<Output = Result<Option<Row>, DbError>> + Send {
                <$ty>::query_opt(self, sql, params)
            }
            fn execute(&self, sql: &str, params: Params<'_>)
                -> impl Future<Output = Result<u64, DbError>> + Send {
                <$ty>::execute(self, sql, params)
            }
        }
    )*};
}

forward_queries!(super::Conn, super::Tx<'_>, super::Shared);
