//! The connection set: a fixed number of slots, each holding one [`Link`] or none, opened
//! lazily, replaced when closed, and chosen round-robin among those that admit a statement.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::Unnamed;
use super::fence::Ticket;
use super::link::{Link, Refusal};
use crate::db::DbError;
use crate::db::cancel::CancelTarget;
use crate::db::connect::PgConnect;

/// After a failed connect, a slot answers with that failure for this long instead of
/// trying again, so that a Postgres outage costs each request nothing but a lookup — unless
/// the server has answered the same `Db` since
/// ([`Marks::answered_since`](crate::db::failover::Marks::answered_since)).
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// The slots and what opening a connection needs.
pub(super) struct Set {
    slots: Box<[Slot]>,
    next: AtomicUsize,
    pg: PgConnect,
    server: Arc<CancelTarget>,
    pub(super) max_in_flight: usize,
    /// Room for `slots × max_in_flight` statements; a statement holds a permit while it
    /// runs, and waits for one (a bounded queue) when all are taken.
    room: Arc<Semaphore>,
    /// Statements waiting for room now, and the most that may.
    queued: AtomicUsize,
    max_queued: usize,
    /// How long a statement waits for room, or for a fence to come down, before it gets 503.
    wait: Duration,
    connect_timeout: Duration,
    pub(super) rejected: AtomicU64,
    /// Transaction-pooler mode: statements unnamed, timed by the client.
    pub(super) unnamed: Option<Unnamed>,
}

#[derive(Default)]
pub(super) struct Slot {
    pub(super) link: RwLock<Option<Arc<Link>>>,
    /// Held while (re)connecting, so that one task connects per slot.
    connecting: tokio::sync::Mutex<()>,
    reconnect_spawned: AtomicBool,
    last_failure: Mutex<Option<(Instant, String)>>,
}

impl Slot {
    pub(super) fn current(&self) -> Option<Arc<Link>> {
        self.link.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Opens one shared connection: the only place the shared path connects to Postgres, with
/// the pool's settings and TLS ([`PgConnect`]).
async fn open(
    pg: &PgConnect,
    server: Arc<CancelTarget>,
    timeout: Duration,
) -> Result<Arc<Link>, DbError> {
    // One empty query before the link takes statements. Directly, the start-up exchange
    // already proved the server; through a transaction pooler it proved only the pooler,
    // which may accept a client and then fail its first query (PgBouncer after a failed
    // server login refuses every query for `server_login_retry`). Without the probe such a
    // link counted as a successful connect, failed the statement it took, and the next
    // statement connected again: thousands of connects a second, none of them backed off.
    // Start-up and probe together within the one connect timeout.
    let connected = async {
        let (client, connection) = pg.connect().await?;
        crate::db::connect::drive(connection, &CLOSED_LOG, "shared");
        client.simple_query("").await?;
        Ok::<_, DbError>(client)
    };
    let client = tokio::time::timeout(timeout, connected)
        .await
        .map_err(|_| DbError::Unavailable(format!("connect: no answer within {timeout:?}")))??;
    Ok(Arc::new(Link::new(client, server)))
}

/// "Shared Postgres connection closed" at most once per [`INTERVAL`](crate::unavailable_log::INTERVAL)
/// with the count left out: while Postgres (or the pooler in front of it) refuses, each
/// slot's retry would log one.
static CLOSED_LOG: crate::unavailable_log::RateLimit =
    crate::unavailable_log::RateLimit::new(crate::unavailable_log::INTERVAL);

impl Set {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        size: usize,
        max_in_flight: usize,
        max_queued: usize,
        pg: PgConnect,
        server: Arc<CancelTarget>,
        wait: Duration,
        connect_timeout: Duration,
        unnamed: Option<Unnamed>,
    ) -> Self {
        let size = size.max(1);
        let max_in_flight = max_in_flight.max(1);
        Self {
            slots: (0..size).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            pg,
            server,
            max_in_flight,
            room: Arc::new(Semaphore::new(size.saturating_mul(max_in_flight))),
            queued: AtomicUsize::new(0),
            max_queued,
            wait,
            connect_timeout,
            rejected: AtomicU64::new(0),
            unnamed,
        }
    }

    pub(super) fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// A place for one statement: room first (waiting in a bounded queue when every link
    /// is full), then the next link round-robin that admits it; failing that, a link
    /// reconnected now; failing that, one whose fence comes down. 503 when the queue is
    /// full, the wait runs out, or Postgres cannot be reached.
    pub(super) async fn acquire(self: &Arc<Self>) -> Result<Ticket, DbError> {
        let (permit, waited_since) = self.room().await?;
        // The clock is read only off the fast path (room at once, a link admitting at
        // once): the wait counts from when the statement first had to wait.
        let mut deadline = waited_since.map(|since| since + self.wait);
        let mut tries = 0u32;
        loop {
            let n = self.slots.len();
            let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
            let mut dead = None;
            let mut fenced = None;
            for i in (start..n).chain(0..start) {
                let Some(link) = self.slots[i].current() else {
                    dead.get_or_insert(i);
                    continue;
                };
                match link.admit(self.max_in_flight) {
                    Ok(()) => {
                        if let Some(i) = dead {
                            self.spawn_reconnect(i);
                        }
                        return Ok(Ticket::new(link, permit));
                    }
                    Err(Refusal::Closed) => {
                        dead.get_or_insert(i);
                    }
                    Err(Refusal::Fenced) => fenced = Some(link),
                    Err(Refusal::Full) => {}
                }
            }
            if let Some(i) = dead {
                deadline.get_or_insert_with(|| Instant::now() + self.wait);
                // Boxed: connecting (TLS and the start-up exchange included) is a state
                // machine of kilobytes, and every statement's future would carry room for
                // it inline; a 256-client `/queries?queries=20` holds 5,000 of them.
                let link = Box::pin(self.connect(i)).await?;
                match link.admit(self.max_in_flight) {
                    Ok(()) => return Ok(Ticket::new(link, permit)),
                    Err(Refusal::Fenced) => fenced = Some(link),
                    Err(_) => {}
                }
            }
            let now = Instant::now();
            let deadline = *deadline.get_or_insert(now + self.wait);
            if now >= deadline {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(DbError::Unavailable(format!(
                    "shared connections full or fenced for {:?}",
                    self.wait
                )));
            }
            let Some(link) = fenced else {
                // Every link looked full. The permit says there is room: the links were
                // read one after another while statements came and went. Look again.
                tries += 1;
                if tries < 8 {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                continue;
            };
            // Short waits: a notification sent before we listen is not missed for long.
            let nap = (deadline - now).min(Duration::from_millis(5));
            let _ = tokio::time::timeout(nap, link.unfenced.notified()).await;
        }
    }

    /// A permit for one statement: at once if there is room, else after waiting in the
    /// bounded queue (then with the moment the wait began).
    async fn room(&self) -> Result<(OwnedSemaphorePermit, Option<Instant>), DbError> {
        match self.room.clone().try_acquire_owned() {
            Ok(permit) => return Ok((permit, None)),
            Err(TryAcquireError::NoPermits) => {}
            Err(TryAcquireError::Closed) => {
                return Err(DbError::Unavailable("shared connections closed".into()));
            }
        }
        let refused = |why: String| {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            Err(DbError::Unavailable(why))
        };
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return refused(format!(
                "shared pipeline saturated: {} statements in flight and {} waiting",
                self.slots.len() * self.max_in_flight,
                self.max_queued
            ));
        }
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _queued = Queued(&self.queued);
        let since = Instant::now();
        match tokio::time::timeout(self.wait, self.room.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok((permit, Some(since))),
            Ok(Err(_)) => refused("shared connections closed".into()),
            Err(_) => refused(format!(
                "shared pipeline saturated: no room within {:?}",
                self.wait
            )),
        }
    }

    /// Replaces a dead link in the background (a healthy neighbour took the statement).
    fn spawn_reconnect(self: &Arc<Self>, i: usize) {
        if self.slots[i].reconnect_spawned.swap(true, Ordering::AcqRel) {
            return;
        }
        let set = self.clone();
        tokio::spawn(async move {
            let _ = set.connect(i).await;
            set.slots[i]
                .reconnect_spawned
                .store(false, Ordering::Release);
        });
    }

    /// Slot `i`'s link, opened now if it is missing or closed.
    async fn connect(&self, i: usize) -> Result<Arc<Link>, DbError> {
        let slot = &self.slots[i];
        let _one_at_a_time = slot.connecting.lock().await;
        if let Some(link) = slot.current().filter(|l| !l.is_closed()) {
            return Ok(link);
        }
        if let Some((at, why)) = &*slot.last_failure.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < RETRY_AFTER
            // Unless the server has answered since (a readiness probe, a neighbour slot's
            // new connection): it is back, and `/readyz` may already say so.
            && !self.server.failover.answered_since(*at)
        {
            return Err(DbError::Unavailable(why.clone()));
        }
        match open(&self.pg, self.server.clone(), self.connect_timeout).await {
            Ok(link) => {
                self.server.failover.answered();
                *slot.link.write().unwrap_or_else(|p| p.into_inner()) = Some(link.clone());
                *slot.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(link)
            }
            Err(err) => {
                *slot.link.write().unwrap_or_else(|p| p.into_inner()) = None;
                *slot.last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), err.to_string()));
                Err(err)
            }
        }
    }
}
