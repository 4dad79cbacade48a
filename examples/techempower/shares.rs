//! `POOL_LAYOUT=steal` (the default): the pool divided between the cores — each core opens,
//! drives and normally uses its own share — with a core that finds its share busy taking
//! a connection from another core's (see [`PoolShares::conn`]). With shares alone, the
//! cores' queues drift apart under load and one core's clients wait several times the
//! other's; with one pool for the process, every other request wakes the other core. Here
//! a request leaves its core only when its own queue has kept it waiting.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, select_ok};
use pgbridge::db::{Conn, Db, DbError};

/// Every core's share of the pool, and which one is this core's: attached to each core's
/// `Db` under `POOL_LAYOUT=steal`.
#[derive(Clone)]
pub(crate) struct PoolShares {
    shares: Arc<[Db]>,
    own: usize,
    patience: Duration,
}

impl PoolShares {
    /// Core `own`'s view of `shares` (one `Db` per core, each with its share of the pool);
    /// a request waits `patience` on its own share before it also queues on the others'.
    pub(crate) fn new(shares: Arc<[Db]>, own: usize, patience: Duration) -> Self {
        assert!(own < shares.len(), "core {own} has no share");
        Self {
            shares,
            own,
            patience,
        }
    }

    /// An exclusive connection: an idle one from this core's share if there is one; else an
    /// idle one from another core's share, taken without waiting (beginning with the next
    /// core's, so that stealers spread out); else the first one this core's share frees
    /// within `patience`, and after that the first one any share frees (this core's wait
    /// keeps its place in its queue). A stolen connection keeps its driver on the core that
    /// opened it and goes back to that core's share when dropped; it is a [`Conn`] like any
    /// other (cancel on drop, checked against failover signs before it is lent). Fails as
    /// [`Db::conn`] does: when this core's share cannot lend one (and, after `patience`,
    /// no other share can either) within the pool's wait timeout.
    pub(crate) async fn conn(&self) -> Result<Conn, DbError> {
        let own = &self.shares[self.own];
        if let Some(conn) = own.try_conn().await? {
            return Ok(conn);
        }
        for other in self.others() {
            // Only where a connection is idle: a free slot without one would open a
            // connection for the other core's share, driven by this core.
            if other.status().available == 0 {
                continue;
            }
            match other.try_conn().await {
                Ok(Some(conn)) => return Ok(conn),
                Ok(None) => {}
                Err(err) => tracing::debug!(error = %err, "no connection from another core"),
            }
        }
        let mut mine = own.conn().boxed();
        match tokio::time::timeout(self.patience, &mut mine).await {
            Ok(result) => result,
            Err(_) => self.first_freed(mine).await,
        }
    }

    /// The first connection any share frees: `mine` (this core's wait, already queued) or
    /// a new wait on each other share that has all its connections open (on one that has
    /// not, the wait could open one, driven by this core, for good); an error only if every
    /// wait fails.
    async fn first_freed(
        &self,
        mine: BoxFuture<'_, Result<Conn, DbError>>,
    ) -> Result<Conn, DbError> {
        let theirs = self
            .others()
            .filter(|other| {
                let status = other.status();
                status.size >= status.max_size
            })
            .map(|other| other.conn().boxed());
        select_ok(std::iter::once(mine).chain(theirs))
            .await
            .map(|(conn, _)| conn)
    }

    /// The other cores' shares, from the next core's on.
    fn others(&self) -> impl Iterator<Item = &Db> {
        others(self.own, self.shares.len()).map(|core| &self.shares[core])
    }
}

/// The cores other than `own` among `cores`, from the next one on, wrapping around.
fn others(own: usize, cores: usize) -> impl Iterator<Item = usize> {
    (1..cores).map(move |step| (own + step) % cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_core_looks_at_the_others_from_the_next_one_on() {
        assert_eq!(others(0, 1).count(), 0);
        assert_eq!(others(0, 2).collect::<Vec<_>>(), [1]);
        assert_eq!(others(2, 4).collect::<Vec<_>>(), [3, 0, 1]);
    }
}
