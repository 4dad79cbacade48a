//! Who goes first at the connection cap: connections whose request a route marked as
//! *evictable* (anonymous and long-running: `src/bulkhead/`), oldest first.
//!
//! The server hands every request a [`Connection`] (a request extension). A route layer
//! that serves a long anonymous request calls [`Connection::evictable`] and holds the
//! guard for as long as the request runs; the accept loop, when it finds the cap reached,
//! asks [`Evictions::evict_for`] to close one such connection, so a client that sends a
//! short request is accepted instead of waiting behind a thousand sleepers. A newcomer whose
//! own address holds such requests displaces its own oldest one, not someone else's: a
//! flood that reconnects as fast as it is evicted churns only itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The connections that may be closed at the cap, in the order they were marked.
#[derive(Debug, Default)]
pub(crate) struct Evictions {
    marked: Mutex<Marked>,
    next: AtomicU64,
}

/// The marks, by age and by client address.
#[derive(Debug, Default)]
struct Marked {
    by_age: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
}

impl Marked {
    fn insert(&mut self, seq: u64, address: IpAddr, signal: Arc<Notify>) {
        self.by_age.insert(seq, (address, signal));
        self.by_address.entry(address).or_default().insert(seq);
    }

    fn remove(&mut self, seq: u64) -> Option<Arc<Notify>> {
        let (address, signal) = self.by_age.remove(&seq)?;
        if let Some(seqs) = self.by_address.get_mut(&address) {
            seqs.remove(&seq);
            if seqs.is_empty() {
                self.by_address.remove(&address);
            }
        }
        Some(signal)
    }
}

impl Evictions {
    /// Makes room for a client from `newcomer`: closes the oldest marked connection of
    /// that address if it has any, else the oldest of all. Its task is told to end, which
    /// drops its request (and cancels its queries). Returns whether one was told.
    pub(crate) fn evict_for(&self, newcomer: IpAddr) -> bool {
        let mut marked = self.lock();
        let own = marked
            .by_address
            .get(&newcomer)
            .and_then(|seqs| seqs.first().copied());
        let oldest = own.or_else(|| marked.by_age.first_key_value().map(|(seq, _)| *seq));
        match oldest.and_then(|seq| marked.remove(seq)) {
            Some(signal) => {
                signal.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Marked> {
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
    address: IpAddr,
    signal: Arc<Notify>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(evictions: Arc<Evictions>, address: IpAddr) -> Self {
        Self {
            evictions,
            address,
            signal: Arc::new(Notify::new()),
        }
    }

    /// A connection of no server (for tests and embedding): marking it does nothing
    /// anyone acts on.
    pub fn detached() -> Self {
        Self::new(Arc::default(), IpAddr::from([127, 0, 0, 1]))
    }

    /// Marks the connection as one to close first at the cap, until the guard drops.
    pub fn evictable(&self) -> Evictable {
        let seq = self.evictions.next.fetch_add(1, Ordering::Relaxed);
        self.evictions
            .lock()
            .insert(seq, self.address, self.signal.clone());
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
        self.evictions.lock().remove(self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn told(connection: &Connection) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(100), connection.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_oldest_mark_goes_first_and_unmarked_ones_never() {
        let evictions = Arc::new(Evictions::default());
        let flood = IpAddr::from([127, 0, 0, 2]);
        let (a, b, c) = (
            Connection::new(evictions.clone(), flood),
            Connection::new(evictions.clone(), flood),
            Connection::new(evictions.clone(), flood),
        );
        let _first = a.evictable();
        let second = b.evictable();
        let third = c.evictable();
        drop(second);
        let newcomer = IpAddr::from([127, 0, 0, 9]);
        assert!(evictions.evict_for(newcomer));
        assert!(told(&a).await, "the oldest is told");
        assert!(evictions.evict_for(newcomer));
        assert!(told(&c).await, "then the next one still marked");
        assert!(!told(&b).await, "an unmarked one never");
        drop(third);
        assert!(!evictions.evict_for(newcomer), "nothing marked is left");
        assert!(evictions.lock().by_address.is_empty());
    }

    #[tokio::test]
    async fn a_newcomer_with_marks_of_its_own_displaces_its_own() {
        let evictions = Arc::new(Evictions::default());
        let other = Connection::new(evictions.clone(), IpAddr::from([127, 0, 0, 3]));
        let flood = IpAddr::from([127, 0, 0, 2]);
        let own = Connection::new(evictions.clone(), flood);
        let _older = other.evictable();
        let _newer = own.evictable();
        assert!(evictions.evict_for(flood));
        assert!(told(&own).await);
        assert!(
            !told(&other).await,
            "the older request of another address stays"
        );
    }
}
