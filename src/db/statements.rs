//! [`Statements`]: the statements of an exclusive connection ([`Conn`](super::Conn)) and of
//! a transaction on one ([`Tx`](super::Tx)), which both deref to it — their
//! [`Queries`] implementation.
//!
//! Every statement is guarded the same way — a pending cancel settled first, then
//! cancel-on-drop (see [`super::cancel`]) — and its errors mapped the same way
//! ([`DbError`]). In transaction-pooler mode statements run unnamed under the client-side
//! statement timeout (see [`super::pooler`]); otherwise they are prepared once per
//! connection and cached.

use std::future::Future;
use std::sync::Arc;

use tokio_postgres::{Row, Statement};

use super::cancel::Canceller;
use super::pooler::{self, StatementTypes};
use super::shape::Shape;
use super::{DbError, Params, Queries};

mod sealed {
    /// Only the pool's connection and a transaction on one are [`super::Session`]s.
    #[allow(unreachable_pub)]
    pub trait Sealed {}
    impl Sealed for deadpool_postgres::Object {}
    impl Sealed for deadpool_postgres::Transaction<'_> {}
}

/// What [`Statements`] run on: a pooled connection (`deadpool_postgres::Object`, in a
/// [`Conn`](super::Conn)) or a transaction on one (in a [`Tx`](super::Tx)). Sealed; a
/// template user never names it.
pub trait Session: sealed::Sealed + Send + Sync {
    /// tokio-postgres' client or transaction underneath.
    #[doc(hidden)]
    type Client: tokio_postgres::GenericClient + Send + Sync;

    /// The client or transaction underneath.
    #[doc(hidden)]
    fn pg(&self) -> &Self::Client;

    /// `sql`, prepared once per connection (deadpool's statement cache).
    #[doc(hidden)]
    fn prepare_cached(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<Statement, tokio_postgres::Error>> + Send;
}

impl Session for deadpool_postgres::Object {
    type Client = tokio_postgres::Client;

    fn pg(&self) -> &tokio_postgres::Client {
        self
    }

    fn prepare_cached(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<Statement, tokio_postgres::Error>> + Send {
        deadpool_postgres::ClientWrapper::prepare_cached(self, sql)
    }
}

impl<'a> Session for deadpool_postgres::Transaction<'a> {
    type Client = tokio_postgres::Transaction<'a>;

    fn pg(&self) -> &tokio_postgres::Transaction<'a> {
        self
    }

    fn prepare_cached(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<Statement, tokio_postgres::Error>> + Send {
        deadpool_postgres::Transaction::prepare_cached(self, sql)
    }
}

/// Statements on an exclusive connection or a transaction, with cancel-on-drop: what
/// [`Conn`](super::Conn) and [`Tx`](super::Tx) deref to, so both have exactly these
/// methods, guarded and mapped the same way.
///
/// Independent statements awaited together (e.g. with `tokio::try_join!`) are pipelined
/// by tokio-postgres on the one connection.
///
/// ```no_run
/// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
/// let conn = db.conn().await?;
/// // Two statements in flight at once on one connection: one round trip's wait, not two.
/// let (a, b) = tokio::try_join!(
///     conn.query_one("SELECT 1::int", &[]),
///     conn.query_one("SELECT 2::int", &[]),
/// )?;
/// assert_eq!((a.get::<_, i32>(0), b.get::<_, i32>(0)), (1, 2));
/// # Ok(()) }
/// ```
pub struct Statements<S> {
    session: S,
    cancel: Arc<Canceller>,
    /// Set in `DB_POOL_MODE=transaction`: statements run unnamed, timed by the client.
    unnamed: Option<Arc<StatementTypes>>,
    /// Inside a transaction (a [`Tx`](super::Tx), or one opened on the raw client by a
    /// [`Scoped`](super::Scoped)): an unnamed statement's parameter types are then learnt
    /// in that transaction, not in one of their own.
    in_tx: bool,
}

impl<S: Session> Statements<S> {
    pub(super) fn new(
        session: S,
        cancel: Arc<Canceller>,
        unnamed: Option<Arc<StatementTypes>>,
        in_tx: bool,
    ) -> Self {
        Self {
            session,
            cancel,
            unnamed,
            in_tx,
        }
    }

    // The four methods of [`Queries`], inherent too: a handler holding a `Conn`, `Tx` or
    // `Scoped` calls them without importing the trait. Each is the trait's own.

    /// [`Queries::query`]: runs `sql` and returns its rows.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let rows = db.conn().await?.query("SELECT id FROM notes WHERE id > $1", &[&10_i64]).await?;
    /// # Ok(()) }
    /// ```
    pub fn query<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send + 'a {
        Queries::query(self, sql, params)
    }

    /// [`Queries::query_one`]: runs `sql` and returns its one row; no row, or several, is
    /// an error.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let n: i64 = db.conn().await?.query_one("SELECT count(*) FROM notes", &[]).await?.get(0);
    /// # Ok(()) }
    /// ```
    pub fn query_one<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Row, DbError>> + Send + 'a {
        Queries::query_one(self, sql, params)
    }

    /// [`Queries::query_opt`]: runs `sql` and returns its row, if any.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let row = db.conn().await?.query_opt("SELECT 1 FROM notes WHERE id = $1", &[&1_i64]).await?;
    /// # Ok(()) }
    /// ```
    pub fn query_opt<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Option<Row>, DbError>> + Send + 'a {
        Queries::query_opt(self, sql, params)
    }

    /// [`Queries::execute`]: runs `sql` and returns the number of rows it changed.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let deleted = db.conn().await?.execute("DELETE FROM notes WHERE id = $1", &[&1_i64]).await?;
    /// # Ok(()) }
    /// ```
    pub fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<u64, DbError>> + Send + 'a {
        Queries::execute(self, sql, params)
    }

    /// `sql`, prepared once per connection and cached. The statement is named: with
    /// `DB_POOL_MODE=transaction` it is valid only inside one transaction
    /// ([`Tx`](super::Tx)); the `query*`/`execute` methods run unnamed statements in that
    /// mode instead.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let conn = db.conn().await?;
    /// let statement = conn.prepare("SELECT title FROM notes WHERE id = $1").await?;
    /// let rows = conn.guarded(conn.client().query(&statement, &[&1_i64])).await?;
    /// # Ok(()) }
    /// ```
    pub async fn prepare(&self, sql: &str) -> Result<Statement, DbError> {
        let out = self
            .guarded(self.session.prepare_cached(sql))
            .await
            .map_err(Into::into);
        self.cancel.failover().note(out)
    }

    /// Runs any future that uses this connection (a `COPY`, a raw client call) with the
    /// same guarantees as [`query`](Self::query): a cancel pending from an earlier dropped
    /// statement is settled first, and dropped before it completes, `work` cancels what it
    /// started on the server.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let conn = db.conn().await?;
    /// conn.guarded(conn.client().batch_execute("VACUUM notes")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn guarded<F: Future>(&self, work: F) -> F::Output {
        self.cancel
            .settle(self.session.pg(), !self.in_tx)
            .await
            .guard(work)
            .await
    }

    async fn run_unnoted<T: Shape>(&self, sql: &str, params: Params<'_>) -> Result<T, DbError> {
        let Some(types) = &self.unnamed else {
            let statement = self.prepare(sql).await?;
            return self
                .guarded(T::named(self.session.pg(), &statement, params))
                .await
                .map_err(Into::into);
        };
        let client = self.session.pg();
        let work = async {
            let param_types = if self.in_tx {
                types.in_tx(client, sql).await?
            } else {
                types.outside_tx(client, sql).await?
            };
            T::unnamed(client, sql, pooler::typed(params, &param_types)).await
        };
        self.cancel
            .timed(types.statement_timeout, self.guarded(work))
            .await
    }

    /// The session underneath and what guards it, for [`Conn`](super::Conn) and
    /// [`Tx`](super::Tx).
    pub(super) fn session(&self) -> &S {
        &self.session
    }

    pub(super) fn session_mut(&mut self) -> &mut S {
        &mut self.session
    }

    pub(super) fn canceller(&self) -> &Arc<Canceller> {
        &self.cancel
    }

    pub(super) fn unnamed(&self) -> Option<&Arc<StatementTypes>> {
        self.unnamed.as_ref()
    }

    pub(super) fn set_in_tx(&mut self, in_tx: bool) {
        self.in_tx = in_tx;
    }

    pub(super) fn into_parts(self) -> (S, Arc<Canceller>) {
        (self.session, self.cancel)
    }
}

impl<S: Session> Queries for Statements<S> {
    /// One statement, of any [`Shape`]: unnamed under the client-side statement timeout in
    /// transaction-pooler mode, else prepared once per connection.
    async fn statement<T: Shape>(&self, sql: &str, params: Params<'_>) -> Result<T, DbError> {
        let out = self.run_unnoted(sql, params).await;
        // A read-only server or a lost connection: this connection and every other of the
        // pool opened before it is replaced (see `super::failover`).
        self.cancel.failover().note(out)
    }
}

impl<S> std::fmt::Debug for Statements<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statements")
            .field("in_tx", &self.in_tx)
            .finish_non_exhaustive()
    }
}
