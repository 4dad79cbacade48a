//! Failover awareness: connections to a server that is no longer the primary are found and
//! dropped.
//!
//! When the primary fails over (Patroni promotes the standby, HAProxy or a multi-host
//! `DATABASE_URL` with `target_session_attrs=read-write` now leads new connections to the
//! new primary), the connections already open are the problem: they still lead to the old
//! server, which is gone (the connection is closed) or now a standby (a write fails with
//! SQLSTATE `25006`, read-only transaction). Either error, seen on any connection, is a
//! sign that every connection opened *before* it may lead to the wrong server. So each one
//! [marks](mark) the moment, and every connection opened before the latest mark is thrown
//! away instead of reused — the pool's (a `pre_recycle` hook in [`super::Db`]) and the
//! shared path's (a link opened earlier counts as closed) — and the next request opens a
//! new one, to wherever the primary is now. Connections opened after the mark are kept.
//!
//! The marks are process-wide: a failover concerns every pool of the process, and costs a
//! pool at most one reconnect per connection. They are also counted, for `/metrics`
//! (`pgbridge_db_read_only_errors_total`, `pgbridge_db_connections_lost_total`) and for
//! `/readyz`, which says when the last one happened.
//!
//! ```
//! use std::time::Instant;
//! use pgbridge::db::failover;
//!
//! let opened = Instant::now();
//! failover::mark(failover::Sign::ReadOnly);
//! assert!(failover::is_stale(opened));
//! assert!(failover::counts().read_only >= 1);
//! ```

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// A statement failed with SQLSTATE `25006`: the server is read-only (a standby now,
    /// or `default_transaction_read_only` is on).
    ReadOnly,
    /// The server closed the connection, or it broke on the wire.
    ConnectionLost,
}

/// How many of each sign this process has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Statements refused with `25006`.
    pub read_only: u64,
    /// Connections found closed or broken.
    pub lost: u64,
}

static READ_ONLY: AtomicU64 = AtomicU64::new(0);
static LOST: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds from [`base`] to the latest mark, plus one (0: never marked).
static MARKED_AT: AtomicU64 = AtomicU64::new(0);
/// The [`Sign`] of the latest mark: 1 read-only, 2 lost.
static LAST_SIGN: AtomicU64 = AtomicU64::new(0);

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn since_base(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base()).as_nanos()).unwrap_or(u64::MAX)
}

/// Records `sign` now: every connection opened before this moment is [stale](is_stale).
pub fn mark(sign: Sign) {
    let (counter, code) = match sign {
        Sign::ReadOnly => (&READ_ONLY, 1),
        Sign::ConnectionLost => (&LOST, 2),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    LAST_SIGN.store(code, Ordering::Relaxed);
    MARKED_AT.fetch_max(
        since_base(Instant::now()).saturating_add(1),
        Ordering::AcqRel,
    );
}

/// Whether a connection opened at `opened` predates the latest mark, and must not be
/// reused.
pub fn is_stale(opened: Instant) -> bool {
    let marked = MARKED_AT.load(Ordering::Acquire);
    marked != 0 && since_base(opened) < marked
}

/// The signs seen so far.
pub fn counts() -> Counts {
    Counts {
        read_only: READ_ONLY.load(Ordering::Relaxed),
        lost: LOST.load(Ordering::Relaxed),
    }
}

/// The latest sign and how long ago it was seen, if any.
///
/// ```
/// use pgbridge::db::failover;
///
/// failover::mark(failover::Sign::ConnectionLost);
/// let (sign, ago) = failover::last().expect("just marked");
/// assert!(ago < std::time::Duration::from_secs(60));
/// # let _ = sign;
/// ```
pub fn last() -> Option<(Sign, Duration)> {
    let marked = MARKED_AT.load(Ordering::Acquire);
    if marked == 0 {
        return None;
    }
    let at = base() + Duration::from_nanos(marked - 1);
    let sign = match LAST_SIGN.load(Ordering::Relaxed) {
        1 => Sign::ReadOnly,
        _ => Sign::ConnectionLost,
    };
    Some((sign, at.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_opened_after_the_mark_is_kept() {
        mark(Sign::ConnectionLost);
        std::thread::sleep(Duration::from_millis(2));
        let opened = Instant::now();
        assert!(!is_stale(opened));
    }

    #[test]
    fn a_connection_opened_before_the_mark_is_stale() {
        let opened = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let before = counts().read_only;
        mark(Sign::ReadOnly);
        assert!(is_stale(opened));
        assert!(counts().read_only > before);
    }
}
