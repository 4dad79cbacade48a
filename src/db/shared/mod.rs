//! The shared path: a few long-lived connections on which single statements from any
//! number of concurrent requests are pipelined.
//!
//! Each connection carries many statements at once (tokio-postgres writes a statement as
//! soon as it is submitted and matches answers in order), and prepares each SQL text once.
//! A handful of busy backends instead of one per request: Postgres spends its cores on
//! queries rather than on switching between backends.
//!
//! | file | job |
//! | --- | --- |
//! | `set.rs` | the connection set: lazy opening, replacement, round-robin choice, backpressure |
//! | `link.rs` | one connection: client, statement cache, statements in flight, the fence |
//! | `fence.rs` | cancel fencing: an abandoned statement never cancels a neighbour's |
//! | `scope.rs` | owner scopes as one unit no other request's statement can split |
//!
//! Use it for single, short statements, and for owner scopes written as one unit
//! ([`Shared::scope`]: `BEGIN`, the scope, the statements and `COMMIT` handed to the
//! connection at once); use [`Db::conn`](super::Db::conn) (an exclusive connection) for
//! transactions that wait for the application between statements (a [`Scoped`](super::Scoped)
//! left open), `LISTEN`, session state, and anything that may run long and should be
//! cancelled the moment its request goes away.

mod fence;
mod link;
mod scope;
mod set;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::future::Future;

use tokio_postgres::types::Type;

use self::set::Set;
use super::Conn;
use super::cancel::{CancelTarget, SETTLE_TIMEOUT};
use super::pooler::{self, StatementTypes};
use super::shape::Shape;
use super::{DbError, Params, Queries};

pub use fence::abandoned_uncancelled;

/// Transaction-pooler mode (`DB_POOL_MODE=transaction`): what the shared path needs to run
/// its statements unnamed, as the pool does (see [`super::pooler`]).
pub(super) struct Unnamed {
    /// Parameter types per statement text and the statement timeout, the pool's own.
    pub(super) types: Arc<StatementTypes>,
    /// Where a statement text seen for the first time is learnt: on a pooled connection,
    /// in a transaction of its own. (Not on a shared one: a `BEGIN` there would take in
    /// the statements of other requests pipelined behind it.)
    pub(super) pool: deadpool_postgres::Pool,
    /// Where the pooled connection's cancels go.
    pub(super) server: Arc<CancelTarget>,
}

impl Unnamed {
    /// `sql`'s parameter types: cached, or learnt now on a pooled connection.
    async fn param_types(&self, sql: &str) -> Result<Arc<[Type]>, DbError> {
        if let Some(types) = self.types.cached(sql) {
            return Ok(types);
        }
        let object = self.pool.get().await?;
        let conn = Conn::new(object, self.server.clone(), Some(self.types.clone()));
        conn.guarded(self.types.outside_tx(&**conn.client(), sql))
            .await
            .map_err(Into::into)
    }

    /// `sql`'s parameter types and its name on the server connections, if it has one
    /// ([`server_prepared`](crate::db::server_prepared)): one look-up when known, else
    /// learnt now as [`param_types`](Self::param_types) learns them.
    async fn learnt(&self, sql: &str) -> Result<pooler::Text, DbError> {
        if let Some(text) = self.types.text(sql) {
            return Ok(text);
        }
        let types = self.param_types(sql).await?;
        // Gone only if the cache was cleared in between: run unnamed this once.
        Ok(self.types.text(sql).unwrap_or(pooler::Text {
            types,
            server: None,
        }))
    }
}

/// The shared, pipelined connections of a [`Db`](super::Db); get it with
/// [`Db::shared`](super::Db::shared). Cheap to clone.
///
/// ```no_run
/// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
/// use pgbridge::db::Queries;
///
/// // A single short statement on a table without row-level security: the shared path.
/// let row = db.shared().query_one("SELECT name FROM countries WHERE code = $1", &[&"FR"]).await?;
/// let name: String = row.get(0);
///
/// // A transaction, an owner scope, LISTEN, or a statement that may run long: an
/// // exclusive connection.
/// let mut conn = db.conn().await?;
/// let tx = conn.transaction().await?;
/// tx.execute("DELETE FROM countries WHERE code = $1", &[&"FR"]).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
///
/// Its statements are the [`Queries`] methods (`query`, `query_one`, `query_opt`,
/// `execute`).
///
/// Guarantees:
/// - A statement whose future is dropped is cancelled on the server only when it is the
///   connection's sole statement in flight (new statements are held back until the cancel
///   has landed); otherwise it runs to its end and its answer is discarded. It never
///   cancels another request's statement.
/// - A connection that dies fails its statements at once ([`DbError::ConnectionLost`], 503)
///   and is replaced by the next statement that needs it, as is every link opened before
///   it (see [`crate::db::failover`]).
/// - At most `max_in_flight` statements per connection and `max_queued` waiting for room;
///   past that, [`DbError::Unavailable`] at once rather than a growing queue.
/// - `statement_timeout` applies as on the pool: on the server; or, through a transaction
///   pooler (`DB_POOL_MODE=transaction`: unnamed statements, no startup option), on the
///   client, with a cancel sent only once every statement in flight on the connection has
///   expired, so that it cannot hit a statement whose caller still waits.
#[derive(Clone)]
pub struct Shared {
    set: Arc<Set>,
    /// What the layers above attached to the [`Db`](super::Db) ([`Db::attach`](super::Db::attach)).
    extensions: Arc<::http::Extensions>,
}

/// Settings of the shared path; part of [`DbConfig`](super::DbConfig).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedConfig {
    /// Shared connections; `0` means one per CPU core.
    pub connections: usize,
    /// Most statements in flight on one shared connection.
    pub max_in_flight: usize,
    /// Most statements waiting for room when every shared connection has `max_in_flight`;
    /// past that, a statement fails at once with [`DbError::Unavailable`] (503). A waiting
    /// statement gets 503 too if no room comes within the pool's wait timeout.
    pub max_queued: usize,
}

impl Default for SharedConfig {
    fn default() -> Self {
        Self {
            connections: super::defaults::SHARED_CONNECTIONS,
            max_in_flight: super::defaults::SHARED_MAX_IN_FLIGHT,
            max_queued: super::defaults::SHARED_MAX_QUEUED,
        }
    }
}

impl SharedConfig {
    /// The number of connections, `0` resolved to the number of cores.
    pub fn resolved_connections(&self) -> usize {
        if self.connections > 0 {
            self.connections
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// One shared connection's state, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedConnStatus {
    /// Whether the connection is open.
    pub connected: bool,
    /// Statements in flight on it.
    pub in_flight: usize,
    /// Whether a cancel is settling on it (new statements held back).
    pub fenced: bool,
}

impl Shared {
    pub(super) fn new(
        config: SharedConfig,
        pg: super::connect::PgConnect,
        server: Arc<CancelTarget>,
        wait: Duration,
        connect_timeout: Duration,
        unnamed: Option<Unnamed>,
    ) -> Self {
        let set = Set::new(
            config.resolved_connections(),
            config.max_in_flight,
            config.max_queued,
            pg,
            server,
            wait,
            connect_timeout,
            unnamed,
        );
        Self {
            set: Arc::new(set),
            extensions: Arc::default(),
        }
    }

    /// The value of type `T` attached to this path's [`Db`](super::Db) with
    /// [`Db::attach`](super::Db::attach), if any: for code that keeps only the shared path.
    ///
    /// ```no_run
    /// # fn demo(db: pgbridge::db::Db) {
    /// #[derive(Clone)]
    /// struct Region(&'static str);
    /// let db = db.attach(Region("eu"));
    /// assert_eq!(db.shared().extension::<Region>().map(|r| r.0), Some("eu"));
    /// # }
    /// ```
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.extensions.get::<T>()
    }

    /// Attaches `value` (see [`Db::attach`](super::Db::attach)).
    pub(super) fn attach<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        Arc::make_mut(&mut self.extensions).insert(value);
    }

    /// Each shared connection's state, in slot order.
    pub fn status(&self) -> Vec<SharedConnStatus> {
        self.set
            .slots()
            .iter()
            .map(|slot| match slot.current() {
                Some(link) => {
                    let state = link.state();
                    SharedConnStatus {
                        connected: !link.is_closed(),
                        in_flight: state.in_flight,
                        fenced: state.fenced || state.draining,
                    }
                }
                None => SharedConnStatus {
                    connected: false,
                    in_flight: 0,
                    fenced: false,
                },
            })
            .collect()
    }

    /// Statements refused with 503 because the shared connections were saturated (queue
    /// full or no room in time) or fenced for too long.
    pub fn rejected(&self) -> u64 {
        self.set.rejected.load(Ordering::Relaxed)
    }
}

/// The statement has its answer: stop counting it, whatever the answer.
/// A failover sign in the answer (read-only, connection lost) is marked on the pool's
/// [`Marks`](crate::db::failover::Marks): this link, and every other opened before it, is
/// replaced.
fn finish<T>(ticket: fence::Ticket, out: Result<T, DbError>) -> Result<T, DbError> {
    let out = ticket.link().server.failover.note(out);
    ticket.finish();
    out
}

/// The client-side statement timeout (transaction-pooler mode, where no server-side
/// `statement_timeout` can be set), as `Canceller::timed` does it on the pool: past
/// `timeout` the statement [expires](fence::Ticket::expire) — it is cancelled as soon as
/// that can hit no one else's statement — and its answer is awaited, normally the server's
/// `57014 query_canceled` ([`DbError::Timeout`], as from a server-side timeout). The
/// statements in flight with it were all admitted before it expired, so they expire within
/// another `timeout` and the cancel follows; no answer by then and [`SETTLE_TIMEOUT`] more:
/// [`DbError::Unavailable`], and the connection is replaced.
async fn timed<T, F>(mut ticket: fence::Ticket, timeout: Duration, work: F) -> Result<T, DbError>
where
    F: Future<Output = Result<T, tokio_postgres::Error>>,
{
    tokio::pin!(work);
    if let Ok(out) = tokio::time::timeout(timeout, &mut work).await {
        return finish(ticket, out.map_err(Into::into));
    }
    ticket.expire();
    match tokio::time::timeout(timeout + SETTLE_TIMEOUT, work).await {
        Ok(out) => finish(ticket, out.map_err(Into::into)),
        Err(_) => {
            ticket.link().mark_broken();
            Err(DbError::Unavailable(format!(
                "a shared statement ran past the statement timeout ({timeout:?}) and did not answer its cancel"
            )))
        }
    }
}

impl Queries for Shared {
    /// One statement on a link: a place first, then the statement — prepared once per
    /// connection; or, through a transaction pooler, unnamed (parameter types learnt once
    /// per statement text) under the client-side statement timeout.
    async fn statement<T: Shape>(&self, sql: &str, params: Params<'_>) -> Result<T, DbError> {
        if let Some(unnamed) = &self.set.unnamed {
            // Boxed: only through a transaction pooler, and inline its futures (the type
            // look-up on a pooled connection, the timeouts) would make every statement's
            // future larger, prepared connections' included.
            return Box::pin(async move {
                // Before taking a place: learning may borrow a pooled connection.
                let types = unnamed.param_types(sql).await?;
                let ticket = self.set.acquire().await?;
                let link = ticket.link().clone();
                let work = link.send(T::unnamed(
                    link.client(),
                    sql,
                    pooler::typed(params, &types),
                ));
                timed(ticket, unnamed.types.statement_timeout, work).await
            })
            .await;
        }
        let ticket = self.set.acquire().await?;
        // Borrowed from the ticket, not cloned: one `Arc` count up and down less per
        // statement.
        let out = {
            let link = ticket.link();
            match link.prepare(sql).await {
                Ok(statement) => link
                    .send(T::named(link.client(), &statement, params))
                    .await
                    .map_err(Into::into),
                Err(err) => Err(err),
            }
        };
        finish(ticket, out)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("connections", &self.set.slots().len())
            .field("max_in_flight", &self.set.max_in_flight)
            .finish_non_exhaustive()
    }
}
