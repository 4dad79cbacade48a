//! [`Conn`]: an exclusive connection from the [`Db`](super::Db) pool, and [`Tx`]: a
//! transaction on one. Both deref to [`Statements`] (so both are
//! [`Queries`](super::Queries)), whose statements are cancelled on the server when the future awaiting them is dropped (see
//! [`super::cancel`]); the connection returns to the pool only once such a cancel has
//! landed and it is idle outside any transaction, so a late cancel can never hit the next
//! borrower's statement.

use std::ops::Deref;
use std::sync::Arc;

use deadpool_postgres::Object;

use super::cancel::{CancelTarget, Canceller};
use super::pooler::StatementTypes;
use super::statements::Session;
use super::{DbError, Statements};

/// A connection from the [`Db`](super::Db) pool, with cancel-on-drop statements: the
/// methods of [`Statements`], which it derefs to.
///
/// Statements go through `prepare_cached`, so each is parsed once per connection.
/// Independent statements awaited together (e.g. with `tokio::try_join!`) are pipelined
/// by tokio-postgres on this one connection.
///
/// ```no_run
/// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
/// let conn = db.conn().await?;
/// let one: i32 = conn.query_one("SELECT 1", &[]).await?.get(0);
/// assert_eq!(one, 1);
/// # Ok(()) }
/// ```
pub struct Conn {
    /// `None` only once dropped.
    statements: Option<Statements<Object>>,
}

impl Conn {
    pub(super) fn new(
        client: Object,
        target: Arc<CancelTarget>,
        unnamed: Option<Arc<StatementTypes>>,
    ) -> Self {
        let cancel = Arc::new(Canceller::new(client.cancel_token(), target));
        Self {
            statements: Some(Statements::new(client, cancel, unnamed, false)),
        }
    }

    /// Marks the connection as inside (or outside) a transaction its owner opened with
    /// `BEGIN` on the raw client.
    pub(super) fn set_in_transaction(&mut self, in_tx: bool) {
        self.statements_mut().set_in_tx(in_tx);
    }

    /// Starts a transaction. Its statements are cancelled on drop like the connection's,
    /// and settle a cancel left pending by an earlier one the same way; a transaction
    /// dropped before [`Tx::commit`] rolls back.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let mut conn = db.conn().await?;
    /// let tx = conn.transaction().await?;
    /// tx.execute("UPDATE notes SET title = 'a' WHERE id = $1", &[&1_i64]).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction(&mut self) -> Result<Tx<'_>, DbError> {
        let statements = self.statements_mut();
        let cancel = statements.canceller().clone();
        let unnamed = statements.unnamed().cloned();
        let settled = cancel.settle(statements.session().pg(), true).await;
        let tx = settled
            .guard(statements.session_mut().transaction())
            .await
            .map_err(DbError::from);
        let tx = cancel.failover().note(tx)?;
        Ok(Tx {
            statements: Statements::new(tx, cancel, unnamed, true),
        })
    }

    /// The underlying client, for what [`Statements`] does not cover. Work issued on it
    /// directly is not cancelled on drop unless wrapped in
    /// [`guarded`](Statements::guarded).
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let conn = db.conn().await?;
    /// conn.guarded(conn.client().batch_execute("SET search_path TO app")).await?;
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> &deadpool_postgres::ClientWrapper {
        self.session()
    }

    fn statements_mut(&mut self) -> &mut Statements<Object> {
        self.statements
            .as_mut()
            .expect("the statements are only taken out in Drop")
    }
}

impl Deref for Conn {
    type Target = Statements<Object>;

    fn deref(&self) -> &Statements<Object> {
        self.statements
            .as_ref()
            .expect("the statements are only taken out in Drop")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(statements) = self.statements.take() {
            let (client, cancel) = statements.into_parts();
            cancel.release(client);
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

/// A transaction on a [`Conn`], with cancel-on-drop statements: the methods of
/// [`Statements`], which it derefs to. Dropped before [`commit`](Self::commit), it rolls
/// back.
///
/// ```no_run
/// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
/// let mut conn = db.conn().await?;
/// let tx = conn.transaction().await?;
/// let id: i64 = tx
///     .query_one("INSERT INTO notes (title) VALUES ($1) RETURNING id", &[&"first"])
///     .await?
///     .get(0);
/// tx.execute("UPDATE notes SET title = 'second' WHERE id = $1", &[&id]).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub struct Tx<'a> {
    statements: Statements<deadpool_postgres::Transaction<'a>>,
}

impl<'a> Tx<'a> {
    /// Commits, after settling a cancel left pending by a dropped statement (so that it
    /// cannot land on the `COMMIT`).
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let mut conn = db.conn().await?;
    /// let tx = conn.transaction().await?;
    /// tx.execute("DELETE FROM notes", &[]).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit(self) -> Result<(), DbError> {
        let (tx, cancel) = self.statements.into_parts();
        let settled = cancel.settle(tx.pg(), false).await;
        let out = settled.guard(tx.commit()).await.map_err(Into::into);
        cancel.failover().note(out)
    }
}

impl<'a> Deref for Tx<'a> {
    type Target = Statements<deadpool_postgres::Transaction<'a>>;

    fn deref(&self) -> &Self::Target {
        &self.statements
    }
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}
