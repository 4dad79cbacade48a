//! [`Queries`]: the one query surface of every connection kind — the shared, pipelined
//! connections ([`Shared`](super::Shared)), an exclusive pooled connection
//! ([`Conn`](super::Conn)), a transaction on one ([`Tx`](super::Tx)), an owner scope
//! ([`Scoped`](super::Scoped), [`ScopedRead`](super::replica::ScopedRead)) — so that data
//! functions are written once and run on whichever connection the caller holds. As
//! tokio-postgres' `GenericClient`, but each kind implements one method
//! (`statement`: one statement of any [`Shape`]); `query`, `query_one`, `query_opt` and
//! `execute` are written here alone.

use std::future::Future;
use std::ops::Deref;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::DbError;
use super::shape::Shape;

/// A statement's parameters.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Single statements, prepared once per connection, on whichever path the caller chose.
///
/// Write data functions against `&impl Queries` and let the handler pick the path:
/// `db.shared()` for a single short statement that touches no owner-protected table,
/// `db.conn().await?` (or a transaction, or an owner-scoped [`Scoped`](super::Scoped)) for
/// the rest. Anything that derefs to a `Queries` is one too (`&Conn`, `Arc<Shared>`, …).
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
/// let backends = count_backends(&db.shared()).await?;
/// # Ok(()) }
/// # async fn count_backends(q: &impl Queries) -> Result<i64, DbError> {
/// #     Ok(q.query_one("SELECT count(*) FROM pg_stat_activity", &[]).await?.get(0))
/// # }
/// ```
pub trait Queries: Sync {
    /// Runs one statement and returns its answer in the shape asked for (all rows, exactly
    /// one, at most one, or the count of rows changed): what each connection kind
    /// implements; call the methods below.
    #[doc(hidden)]
    fn statement<T: Shape>(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<T, DbError>> + Send;

    /// Runs `sql` and returns its rows.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// use pgbridge::db::Queries;
    /// let rows = db.shared().query("SELECT id, message FROM fortune", &[]).await?;
    /// let ids: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    /// # Ok(()) }
    /// ```
    fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send {
        self.statement(sql, params)
    }

    /// Runs `sql` and returns its one row; no row, or several, is an error.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// use pgbridge::db::Queries;
    /// let row = db.shared().query_one("SELECT randomnumber FROM world WHERE id = $1", &[&7_i32]).await?;
    /// let n: i32 = row.get(0);
    /// # Ok(()) }
    /// ```
    fn query_one(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Row, DbError>> + Send {
        self.statement(sql, params)
    }

    /// Runs `sql` and returns its row, if any.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// use pgbridge::db::Queries;
    /// let conn = db.conn().await?;
    /// let title: Option<String> = conn
    ///     .query_opt("SELECT title FROM notes WHERE id = $1", &[&1_i64])
    ///     .await?
    ///     .map(|row| row.get(0));
    /// # Ok(()) }
    /// ```
    fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Option<Row>, DbError>> + Send {
        self.statement(sql, params)
    }

    /// Runs `sql` and returns the number of rows it changed.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// use pgbridge::db::Queries;
    /// let mut conn = db.conn().await?;
    /// let tx = conn.transaction().await?;
    /// let deleted = tx.execute("DELETE FROM notes WHERE id = $1", &[&1_i64]).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    fn execute(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<u64, DbError>> + Send {
        self.statement(sql, params)
    }
}

/// A connection kind that wraps another ([`Conn`](super::Conn) and [`Tx`](super::Tx) wrap
/// [`Statements`](super::Statements), [`Scoped`](super::Scoped) a `Conn`, a reference its
/// referent) runs its statements on it.
impl<D> Queries for D
where
    D: Deref + Sync,
    D::Target: Queries,
{
    fn statement<T: Shape>(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> impl Future<Output = Result<T, DbError>> + Send {
        (**self).statement(sql, params)
    }
}
