//! `POOL_LAYOUT=steal`: the pool divided between the cores as with `percore` — each core
//! opens, drives and normally uses its own share — but a core whose share has no idle
//! connection takes one from another core's share before it queues (see
//! [`PoolShares::conn`]), so the cores' queues cannot drift far apart while the common case
//! stays on one core.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{FutureExt, select_ok};
use pgbridge::db::{Conn, Db, DbError};

/// Every core's share of the pool, and which one is this core's: attached to each core's
/// `Db` under `POOL_LAYOUT=steal`.
#[derive(Clone)]
pub(crate) struct PoolShares {
    shares: Arc<[Db]>,
    own: usize,
    wait: Wait,
}

/// How a core that found no idle connection anywhere waits for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// On its own share's queue only.
    Own,
    /// On the share whose queue is shortest, its own unless another's is shorter by more
    /// than `margin` waiters.
    Shortest { margin: usize },
    /// On its own share's queue for `patience`, then on every share's at once (the first
    /// connection any of them frees).
    Bounded { patience: Duration },
    /// On every share's queue at once from the start.
    Any,
}

impl Wait {
    /// From `STEAL_WAIT` (`own`, `shortest`, `any`, or a patience in milliseconds) and
    /// `STEAL_MARGIN`; `None` for a value it does not know.
    pub(crate) fn parse(wait: &str, margin: usize) -> Option<Self> {
        match wait {
            "own" => Some(Self::Own),
            "shortest" => Some(Self::Shortest { margin }),
            "any" => Some(Self::Any),
            ms => ms.parse().ok().map(|ms| Self::Bounded {
                patience: Duration::from_millis(ms),
            }),
        }
    }
}

impl PoolShares {
    /// Core `own`'s view of `shares` (one `Db` per core, each with its share of the pool).
    pub(crate) fn new(shares: Arc<[Db]>, own: usize, wait: Wait) -> Self {
        assert!(own < shares.len(), "core {own} has no share");
        Self { shares, own, wait }
    }

    /// An exclusive connection: an idle one from this core's share if there is one; else an
    /// idle one from another core's share (taken without waiting, beginning with the next
    /// core's, so that stealers spread out); else the first this core's share frees —
    /// or, by [`Wait`], another's. A stolen connection keeps its driver on the core that
    /// opened it and goes back to that core's share when dropped.
    pub(crate) async fn conn(&self) -> Result<Conn, DbError> {
        let own = &self.shares[self.own];
        if let Some(conn) = own.try_conn().await? {
            return Ok(conn);
        }
        for other in self.others() {
            // Only where a connection is idle: a free slot without one would open a
            // connection driven by this core for the other core's share.
            if other.status().available == 0 {
                continue;
            }
            match other.try_conn().await {
                Ok(Some(conn)) => return Ok(conn),
                Ok(None) => {}
                Err(err) => tracing::debug!(error = %err, "stealing a connection"),
            }
        }
        match self.wait {
            Wait::Own => own.conn().await,
            Wait::Shortest { margin } => {
                let waiting: Vec<usize> = self.shares.iter().map(|s| s.status().waiting).collect();
                self.shares[shortest(self.own, &waiting, margin)]
                    .conn()
                    .await
            }
            Wait::Any => self.first_freed(own.conn().boxed()).await,
            Wait::Bounded { patience } => {
                let mut mine = own.conn().boxed();
                match tokio::time::timeout(patience, &mut mine).await {
                    Ok(result) => result,
                    Err(_) => self.first_freed(mine).await,
                }
            }
        }
    }

    /// The first connection freed by any share: `mine` (this core's wait, already queued)
    /// or a new wait on each other share; the first error only if every wait fails.
    async fn first_freed(
        &self,
        mine: futures_util::future::BoxFuture<'_, Result<Conn, DbError>>,
    ) -> Result<Conn, DbError> {
        let waits = std::iter::once(mine).chain(self.others().map(|other| other.conn().boxed()));
        select_ok(waits).await.map(|(conn, _)| conn)
    }

    /// The other cores' shares, from the next core's on.
    fn others(&self) -> impl Iterator<Item = &Db> {
        let n = self.shares.len();
        (1..n).map(move |step| &self.shares[(self.own + step) % n])
    }
}

/// Which share to queue on, given each share's number of waiters: `own`, unless another's
/// queue is shorter by more than `margin` (then the shortest, the lowest index on a tie).
pub(crate) fn shortest(own: usize, waiting: &[usize], margin: usize) -> usize {
    let (best, fewest) = waiting
        .iter()
        .copied()
        .enumerate()
        .min_by_key(|&(i, w)| (w, i))
        .unwrap_or((own, 0));
    if fewest + margin < waiting.get(own).copied().unwrap_or(0) {
        best
    } else {
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_on_its_own_queue_unless_another_is_shorter_by_more_than_the_margin() {
        assert_eq!(shortest(0, &[10, 10], 4), 0);
        assert_eq!(shortest(0, &[14, 10], 4), 0);
        assert_eq!(shortest(0, &[15, 10], 4), 1);
        assert_eq!(shortest(1, &[0, 30], 0), 0);
        assert_eq!(shortest(2, &[9, 3, 20], 2), 1);
    }

    #[test]
    fn parses_the_wait_setting() {
        assert_eq!(Wait::parse("own", 4), Some(Wait::Own));
        assert_eq!(Wait::parse("any", 4), Some(Wait::Any));
        assert_eq!(
            Wait::parse("shortest", 4),
            Some(Wait::Shortest { margin: 4 })
        );
        assert_eq!(
            Wait::parse("20", 4),
            Some(Wait::Bounded {
                patience: Duration::from_millis(20)
            })
        );
        assert_eq!(Wait::parse("soon", 4), None);
    }
}
