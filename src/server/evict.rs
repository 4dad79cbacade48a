//! Who goes first at the connection cap: connections whose request a route marked as
//! *evictable* (anonymous and long-running: `src/bulkhead/`), oldest first.
//!
//! The server hands every request a [`Connection`] (a request extension). A route layer
//! that serves a long anonymous request calls [`Connection::evictable`] and holds the
//! guard for as long as the request runs; the accept loop, when it finds the cap reached,
//! asks [`Evictions::evict_oldest`] to close one such connection, so a client that sends a
//! short request is accepted instead of waiting behind a thousand sleepers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The connections that may be closed at the cap, in the order they were marked.
#[derive(Debug, Default)]
pub(crate) struct Evictions {
    marked: Mutex<BTreeMap<u64, Arc<Notify>>>,
    next: AtomicU64,
}

impl Evictions {
    /// Closes the connection marked longest ago, if any: its task is told to end, which
    /// drops its request (and cancels its queries). Returns whether one was told.
    pub(crate) fn evict_oldest(&self) -> bool {
        let oldest = self.lock().pop_first();
        match oldest {
            Some((_, signal)) => {
                signal.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Notify>>> {
        self.marked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The client connection a request arrived on, as a request extension: routes mark it as
/// [evictable](Self::evictable) while they serve a request that may be dropped first when
/// the server is at its connection cap.
///
/// ```
/// use pgbridge::server::Connection;
///
/// let connection = Connection::detached();
/// let guard = connection.evictable();
/// // … serve the long anonymous request …
/// drop(guard);
/// ```
#[derive(Clone)]
pub struct Connection {
    evictions: Arc<Evictions>,
    signal: Arc<Notify>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(evictions: Arc<Evictions>) -> Self {
        Self {
            evictions,
            signal: Arc::new(Notify::new()),
        }
    }

    /// A connection of no server (for tests and embedding): marking it does nothing
    /// anyone acts on.
    pub fn detached() -> Self {
        Self::new(Arc::default())
    }

    /// Marks the connection as one to close first at the cap, until the guard drops.
    pub fn evictable(&self) -> Evictable {
        let seq = self.evictions.next.fetch_add(1, Ordering::Relaxed);
        self.evictions.lock().insert(seq, self.signal.clone());
        Evictable {
            evictions: self.evictions.clone(),
            seq,
        }
    }

    /// Resolves once the accept loop chose this connection to close.
    pub(crate) async fn evicted(&self) {
        self.signal.notified().await;
    }
}

/// The mark of [`Connection::evictable`]; dropping it unmarks the connection.
pub struct Evictable {
    evictions: Arc<Evictions>,
    seq: u64,
}

impl fmt::Debug for Evictable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evictable").field("seq", &self.seq).finish()
    }
}

impl Drop for Evictable {
    fn drop(&mut self) {
        self.evictions.lock().remove(&self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_mark_goes_first_and_unmarked_ones_never() {
        let evictions = Arc::new(Evictions::default());
        let (a, b, c) = (
            Connection::new(evictions.clone()),
            Connection::new(evictions.clone()),
            Connection::new(evictions.clone()),
        );
        let _first = a.evictable();
        let second = b.evictable();
        let third = c.evictable();
        drop(second);
        assert!(evictions.evict_oldest());
        tokio::time::timeout(std::time::Duration::from_secs(1), a.evicted())
            .await
            .expect("the oldest is told");
        assert!(evictions.evict_oldest());
        tokio::time::timeout(std::time::Duration::from_secs(1), c.evicted())
            .await
            .expect("then the next one still marked");
        drop(third);
        assert!(!evictions.evict_oldest(), "nothing marked is left");
    }
}
