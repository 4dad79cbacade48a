//! [`Link`]: one long-lived shared connection — its client, its statement cache, and the
//! count of statements in flight on it with the fence that [`super::fence`] raises.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
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
    statements: Mutex<HashMap<Box<str>, Statement, BuildHasherDefault<TextHasher>>>,
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
            statements: Mutex::new(HashMap::default()),
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

/// The statement cache's hasher: every statement on a shared connection looks its SQL text
/// up, and SipHash (the standard map's, built to resist keys chosen by an attacker) cost as
/// much as the rest of the look-up. The keys here are the application's own SQL texts, not
/// input: a multiply-rotate over 8-byte words (as rustc's FxHasher) spreads them well enough.
#[derive(Default)]
pub(super) struct TextHasher(u64);

impl TextHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for TextHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            self.add(u64::from_le_bytes(le));
        }
        let mut tail = [0u8; 8];
        let rest = words.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 59));
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    /// Texts that differ anywhere — in a full word, in the tail, only in length — hash apart.
    #[test]
    fn text_hasher_tells_texts_apart() {
        let texts = [
            "SELECT id, randomnumber FROM world WHERE id = $1",
            "SELECT id, randomnumber FROM world WHERE id = $2",
            "SELECT id, message FROM fortune",
            "SELECT id, message FROM fortunes",
            "SELECT 1",
            "SELECT 1 ",
            "",
        ];
        let hasher = BuildHasherDefault::<TextHasher>::default();
        let hashes: std::collections::HashSet<u64> =
            texts.iter().map(|t| hasher.hash_one(t)).collect();
        assert_eq!(hashes.len(), texts.len());
    }
}
