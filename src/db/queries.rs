//! [`Queries`]: what [`Shared`](super::Shared), [`Conn`](super::Conn), [`Tx`](super::Tx),
//! [`Scoped`](super::Scoped) and [`ScopedRead`](super::replica::ScopedRead) have in common,
//! so that data functions can be written once and run on whichever connection the caller
//! holds.

use std::future::Future;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::DbError;

/// A statement's parameters.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Single statements, prepared once per connection, on whichever path the caller chose.
///
/// Write data functions against `&impl Queries` and let the handler pick the path:
/// `db.shared()` for a single short statement that touches no owner-protected table,
/// `db.conn().await?` (or a transaction, or an owner-scoped [`Scoped`](super::Scoped)) for
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
/// // notes has row-level security: count them in an owner's scope, on an exclusive
/// // connection (a table without it could be counted on `db.shared()` too).
/// let scoped = pgbridge::db::Scoped::begin(db.conn().await?, 42).await?;
/// let owned = count(&scoped).await?;
/// scoped.commit().await?;
/// let backends = count_backends(db.shared()).await?;
/// # Ok(()) }
/// # async fn count_backends(q: &impl Queries) -> Result<i64, DbError> {
/// #     Ok(q.query_one("SELECT count(*) FROM pg_stat_activity", &[]).await?.get(0))
/// # }
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

/// Implements [`Queries`] by forwarding to the inherent methods of the same names on
/// `$target` (the type itself, or what it derefs to).
macro_rules! forward_queries {
    ($($ty:ty => $target:ty),*) => {$(
        impl Queries for $ty {
            fn query(&self, sql: &str, params: Params<'_>)
                -> impl Future<Output = Result<Vec<Row>, DbError>> + Send {
                <$target>::query(self, sql, params)
            }
            fn query_one(&self, sql: &str, params: Params<'_>)
                -> impl Future<Output = Result<Row, DbError>> + Send {
                <$target>::query_one(self, sql, params)
            }
            fn query_opt(&self, sql: &str, params: Params<'_>)
                -> impl Future<Output = Result<Option<Row>, DbError>> + Send {
                <$target>::query_opt(self, sql, params)
            }
            fn execute(&self, sql: &str, params: Params<'_>)
                -> impl Future<Output = Result<u64, DbError>> + Send {
                <$target>::execute(self, sql, params)
            }
        }
    )*};
}

forward_queries!(
    super::Conn => super::Statements<deadpool_postgres::Object>,
    super::Tx<'_> => super::Statements<deadpool_postgres::Transaction<'_>>,
    super::Shared => super::Shared,
    super::Scoped => super::Statements<deadpool_postgres::Object>,
    super::replica::ScopedRead => super::Statements<deadpool_postgres::Object>
);
