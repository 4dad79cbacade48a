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
//!
//! **Client-side statement timeout** (transaction-pooler mode, where no `statement_timeout`
//! startup option can be sent): a statement still running at its deadline [expires](Ticket::expire).
//! Its caller keeps waiting for the answer, and the link admits nothing new (*draining*).
//! Statements run in order on the backend, so the ones behind a long statement expire in
//! turn. Once every statement in flight on the link has expired, a cancel can only hit an
//! expired one: a reaper cancels whatever runs, again, until the link is empty; then it
//! admits statements again. The rule is the same as above — never a cancel while a
//! statement whose caller still wants its result could be running.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::link::{Link, State};
use crate::db::cancel::{SETTLE_TIMEOUT, cancel_and_confirm};

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
    /// Counted in the link's `expired`.
    expired: bool,
    /// The statement's room in the set; released with the ticket.
    _room: OwnedSemaphorePermit,
}

impl Ticket {
    /// For a statement already counted by [`Link::admit`].
    pub(super) fn new(link: Arc<Link>, room: OwnedSemaphorePermit) -> Self {
        Self {
            link,
            armed: true,
            expired: false,
            _room: room,
        }
    }

    pub(super) fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// The statement completed: stop counting it.
    pub(super) fn finish(mut self) {
        self.armed = false;
        let mut state = self.link.lock();
        leave(&mut self.expired, &mut state);
        let notify = after_change(&self.link, &mut state);
        drop(state);
        if notify {
            self.link.unfenced.notify_waiters();
        }
    }

    /// The statement ran past the client-side statement timeout; its caller waits on for
    /// the answer (normally the cancel's `57014`). See the module's documentation.
    pub(super) fn expire(&mut self) {
        let mut state = self.link.lock();
        if !self.expired {
            self.expired = true;
            state.expired += 1;
        }
        state.draining = true;
        let notify = after_change(&self.link, &mut state);
        drop(state);
        if notify {
            self.link.unfenced.notify_waiters();
        }
    }
}

/// Stops counting a statement (`expired`: whether it was counted as expired; cleared).
fn leave(expired: &mut bool, state: &mut State) {
    state.in_flight = state.in_flight.saturating_sub(1);
    if std::mem::take(expired) {
        state.expired = state.expired.saturating_sub(1);
    }
}

/// After a statement left or expired on a draining link: starts the reaper once every
/// statement in flight has expired, and ends the draining once none is left. Whether
/// waiters must be woken.
fn after_change(link: &Arc<Link>, state: &mut State) -> bool {
    if !state.draining || state.reaping {
        return false;
    }
    if state.in_flight == 0 {
        state.draining = false;
        return !state.fenced;
    }
    if state.expired >= state.in_flight
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        state.reaping = true;
        runtime.spawn(reap(link.clone()));
    }
    false
}

/// Cancels what the backend runs — every statement in flight has expired and nothing new
/// is admitted — until the link is empty; gives up on the connection after
/// [`SETTLE_TIMEOUT`].
async fn reap(link: Arc<Link>) {
    let started = Instant::now();
    loop {
        {
            let mut state = link.lock();
            if state.in_flight == 0 {
                state.reaping = false;
                state.draining = false;
                let fenced = state.fenced;
                drop(state);
                if !fenced {
                    link.unfenced.notify_waiters();
                }
                return;
            }
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            tracing::warn!(
                "expired shared statements did not answer their cancels; replacing the connection"
            );
            link.mark_broken();
            let mut state = link.lock();
            state.reaping = false;
            return;
        }
        link.server.sent.add_one();
        if let Err(err) = cancel_and_confirm(&link.cancel, &link.server).await {
            tracing::warn!(error = %err, "could not cancel an expired shared statement");
        }
        // Let the cancelled statement's answer reach its caller and the next one start.
        tokio::time::sleep(Duration::from_millis(20)).await;
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
                if !self.expired {
                    ABANDONED.fetch_add(1, Ordering::Relaxed);
                }
                leave(&mut self.expired, &mut state);
                let notify = after_change(&self.link, &mut state);
                drop(state);
                if notify {
                    self.link.unfenced.notify_waiters();
                }
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
    link.server.sent.add_one();
    if let Err(err) = cancel_and_confirm(&link.cancel, &link.server).await {
        tracing::warn!(error = %err, "could not cancel an abandoned shared statement");
    }
    let idle =
        tokio::time::timeout(SETTLE_TIMEOUT, link.send(link.client().simple_query(""))).await;
    if !matches!(idle, Ok(Ok(_))) {
        tracing::warn!("shared connection did not settle after a cancel; replacing it");
        link.mark_broken();
    }
    {
        let mut state = link.lock();
        state.in_flight = 0;
        state.expired = 0;
        state.fenced = false;
        // The sole statement is gone: a drain (if any) is over too, unless the reaper
        // still runs and ends it itself.
        if !state.reaping {
            state.draining = false;
        }
    }
    link.unfenced.notify_waiters();
}
