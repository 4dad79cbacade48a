//! [`Conn`]: a pooled connection whose queries are cancelled on the server when the future
//! awaiting them is dropped.
//!
//! Plain axum + deadpool leaves such a query running: the client hung up, the handler's
//! future was dropped, but Postgres goes on working for no one, holding locks and a
//! backend. Here a dropped query future sends Postgres a cancel request with the
//! connection's `CancelToken`, and the connection returns to the pool only after a round
//! trip shows it idle — so a late cancel can never hit the next borrower's query.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::Object;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{CancelToken, NoTls, Row, Statement};

use super::DbError;

/// How long the clean-up after a cancel may take before the connection is thrown away.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection from the [`Db`](super::Db) pool, with cancel-on-drop queries.
///
/// Statements go through `prepare_cached`, so each is parsed once per connection.
/// Independent queries awaited together (e.g. with `futures::try_join!`) are pipelined by
/// tokio-postgres on this one connection.
///
/// ```no_run
/// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
/// let conn = db.conn().await?;
/// // Two queries in flight at once on one connection: one round trip's wait, not two.
/// let (a, b) = futures_util::try_join!(
///     conn.query_one("SELECT 1::int", &[]),
///     conn.query_one("SELECT 2::int", &[]),
/// )?;
/// assert_eq!((a.get::<_, i32>(0), b.get::<_, i32>(0)), (1, 2));
/// # Ok(()) }
/// ```
pub struct Conn {
    client: Option<Object>,
    cancel: CancelToken,
    /// A cancel sent for a dropped query, not yet known to have landed.
    pending_cancel: Mutex<Option<JoinHandle<()>>>,
}

impl Conn {
    pub(super) fn new(client: Object) -> Self {
        let cancel = client.cancel_token();
        Self {
            client: Some(client),
            cancel,
            pending_cancel: Mutex::new(None),
        }
    }

    /// Runs `sql` (prepared once per connection) and returns its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        let statement = self.prepare(sql).await?;
        self.guarded(self.client().query(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// Runs `sql` and returns its one row; no row, or several, is an error.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DbError> {
        let statement = self.prepare(sql).await?;
        self.guarded(self.client().query_one(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// Runs `sql` and returns its row, if any.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        let statement = self.prepare(sql).await?;
        self.guarded(self.client().query_opt(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// Runs `sql` and returns the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        let statement = self.prepare(sql).await?;
        self.guarded(self.client().execute(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// `sql`, prepared once per connection and cached.
    pub async fn prepare(&self, sql: &str) -> Result<Statement, DbError> {
        self.guarded(self.client().prepare_cached(sql))
            .await
            .map_err(Into::into)
    }

    /// Runs any future that uses this connection (a transaction's query, a `COPY`) with the
    /// same guarantee as [`query`](Self::query): dropped before it completes, it cancels
    /// what it started on the server.
    pub async fn guarded<F: Future>(&self, work: F) -> F::Output {
        self.settle().await;
        let mut guard = CancelOnDrop {
            conn: self,
            armed: true,
        };
        let output = work.await;
        guard.armed = false;
        output
    }

    /// The underlying client, for what the helpers above do not cover. Queries issued on it
    /// directly are not cancelled on drop unless wrapped in [`guarded`](Self::guarded).
    pub fn client(&self) -> &deadpool_postgres::ClientWrapper {
        self.client
            .as_ref()
            .expect("the client is only taken out in Drop")
    }

    /// Waits until a cancel sent for an earlier, dropped query has reached the server, so
    /// it cannot land on the next query.
    async fn settle(&self) {
        let pending = self.lock_pending().take();
        if let Some(handle) = pending {
            let _ = handle.await;
            // The cancelled statement's error answer is still queued on this connection;
            // a round trip drains it before new work is sent.
            let _ = self.client().simple_query("").await;
        }
    }

    fn cancel_in_background(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let token = self.cancel.clone();
        let handle = runtime.spawn(async move {
            match token.cancel_query(NoTls).await {
                Ok(()) => tracing::debug!("cancelled an abandoned query"),
                Err(err) => tracing::warn!(error = %err, "could not cancel an abandoned query"),
            }
        });
        *self.lock_pending() = Some(handle);
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.pending_cancel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let pending = self.lock_pending().take();
        let (Some(handle), Some(client)) = (pending, self.client.take()) else {
            return; // nothing abandoned: the connection goes straight back to the pool
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(Object::take(client)); // no runtime to settle on: close it instead
            return;
        };
        // Keep the connection out of the pool until the cancel has landed and the
        // connection answers again; if it does not, close it rather than lend it out.
        runtime.spawn(async move {
            let _ = handle.await;
            let drained = tokio::time::timeout(SETTLE_TIMEOUT, client.simple_query("")).await;
            if !matches!(drained, Ok(Ok(_))) {
                tracing::warn!("connection did not settle after a cancel; closing it");
                drop(Object::take(client));
            }
        });
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

struct CancelOnDrop<'a> {
    conn: &'a Conn,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.conn.cancel_in_background();
        }
    }
}
