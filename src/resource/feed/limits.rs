//! What bounds the event streams: a cap on open streams, and on the open streams of one
//! account, a limit on concurrent catch-up queries, and a watchdog that drops streams whose clients stopped reading.
//!
//! A stream whose client does not drain its socket stops being polled once the kernel's
//! and hyper's buffers are full, so it cannot notice by itself: each stream has a [`Slot`]
//! that records when it last handed a frame over and has not been polled since, and one
//! sweeper task per process drops those that waited longer than the stall timeout. A
//! dropped stream gives its place back at once and ends when next polled; its client
//! reconnects with `Last-Event-ID` and loses nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::keyed_limit::{KeyedLimit, KeyedPermit};

/// The stream limits, from the configuration.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Most open streams.
    pub max_streams: usize,
    /// Most open streams of one account.
    pub max_per_account: usize,
    /// Most catch-up queries at once.
    pub max_catch_ups: usize,
    /// How long a stream may wait for its client to take a frame.
    pub stall_timeout: Duration,
}

/// The process's open streams and their counters (read by `/metrics`).
#[derive(Debug)]
pub struct Streams {
    limits: StreamLimits,
    open: Arc<Semaphore>,
    per_account: KeyedLimit<i64>,
    catch_up_queries: Semaphore,
    catching_up: Arc<AtomicUsize>,
    dropped: AtomicU64,
    slots: Mutex<Vec<Weak<Slot>>>,
}

impl Streams {
    /// Limits with no stream open.
    pub fn new(limits: StreamLimits) -> Self {
        Self {
            open: Arc::new(Semaphore::new(limits.max_streams.max(1))),
            per_account: KeyedLimit::new(limits.max_per_account.max(1)),
            catch_up_queries: Semaphore::new(limits.max_catch_ups.max(1)),
            catching_up: Arc::new(AtomicUsize::new(0)),
            dropped: AtomicU64::new(0),
            slots: Mutex::new(Vec::new()),
            limits,
        }
    }

    /// A place for one more stream of `account`, or why not.
    pub fn open(&self, account: i64) -> Result<Arc<Slot>, Full> {
        let mine = self.per_account.try_acquire(account).ok_or(Full::Account)?;
        let permit = Arc::clone(&self.open)
            .try_acquire_owned()
            .map_err(|_| Full::Process)?;
        let slot = Arc::new(Slot {
            permit: Mutex::new(Some((permit, mine))),
            waiting_since: AtomicU64::new(0),
            dropped: AtomicBool::new(false),
            catching_up: AtomicBool::new(false),
            catching_up_count: Arc::clone(&self.catching_up),
        });
        self.lock_slots().push(Arc::downgrade(&slot));
        Ok(slot)
    }

    /// The most open streams of one account.
    pub fn max_per_account(&self) -> usize {
        self.per_account.max()
    }

    /// Open streams of `account`.
    pub fn open_streams_of(&self, account: i64) -> usize {
        self.per_account.held(&account)
    }

    /// Waits for a turn to run one catch-up query.
    pub async fn catch_up_query(&self) -> Option<SemaphorePermit<'_>> {
        self.catch_up_queries.acquire().await.ok()
    }

    /// Open streams (not counting dropped ones whose sockets have not closed yet).
    pub fn open_streams(&self) -> usize {
        self.limits.max_streams.max(1) - self.open.available_permits()
    }

    /// Streams reading their backlog from the table now.
    pub fn catch_ups(&self) -> usize {
        self.catching_up.load(Ordering::Relaxed)
    }

    /// Streams dropped because their client stopped reading, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Drops every stream that has waited longer than the stall timeout; forgets closed
    /// ones. Returns how many it dropped.
    pub fn sweep(&self) -> usize {
        let now = now_ms();
        let limit = u64::try_from(self.limits.stall_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut stalled = Vec::new();
        self.lock_slots().retain(|weak| match weak.upgrade() {
            None => false,
            Some(slot) if slot.dropped.load(Ordering::Relaxed) => false,
            Some(slot) => {
                let since = slot.waiting_since.load(Ordering::Relaxed);
                if since != 0 && now.saturating_sub(since) > limit {
                    stalled.push(slot);
                    false
                } else {
                    true
                }
            }
        });
        for slot in &stalled {
            slot.drop_stream();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if !stalled.is_empty() {
            tracing::info!(
                dropped = stalled.len(),
                stall_timeout = ?self.limits.stall_timeout,
                "dropped event streams whose clients stopped reading"
            );
        }
        stalled.len()
    }

    /// Sweeps every quarter of the stall timeout (at most every second) while `streams`
    /// exists and `stopped` is false.
    pub async fn run_sweeper(streams: Weak<Self>, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let every = match streams.upgrade() {
            Some(streams) => (streams.limits.stall_timeout / 4)
                .clamp(Duration::from_millis(10), Duration::from_secs(1)),
            None => return,
        };
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            match streams.upgrade() {
                Some(streams) => {
                    streams.sweep();
                }
                None => return,
            }
        }
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why [`Streams::open`] refused a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The process has `EVENTS_MAX_STREAMS` open.
    Process,
    /// The account has `EVENTS_MAX_STREAMS_PER_ACCOUNT` open.
    Account,
}

/// One stream's place under the caps (the process's and its account's), and its stall
/// clock.
#[derive(Debug)]
pub struct Slot {
    permit: Mutex<Option<(OwnedSemaphorePermit, KeyedPermit<i64>)>>,
    /// Milliseconds (see [`now_ms`]) since the stream handed over a frame and was not
    /// polled again; 0 while it is being polled.
    waiting_since: AtomicU64,
    dropped: AtomicBool,
    /// Whether the stream is replaying from the table (counted in `catching_up_count`).
    catching_up: AtomicBool,
    catching_up_count: Arc<AtomicUsize>,
}

impl Slot {
    /// The stream is being polled for its next frame.
    pub fn polled(&self) {
        self.waiting_since.store(0, Ordering::Relaxed);
    }

    /// The stream handed a frame over and waits to be polled again.
    pub fn handed_over(&self) {
        self.waiting_since.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether the watchdog dropped this stream: it must end.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Marks the stream as replaying from the table, or not (for the gauge).
    pub fn set_catching_up(&self, catching_up: bool) {
        let was = self.catching_up.swap(catching_up, Ordering::Relaxed);
        match (was, catching_up) {
            (false, true) => self.catching_up_count.fetch_add(1, Ordering::Relaxed),
            (true, false) => self.catching_up_count.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Whether the stream is replaying from the table.
    pub fn is_catching_up(&self) -> bool {
        self.catching_up.load(Ordering::Relaxed)
    }

    /// Frees the stream's place and counts: a dropped stream is no longer open, nor
    /// catching up, though its socket may stay until the client reads or leaves.
    fn drop_stream(&self) {
        self.dropped.store(true, Ordering::Relaxed);
        self.set_catching_up(false);
        drop(self.permit.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.set_catching_up(false);
    }
}

/// Milliseconds since the first call, plus one (so that 0 can mean "not waiting").
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_cannot_take_the_cap() {
        let streams = Arc::new(Streams::new(StreamLimits {
            max_streams: 10,
            max_per_account: 2,
            max_catch_ups: 1,
            stall_timeout: Duration::from_secs(60),
        }));
        let first = streams.open(7).unwrap();
        let _second = streams.open(7).unwrap();
        assert_eq!(streams.open(7).unwrap_err(), Full::Account);
        assert!(streams.open(8).is_ok(), "another account is not affected");
        assert_eq!(streams.open_streams_of(7), 2);
        first.handed_over();
        drop(first);
        assert!(
            streams.open(7).is_ok(),
            "a closed stream frees its account's place"
        );
    }

    fn streams(max: usize, stall: Duration) -> Arc<Streams> {
        Arc::new(Streams::new(StreamLimits {
            max_streams: max,
            max_per_account: max,
            max_catch_ups: 1,
            stall_timeout: stall,
        }))
    }

    #[test]
    fn the_cap_holds_and_closing_frees_a_place() {
        let streams = streams(2, Duration::from_secs(60));
        let a = streams.open(1).unwrap();
        let _b = streams.open(1).unwrap();
        assert_eq!(streams.open(2).unwrap_err(), Full::Process);
        assert_eq!(streams.open_streams(), 2);
        drop(a);
        assert!(streams.open(1).is_ok());
    }

    #[test]
    fn only_a_stream_waiting_to_be_polled_is_dropped() {
        let streams = streams(2, Duration::from_millis(20));
        let stalled = streams.open(1).unwrap();
        let idle = streams.open(1).unwrap();
        stalled.handed_over();
        idle.handed_over();
        idle.polled();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(streams.sweep(), 1);
        assert!(stalled.is_dropped() && !idle.is_dropped());
        assert_eq!((streams.open_streams(), streams.dropped()), (1, 1));
        assert_eq!(streams.sweep(), 0);
    }

    #[test]
    fn catch_ups_are_counted_until_done_dropped_or_closed() {
        let streams = streams(3, Duration::from_millis(20));
        let (a, b, c) = (
            streams.open(1).unwrap(),
            streams.open(1).unwrap(),
            streams.open(1).unwrap(),
        );
        for slot in [&a, &b, &c] {
            slot.set_catching_up(true);
            slot.set_catching_up(true);
        }
        assert_eq!(streams.catch_ups(), 3);
        a.set_catching_up(false);
        drop(b);
        c.handed_over();
        std::thread::sleep(Duration::from_millis(60));
        streams.sweep();
        assert_eq!(streams.catch_ups(), 0);
        drop(c);
        assert_eq!(streams.catch_ups(), 0);
    }
}
