//! Cancel fencing: how a statement abandoned on a shared connection is dealt with without
//! ever cancelling a neighbour's.
//!
//! Postgres cancels whatever the backend runs *when the signal arrives*; on a pipelined
//! connection that may be another request's statement. So a [`Ticket`] (one statement's
//! place on a [`Link`]) dropped before its statement finished does one of two things,
//! decided under the link's lock:
//!
//! - **Others are in flight** on the link: it only stops counting itself. Its statement
//!   runs to completion and tokio-postgres discards the answer. A single statement on the
//!   shared path is short by contract (long ones belong on an exclusive connection), and
//!   `statement_timeout` bounds it anyway.
//! - **It is the sole statement in flight**: it raises the fence (no new statement is
//!   admitted on the link), sends a cancel and waits until Postgres has acted on it, then
//!   waits for a round trip on the link, which shows the backend idle; then it lowers the
//!   fence. Nothing of anyone else's can be running or queued on the backend while the
//!   signal is in flight: statements abandoned earlier have no owner to harm, and
//!   everything else waits behind the fence.
//!
//! If the round trip fails, the link is marked broken and the set replaces it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::OwnedSemaphorePermit;

use super::link::Link;
use crate::db::conn::{SETTLE_TIMEOUT, cancel_and_confirm, count_cancel};

/// Abandoned statements left to finish because others shared their connection.
static ABANDONED: AtomicU64 = AtomicU64::new(0);

/// How many abandoned shared statements were left to finish (not cancelled) because
/// other statements were in flight on the same connection.
pub fn abandoned_uncancelled() -> u64 {
    ABANDONED.load(Ordering::Relaxed)
}

/// One statement's place on a link. [`finish`](Self::finish) it when the statement's
/// answer has arrived (success or error); dropping it unfinished is an abandonment.
pub(super) struct Ticket {
    link: Arc<Link>,
    armed: bool,
    /// The statement's room in the set; released with the ticket.
    _room: OwnedSemaphorePermit,
}

impl Ticket {
    /// For a statement already counted by [`Link::admit`].
    pub(super) fn new(link: Arc<Link>, room: OwnedSemaphorePermit) -> Self {
        Self {
            link,
            armed: true,
            _room: room,
        }
    }

    pub(super) fn link(&self) -> &Link {
        &self.link
    }

    /// The statement completed: stop counting it.
    pub(super) fn finish(mut self) {
        self.armed = false;
        let mut state = self.link.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current().ok();
        {
            let mut state = self.link.lock();
            if state.in_flight > 1 || runtime.is_none() {
                state.in_flight = state.in_flight.saturating_sub(1);
                ABANDONED.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // Sole statement in flight: keep counting it until the cancel has settled.
            state.fenced = true;
        }
        let link = self.link.clone();
        if let Some(runtime) = runtime {
            runtime.spawn(settle(link));
        }
    }
}

/// Cancels the link's sole (abandoned) statement, waits for the backend to be idle, and
/// lowers the fence.
async fn settle(link: Arc<Link>) {
    count_cancel();
    if let Err(err) = cancel_and_confirm(&link.cancel, link.server.as_deref()).await {
        tracing::warn!(error = %err, "could not cancel an abandoned shared statement");
    }
    let idle = tokio::time::timeout(SETTLE_TIMEOUT, link.client().simple_query("")).await;
    if !matches!(idle, Ok(Ok(_))) {
        tracing::warn!("shared connection did not settle after a cancel; replacing it");
        link.mark_broken();
    }
    {
        let mut state = link.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.fenced = false;
    }
    link.unfenced.notify_waiters();
}
