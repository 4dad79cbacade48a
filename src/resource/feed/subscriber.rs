//! One client's stream: a replay from the table a page at a time, then live notices.
//!
//! The stream is lazy: nothing is read or rendered until the response body is polled, and
//! the body is polled only when the connection has room for more. So a replay reads its
//! next page only after the client has drained the previous one, holding a pool connection
//! for one query at a time and at most a page of events in memory.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{broadcast, watch};

use crate::auth::{self, Principal};
use crate::db::listener::Notice;
use crate::db::{Db, DbError};

use super::limits::{Slot, Streams};
use super::replay::{self, Page};
use super::{Broadcast, Event, FeedSpec};

/// One client's subscription. Dropped with the response body, which frees it.
pub(super) struct Subscriber {
    pub(super) rx: broadcast::Receiver<Notice<Broadcast>>,
    /// Marked changed at the start if the listener had already stopped ([`Self::is_stopped`]).
    pub(super) stopped: watch::Receiver<bool>,
    pub(super) heartbeat: tokio::time::Interval,
    pub(super) db: Db,
    /// Which resource's events.
    pub(super) spec: &'static FeedSpec,
    /// Whose events this stream carries; its session is re-checked on every heartbeat.
    pub(super) principal: Principal,
    /// Only this item's events, if given (`?{noun}=ID`).
    pub(super) item: Option<i64>,
    /// The id of the last event sent (or skipped as before the stream began).
    pub(super) last_id: i64,
    /// Events read from the table and not yet sent (at most a page).
    pub(super) page: VecDeque<Event>,
    /// A frame to send before anything else (the reset event).
    pub(super) pending: Option<Bytes>,
    pub(super) streams: Arc<Streams>,
    pub(super) slot: Arc<Slot>,
    pub(super) page_size: i64,
    /// Heartbeats in a row whose session check failed for a database error.
    pub(super) failed_checks: u8,
}

/// Heartbeats in a row whose session check may fail for a database error (not for a
/// revoked session: that ends the stream at once) before the stream ends. One failure is
/// ridden out: a check that finds the shared connections saturated, or the session cache's
/// lease lapsed under load, would otherwise close every stream of the process at once, and
/// every client would reconnect into the same load.
const MAX_FAILED_CHECKS: u8 = 2;

enum Woke {
    Notice(Result<Notice<Broadcast>, broadcast::error::RecvError>),
    Heartbeat,
}

/// Whether a stream goes on after its heartbeat's session check: not if the session is
/// gone, nor after [`MAX_FAILED_CHECKS`] database errors in a row (`failed` counts them).
fn keep_after_check(failed: &mut u8, checked: Result<bool, DbError>) -> bool {
    match checked {
        Ok(live) => {
            *failed = 0;
            live
        }
        Err(err) => {
            *failed = failed.saturating_add(1);
            if *failed >= MAX_FAILED_CHECKS {
                tracing::warn!(
                    error = %err,
                    checks = *failed,
                    "event stream's session could not be checked; closing it"
                );
                return false;
            }
            tracing::debug!(
                error = %err,
                "event stream's session check failed; checking again at the next heartbeat"
            );
            true
        }
    }
}

impl Subscriber {
    /// The next SSE frame, or `None` to end the stream (shutdown, dropped for not reading,
    /// or the database is unreachable for a catch-up: the client reconnects with
    /// `Last-Event-ID`).
    pub(super) async fn next_frame(&mut self) -> Option<Bytes> {
        self.slot.polled();
        let frame = self.produce().await?;
        self.slot.handed_over();
        Some(frame)
    }

    /// Whether the listener was stopped. An atomic load while it was not: the stream
    /// learns of a stop from the broadcast ([`Notice::Stopped`]), or here after lagging
    /// past that notice, rather than registering with the process-wide `stopped` watch (a
    /// lock shared by every stream) on every event.
    fn is_stopped(&mut self) -> bool {
        !matches!(self.stopped.has_changed(), Ok(false)) && *self.stopped.borrow_and_update()
    }

    async fn produce(&mut self) -> Option<Bytes> {
        loop {
            if self.slot.is_dropped() || self.is_stopped() {
                return None;
            }
            if let Some(frame) = self.pending.take() {
                return Some(frame);
            }
            if let Some(event) = self.page.pop_front() {
                self.last_id = event.id;
                return Some(event.frame());
            }
            if self.slot.is_catching_up() {
                let mut stopped = self.stopped.clone();
                let read = tokio::select! {
                    biased;
                    _ = stopped.wait_for(|stop| *stop) => return None,
                    // Boxed: an idle stream then carries no room for a query's state.
                    read = Box::pin(self.read_page()) => read,
                };
                if let Err(err) = read {
                    tracing::warn!(error = %err, "event stream could not catch up; closing it");
                    return None;
                }
                continue;
            }
            let woke = tokio::select! {
                biased;
                notice = self.rx.recv() => Woke::Notice(notice),
                _ = self.heartbeat.tick() => Woke::Heartbeat,
            };
            match woke {
                Woke::Heartbeat => {
                    // A token revoked (or expired) while its stream is open ends the
                    // stream within one heartbeat interval; a check the database could
                    // not answer, after MAX_FAILED_CHECKS in a row.
                    let checked = Box::pin(self.session_live()).await;
                    if !keep_after_check(&mut self.failed_checks, checked) {
                        return None;
                    }
                    return Some(Bytes::from_static(b": heartbeat\n\n"));
                }
                Woke::Notice(Ok(Notice::Event(live))) => {
                    if live.event.id > self.last_id && self.wanted(&live.event) {
                        self.last_id = live.event.id;
                        return Some(live.frame.clone());
                    }
                }
                Woke::Notice(Ok(Notice::Resync) | Err(broadcast::error::RecvError::Lagged(_))) => {
                    self.start_catch_up();
                }
                Woke::Notice(Ok(Notice::Stopped) | Err(broadcast::error::RecvError::Closed)) => {
                    return None;
                }
            }
        }
    }

    fn wanted(&self, event: &Event) -> bool {
        event.noun == self.spec.noun
            && event.owner_id == self.principal.account_id
            && self.item.is_none_or(|item| item == event.item_id)
    }

    /// Whether the stream's session still stands; an error when the database could not say.
    async fn session_live(&self) -> Result<bool, DbError> {
        auth::still_valid(self.db.shared(), &self.principal).await
    }

    /// Replays from the table, from `last_id`, before going live again.
    pub(super) fn start_catch_up(&mut self) {
        self.slot.set_catching_up(true);
    }

    /// Reads the next page after `last_id` (waiting for a turn among catch-ups); a short
    /// page ends the catch-up. A pool connection is held for this one query.
    pub(super) async fn read_page(&mut self) -> Result<(), DbError> {
        let found = {
            let _turn = self.streams.catch_up_query().await;
            replay::page(
                &self.db,
                self.spec,
                self.principal.account_id,
                self.last_id,
                self.item,
                self.page_size,
            )
            .await?
        };
        match found {
            Page::Events(events) => {
                if (events.len() as i64) < self.page_size {
                    self.slot.set_catching_up(false);
                }
                self.page.extend(events);
            }
            Page::Reset { latest } => {
                tracing::info!(
                    last_event_id = self.last_id,
                    latest,
                    "event stream asked for pruned events; sending reset"
                );
                self.slot.set_catching_up(false);
                self.last_id = latest;
                self.pending = Some(replay::reset_frame(latest));
            }
        }
        Ok(())
    }

    /// Starts the stream at the newest stored event of its owner, or at the pruning
    /// horizon if that is later (no `Last-Event-ID`).
    pub(super) async fn start_at_latest(&mut self) -> Result<(), DbError> {
        self.last_id = replay::latest(&self.db, self.spec, self.principal.account_id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Result<bool, DbError> {
        Err(DbError::Unavailable("shared connections full".into()))
    }

    #[test]
    fn a_revoked_session_ends_the_stream_at_once() {
        let mut failed = 0;
        assert!(!keep_after_check(&mut failed, Ok(false)));
    }

    #[test]
    fn one_failed_check_is_ridden_out_and_two_in_a_row_end_the_stream() {
        let mut failed = 0;
        assert!(keep_after_check(&mut failed, unavailable()));
        assert!(!keep_after_check(&mut failed, unavailable()));

        // A good check in between starts the count again.
        let mut failed = 0;
        assert!(keep_after_check(&mut failed, unavailable()));
        assert!(keep_after_check(&mut failed, Ok(true)));
        assert!(keep_after_check(&mut failed, unavailable()));
        // ... and a revocation found after a failure still ends it at once.
        assert!(!keep_after_check(&mut failed, Ok(false)));
    }
}
