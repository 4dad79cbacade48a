//! [`ConnectionStats`]: counters for client connections, read by `/metrics`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedOut {
    /// The client started a request and did not finish its headers in time (slowloris).
    Header,
    /// No request in flight and no byte of a new one for the idle timeout.
    Idle,
}

/// Connection counters, shared by the accept loop and every connection task.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    cap_reached: AtomicU64,
    evicted: AtomicU64,
    address_refused: AtomicU64,
    malformed: AtomicU64,
    /// Connections open on each core, with one runtime per core (`RUNTIME=percore`): a
    /// connection stays on the core that accepted it, and which core accepts is the
    /// scheduler's choice, so the split is worth seeing.
    by_core: OnceLock<Box<[AtomicU64]>>,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections open now on each core, when the server runs one runtime per core (after
    /// [`count_by_core`](Self::count_by_core)); `None` otherwise.
    ///
    /// ```
    /// use pgbridge::server::ConnectionStats;
    ///
    /// let stats = ConnectionStats::default();
    /// assert_eq!(stats.open_by_core(), None);
    /// stats.count_by_core(2);
    /// assert_eq!(stats.open_by_core(), Some(vec![0, 0]));
    /// ```
    pub fn open_by_core(&self) -> Option<Vec<u64>> {
        let cores = self.by_core.get()?;
        Some(cores.iter().map(|n| n.load(Ordering::Relaxed)).collect())
    }

    /// Counts open connections per core from now on, for `cores` cores (numbered from 0, as
    /// the servers given to [`PerCore`](crate::server::PerCore) are). The first call sets the
    /// count; later ones change nothing.
    ///
    /// ```
    /// use pgbridge::server::ConnectionStats;
    ///
    /// let stats = ConnectionStats::default();
    /// stats.count_by_core(4);
    /// stats.count_by_core(8);
    /// assert_eq!(stats.open_by_core().map(|open| open.len()), Some(4));
    /// ```
    pub fn count_by_core(&self, cores: usize) {
        let _ = self
            .by_core
            .set((0..cores).map(|_| AtomicU64::new(0)).collect());
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Accepts that failed because the process or system ran out of file descriptors.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections closed by the server for `reason`.
    pub fn timed_out(&self, reason: TimedOut) -> u64 {
        match reason {
            TimedOut::Header => self.header_timeouts.load(Ordering::Relaxed),
            TimedOut::Idle => self.idle_timeouts.load(Ordering::Relaxed),
        }
    }

    /// Times the connection cap was reached (accepting paused).
    pub fn cap_reached(&self) -> u64 {
        self.cap_reached.load(Ordering::Relaxed)
    }

    /// Connections closed at the cap to make room: each was serving a long anonymous
    /// request (see [`crate::server::Connection::evictable`]).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Connections answered 429 and closed because their address had too many open.
    pub fn address_refused(&self) -> u64 {
        self.address_refused.load(Ordering::Relaxed)
    }

    /// Requests hyper could not parse (answered 400, 414 or 431 and closed).
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    pub(crate) fn on_evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn on_address_refused(&self) {
        self.address_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn on_malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection accepted, on `core` when the server is one of a runtime per core.
    pub(crate) fn on_open(&self, core: Option<usize>) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        if let Some(open) = self.core(core) {
            open.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A connection closed, on the `core` [`on_open`](Self::on_open) named.
    pub(crate) fn on_close(&self, core: Option<usize>) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(open) = self.core(core) {
            open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn core(&self, core: Option<usize>) -> Option<&AtomicU64> {
        self.by_core.get()?.get(core?)
    }

    pub(crate) fn on_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn on_timeout(&self, reason: TimedOut) {
        match reason {
            TimedOut::Header => self.header_timeouts.fetch_add(1, Ordering::Relaxed),
            TimedOut::Idle => self.idle_timeouts.fetch_add(1, Ordering::Relaxed),
        };
    }

    pub(crate) fn on_cap_reached(&self) {
        self.cap_reached.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_on_the_core_that_accepted_them() {
        let stats = ConnectionStats::default();
        stats.on_open(Some(0));
        assert_eq!(
            stats.open_by_core(),
            None,
            "not counted before count_by_core"
        );
        stats.count_by_core(2);
        stats.on_open(Some(1));
        stats.on_open(Some(1));
        stats.on_open(None);
        stats.on_open(Some(7)); // no such core: the total only
        assert_eq!(stats.open(), 5);
        assert_eq!(stats.open_by_core(), Some(vec![0, 2]));
        stats.on_close(Some(1));
        assert_eq!(stats.open(), 4);
        assert_eq!(stats.open_by_core(), Some(vec![0, 1]));
    }
}
