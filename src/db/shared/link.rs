//! [`Link`]: one long-lived shared connection — its client, its statement cache, and the
//! count of statements in flight on it with the fence that [`super::fence`] raises.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;
use tokio_postgres::{CancelToken, Client, Statement};

use crate::db::DbError;
use crate::db::cancel::CancelTarget;

/// One shared connection.
pub(super) struct Link {
    client: Client,
    statements: Mutex<HashMap<Box<str>, Statement>>,
    state: Mutex<State>,
    /// Held while a request is handed to the connection: an owner scope's parts are all
    /// handed over under it at once, so no other request's statement can come between
    /// them (see [`send`](Self::send) and `shared/scope.rs`).
    pub(super) sending: Mutex<()>,
    /// Woken when the fence comes down.
    pub(super) unfenced: Notify,
    /// Set when the connection must not take new statements (a cancel did not settle).
    broken: AtomicBool,
    pub(super) cancel: CancelToken,
    pub(super) server: Arc<CancelTarget>,
    /// When it was opened: a link opened before a failover sign is closed to new
    /// statements (see [`crate::db::failover`]).
    opened: Instant,
}

/// Statements in flight, and whether new ones are held back.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct State {
    /// Statements submitted whose caller still waits (or whose cancel is settling).
    pub(super) in_flight: usize,
    /// A cancel is on its way for the connection's sole statement: admit nothing until it
    /// has landed and a round trip shows the backend idle.
    pub(super) fenced: bool,
    /// Of `in_flight`, statements past the client-side statement timeout (transaction-pooler
    /// mode) whose callers wait for the cancel's answer.
    pub(super) expired: usize,
    /// A statement expired: admit nothing until the link is empty, so that once every
    /// statement in flight has expired a cancel can only hit an expired one.
    pub(super) draining: bool,
    /// The task cancelling expired statements is running.
    pub(super) reaping: bool,
}

/// Why a statement was not admitted on a link.
pub(super) enum Refusal {
    /// The connection is gone; the set replaces it.
    Closed,
    /// A cancel is settling; wait on [`Link::unfenced`] or go elsewhere.
    Fenced,
    /// As many statements in flight as allowed.
    Full,
}

impl Link {
    pub(super) fn new(client: Client, server: Arc<CancelTarget>) -> Self {
        Self {
            cancel: client.cancel_token(),
            client,
            statements: Mutex::new(HashMap::new()),
            state: Mutex::new(State::default()),
            sending: Mutex::new(()),
            unfenced: Notify::new(),
            broken: AtomicBool::new(false),
            server,
            opened: Instant::now(),
        }
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the connection can no longer be used.
    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
            || self.broken.load(Ordering::Relaxed)
            || self.server.failover.is_stale(self.opened)
    }

    pub(super) fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// Counts one more statement in flight, unless the link is closed, fenced or full.
    pub(super) fn admit(&self, max_in_flight: usize) -> Result<(), Refusal> {
        if self.is_closed() {
            return Err(Refusal::Closed);
        }
        let mut state = self.lock();
        if state.fenced || state.draining {
            return Err(Refusal::Fenced);
        }
        if state.in_flight >= max_in_flight {
            return Err(Refusal::Full);
        }
        state.in_flight += 1;
        Ok(())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot, for metrics.
    pub(super) fn state(&self) -> State {
        *self.lock()
    }

    /// Runs `work`, a request on this connection, with its first poll — where
    /// tokio-postgres hands the request's messages to the connection — under
    /// [`sending`](Self::sending). Every request on a shared connection goes through here
    /// (or through an owner scope's unit, which holds the same lock), so none can split a
    /// scope.
    pub(super) async fn send<F: Future>(&self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        let mut first = true;
        std::future::poll_fn(|cx| {
            if std::mem::take(&mut first) {
                let _held = self.sending.lock().unwrap_or_else(|p| p.into_inner());
                return work.as_mut().poll(cx);
            }
            work.as_mut().poll(cx)
        })
        .await
    }

    /// `sql`, prepared on this connection the first time it is asked for.
    pub(super) async fn prepare(&self, sql: &str) -> Result<Statement, DbError> {
        if let Some(statement) = self.cached(sql) {
            return Ok(statement);
        }
        // Boxed: once per text and connection, and a statement's future would otherwise
        // carry room for tokio-postgres's prepare (its type look-ups) on every call.
        Box::pin(self.prepare_new(sql)).await
    }

    async fn prepare_new(&self, sql: &str) -> Result<Statement, DbError> {
        // Two callers may prepare the same text at once; both statements are valid and the
        // cache keeps one. Not worth a lock across the round trip.
        let statement = self.send(self.client.prepare(sql)).await?;
        self.statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sql.into())
            .or_insert_with(|| statement.clone());
        Ok(statement)
    }

    fn cached(&self, sql: &str) -> Option<Statement> {
        self.statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
            .cloned()
    }
}
