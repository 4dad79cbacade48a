//! Cancel on drop for exclusive connections: a statement whose future is dropped before it
//! completes is cancelled on the server, and that cancel never lands on a later statement.
//!
//! Plain axum + deadpool leaves such a statement running: the client hung up, the
//! handler's future was dropped, but Postgres goes on working for no one, holding locks and
//! a backend. Here every statement runs under a guard ([`Settled::guard`]); dropped armed,
//! the guard sends a cancel request in the background and records it as *pending* on the
//! connection's [`Canceller`].
//!
//! A pending cancel may still be on its way when the connection's next statement is sent,
//! and would then cancel that one. So the next statement first [settles](Canceller::settle)
//! it: waits until the cancel has landed ([`cancel_and_confirm`]) and drains the cancelled
//! statement's answer. `settle` is the only way to get the [`Settled`] that guards a
//! statement, so nothing — a connection's statement, a transaction's, `BEGIN` or
//! `COMMIT` — can skip it. A connection dropped with a cancel pending goes back to the pool
//! only once it has settled and is outside any transaction ([`Canceller::release`]).
//!
//! | file | job |
//! | --- | --- |
//! | `mod.rs` | the [`Canceller`]: guard, pending cancel, settling, client-side timeout |
//! | `request.rs` | sending a cancel request and waiting for it to land; where to; the count |

mod request;

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::Object;
use tokio::task::JoinHandle;
use tokio_postgres::{CancelToken, GenericClient};

use super::DbError;

pub(crate) use request::{CancelCount, CancelTarget, cancel_and_confirm};

/// How long the clean-up after a cancel may take before the connection is thrown away.
pub(crate) const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection's cancel token, where its cancels go, and the cancel in flight for a
/// dropped statement, if any. Shared by the connection and its transactions.
pub(crate) struct Canceller {
    token: CancelToken,
    target: Arc<CancelTarget>,
    pending: Mutex<Option<JoinHandle<()>>>,
}

/// Proof that no cancel is pending on the connection: what [`Settled::guard`] needs to
/// run a statement. Only [`Canceller::settle`] makes one.
#[must_use = "a statement is guarded with Settled::guard"]
pub(crate) struct Settled<'a> {
    canceller: &'a Canceller,
}

impl Canceller {
    /// For a connection whose cancel token is `token`; cancels go to `target`.
    pub(crate) fn new(token: CancelToken, target: Arc<CancelTarget>) -> Self {
        Self {
            token,
            target,
            pending: Mutex::new(None),
        }
    }

    /// Before the connection's next statement: waits until a cancel sent for an earlier,
    /// dropped statement has reached the server, so that it cannot land on the next one;
    /// then drains the cancelled statement's answer with an empty query on `client` (the
    /// connection, or a transaction on it).
    ///
    /// `outside_transaction` says the next statement expects no transaction open (a
    /// connection's statement or `BEGIN`, not a transaction's). Then the connection is
    /// also brought out of any transaction left open: a transaction dropped while this
    /// cancel was in flight queued its `ROLLBACK` at once, and the cancel may have landed on
    /// that `ROLLBACK`, leaving the transaction open and aborted.
    ///
    /// This is the one place a pending cancel is settled.
    pub(crate) async fn settle(
        &self,
        client: &(impl GenericClient + Sync),
        outside_transaction: bool,
    ) -> Settled<'_> {
        if let Some(handle) = self.take_pending() {
            let _ = handle.await;
            if outside_transaction {
                let _ = leave_transaction(client).await;
            } else {
                let _ = client.simple_query("").await;
            }
        }
        Settled { canceller: self }
    }

    /// Client-side statement timeout (transaction-pooler mode): when `work` runs past
    /// `timeout`, a cancel is sent and `work` is awaited for the server's answer —
    /// normally `57014 query_canceled`, the same error a server-side `statement_timeout`
    /// gives. A server that does not answer within [`SETTLE_TIMEOUT`] makes it
    /// [`DbError::Unavailable`].
    pub(crate) async fn timed<T, F>(&self, timeout: Duration, work: F) -> Result<T, DbError>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        tokio::pin!(work);
        if let Ok(result) = tokio::time::timeout(timeout, &mut work).await {
            return result.map_err(Into::into);
        }
        self.cancel_in_background();
        match tokio::time::timeout(SETTLE_TIMEOUT, work).await {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err(DbError::Unavailable(format!(
                "a statement ran past the statement timeout ({timeout:?}) and did not answer its cancel"
            ))),
        }
    }

    /// Returns `client` to its pool, after settling a pending cancel: kept out of the pool
    /// until the cancel has landed and the connection answers, outside any transaction;
    /// if it does not, closed instead. With nothing pending it goes straight back.
    pub(crate) fn release(&self, client: Object) {
        let Some(handle) = self.take_pending() else {
            return; // nothing abandoned: dropping `client` returns it to the pool
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(Object::take(client)); // no runtime to settle on: close it instead
            return;
        };
        runtime.spawn(async move {
            let _ = handle.await;
            let pg: &tokio_postgres::Client = &client;
            let settled = tokio::time::timeout(SETTLE_TIMEOUT, leave_transaction(pg)).await;
            if !matches!(settled, Ok(Ok(()))) {
                tracing::warn!("connection did not settle after a cancel; closing it");
                drop(Object::take(client));
            }
        });
    }

    /// Sends a cancel for the statement running now, unless one is already pending.
    fn cancel_in_background(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut pending = self.lock();
        if pending.is_some() {
            // Pipelined statements dropped together: one cancel per backend is enough, and
            // a second one still in flight when the first is confirmed could hit the next
            // statement.
            return;
        }
        self.target.sent.add_one();
        let token = self.token.clone();
        let target = self.target.clone();
        let handle = runtime.spawn(async move {
            match cancel_and_confirm(&token, &target).await {
                Ok(()) => tracing::debug!("cancelled an abandoned statement"),
                Err(err) => tracing::warn!(error = %err, "could not cancel an abandoned statement"),
            }
        });
        *pending = Some(handle);
    }

    /// The failover signs of the connection's pool: a statement's error that is one
    /// marks it there (see [`crate::db::failover`]).
    pub(crate) fn failover(&self) -> &crate::db::failover::Marks {
        &self.target.failover
    }

    fn take_pending(&self) -> Option<JoinHandle<()>> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Settled<'_> {
    /// Runs `work` (a statement on the settled connection); dropped before it completes,
    /// it cancels what it started on the server.
    pub(crate) async fn guard<F: Future>(self, work: F) -> F::Output {
        let mut guard = CancelOnDrop {
            canceller: self.canceller,
            armed: true,
        };
        let output = work.await;
        guard.armed = false;
        output
    }
}

/// Cancels the connection's statement when dropped armed.
struct CancelOnDrop<'a> {
    canceller: &'a Canceller,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.canceller.cancel_in_background();
        }
    }
}

/// Makes sure the connection answers and is outside any transaction, without the
/// `WARNING: there is no transaction in progress` a bare `ROLLBACK` logs when it is (the
/// usual case: a dropped `Tx` has already queued its own `ROLLBACK`). Outside a
/// transaction, `now()` (its start) equals `statement_timestamp()`; inside one it does not,
/// and in an aborted one the `SELECT` fails: either way a `ROLLBACK` then has a transaction
/// to end.
async fn leave_transaction(
    client: &(impl GenericClient + Sync),
) -> Result<(), tokio_postgres::Error> {
    let idle = match client
        .simple_query("SELECT now() = statement_timestamp()")
        .await
    {
        Ok(messages) => messages.iter().any(|message| {
            matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
        }),
        Err(err) if err.is_closed() => return Err(err),
        Err(_) => false,
    };
    if !idle {
        client.simple_query("ROLLBACK").await?;
    }
    Ok(())
}

impl std::fmt::Debug for Canceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canceller")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}
