//! [`ConnectionStats`]: counters for client connections, read by `/metrics`.

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
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
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

    pub(crate) fn on_open(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn on_close(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
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
