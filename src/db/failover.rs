//! Failover awareness: connections to a server that is no longer the primary are found and
//! dropped.
//!
//! When the primary fails over (Patroni promotes the standby, HAProxy or a multi-host
//! `DATABASE_URL` with `target_session_attrs=read-write` now leads new connections to the
//! new primary), the connections already open are the problem: they still lead to the old
//! server, which is gone (the connection is closed) or now a standby (a write fails with
//! SQLSTATE `25006`, read-only transaction). Either error, seen on any connection, is a
//! sign that every connection opened *before* it may lead to the wrong server. So each one
//! [marks](Marks::mark) the moment, and every connection opened before the latest mark is thrown
//! away instead of reused — the pool's (a `pre_recycle` hook in [`super::Db`]) and the
//! shared path's (a link opened earlier counts as closed) — and the next request opens a
//! new one, to wherever the primary is now. Connections opened after the mark are kept.
//!
//! The marks belong to one [`Db`](super::Db) (its pool and shared connections): another
//! pool, to another server, is not disturbed. A failover costs a pool at most one reconnect
//! per connection. The signs are also counted, for `/metrics`
//! (`pgbridge_db_read_only_errors_total`, `pgbridge_db_connections_lost_total`) and for
//! `/readyz`, which says when the last one happened.
//!
//! ```
//! use std::time::Instant;
//! use pgbridge::db::failover::{Marks, Sign};
//!
//! let marks = Marks::default();
//! let opened = Instant::now();
//! marks.mark(Sign::ReadOnly);
//! assert!(marks.is_stale(opened));
//! assert_eq!(marks.counts().read_only, 1);
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

/// One pool's failover signs: when the latest was seen, and how many of each.
#[derive(Debug, Default)]
pub struct Marks {
    read_only: AtomicU64,
    lost: AtomicU64,
    /// Nanoseconds from [`base`] to the latest mark, plus one (0: never marked).
    marked_at: AtomicU64,
    /// The [`Sign`] of the latest mark: 1 read-only, 2 lost.
    last_sign: AtomicU64,
    /// Nanoseconds from [`base`] to the latest [answer](Self::answered) of the server,
    /// plus one (0: none yet).
    answered_at: AtomicU64,
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn since_base(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base()).as_nanos()).unwrap_or(u64::MAX)
}

impl Marks {
    /// Records `sign` now: every connection opened before this moment is
    /// [stale](Self::is_stale).
    pub fn mark(&self, sign: Sign) {
        let (counter, code) = match sign {
            Sign::ReadOnly => (&self.read_only, 1),
            Sign::ConnectionLost => (&self.lost, 2),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.last_sign.store(code, Ordering::Relaxed);
        self.marked_at.fetch_max(
            since_base(Instant::now()).saturating_add(1),
            Ordering::AcqRel,
        );
    }

    /// Whether a connection opened at `opened` predates the latest mark, and must not be
    /// reused.
    pub fn is_stale(&self, opened: Instant) -> bool {
        let marked = self.marked_at.load(Ordering::Acquire);
        marked != 0 && since_base(opened) < marked
    }

    /// Records that the server answered now: a new shared connection's first query, or a
    /// readiness probe ([`Db::check_ready`](super::Db::check_ready), [`Db::ping`](super::Db::ping)).
    /// A path that saw the server down a moment ago (the shared path answers a failed
    /// connect from memory for a short while) asks [`answered_since`](Self::answered_since)
    /// and tries again at once, so that it does not refuse requests after `/readyz` has
    /// found the server back. (An answer, not a completed start-up: through a transaction
    /// pooler a start-up proves only the pooler.)
    ///
    /// ```
    /// use std::time::Instant;
    /// use pgbridge::db::failover::Marks;
    ///
    /// let marks = Marks::default();
    /// let failed = Instant::now();
    /// assert!(!marks.answered_since(failed));
    /// marks.answered();
    /// assert!(marks.answered_since(failed));
    /// ```
    pub fn answered(&self) {
        self.answered_at.fetch_max(
            since_base(Instant::now()).saturating_add(1),
            Ordering::AcqRel,
        );
    }

    /// Whether the server [answered](Self::answered) at or after `at`.
    pub fn answered_since(&self, at: Instant) -> bool {
        let answered = self.answered_at.load(Ordering::Acquire);
        answered != 0 && answered > since_base(at)
    }

    /// The signs seen so far.
    pub fn counts(&self) -> Counts {
        Counts {
            read_only: self.read_only.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }

    /// The latest sign and how long ago it was seen, if any.
    ///
    /// ```
    /// use pgbridge::db::failover::{Marks, Sign};
    ///
    /// let marks = Marks::default();
    /// assert!(marks.last().is_none());
    /// marks.mark(Sign::ConnectionLost);
    /// let (sign, ago) = marks.last().expect("just marked");
    /// assert_eq!(sign, Sign::ConnectionLost);
    /// assert!(ago < std::time::Duration::from_secs(60));
    /// ```
    pub fn last(&self) -> Option<(Sign, Duration)> {
        let marked = self.marked_at.load(Ordering::Acquire);
        if marked == 0 {
            return None;
        }
        let at = base() + Duration::from_nanos(marked - 1);
        let sign = match self.last_sign.load(Ordering::Relaxed) {
            1 => Sign::ReadOnly,
            _ => Sign::ConnectionLost,
        };
        Some((sign, at.elapsed()))
    }

    /// Marks the sign `result`'s error shows, if any; returns `result`.
    pub(crate) fn note<T>(&self, result: Result<T, super::DbError>) -> Result<T, super::DbError> {
        if let Err(err) = &result
            && let Some(sign) = err.failover_sign()
        {
            self.mark(sign);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_opened_after_the_mark_is_kept() {
        let marks = Marks::default();
        assert!(!marks.is_stale(Instant::now()), "nothing marked yet");
        marks.mark(Sign::ConnectionLost);
        std::thread::sleep(Duration::from_millis(2));
        assert!(!marks.is_stale(Instant::now()));
    }

    #[test]
    fn a_connection_opened_before_the_mark_is_stale() {
        let marks = Marks::default();
        let opened = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        marks.mark(Sign::ReadOnly);
        assert!(marks.is_stale(opened));
        assert_eq!(marks.counts().read_only, 1);
        assert_eq!(marks.counts().lost, 0);
    }

    #[test]
    fn only_failover_errors_are_signs() {
        let marks = Marks::default();
        let _ = marks.note::<()>(Err(super::super::DbError::Unavailable("pool full".into())));
        assert!(marks.last().is_none());
        let _ = marks.note::<()>(Err(super::super::DbError::ReadOnly("25006".into())));
        assert_eq!(marks.last().map(|(sign, _)| sign), Some(Sign::ReadOnly));
    }
}
