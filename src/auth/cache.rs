//! The session cache: live sessions remembered in the process for a moment, so that an
//! authenticated request skips its session lookup, and an open event stream's heartbeat
//! asks nobody.
//!
//! - **Bounded**: at most `SESSION_CACHE_SIZE` sessions (the oldest kept goes first), each
//!   for at most `SESSION_CACHE_TTL_SECS` and never past its session's expiry.
//! - **Revoked everywhere at once**: every change that ends a live session notifies the
//!   channel [`CHANNEL`] with its id (a trigger, migration
//!   `…_sessions_notify_revocations.sql`); each process hears it on its one `LISTEN`
//!   connection (a [`Tap`] on the notes feed's [`Listener`](crate::db::listener::Listener))
//!   and forgets the session. This process's own logouts forget it before answering.
//! - **Trusted only while listening**: while the `LISTEN` connection is down a revocation
//!   could be missed, so the cache answers nothing and keeps nothing (every request looks
//!   its session up, as without a cache) until the connection listens again; it starts
//!   empty then. A connection that dies without closing (or a listener task that stops
//!   being scheduled) is not seen as lost at once, so the cache also holds a **lease**:
//!   the connection is pinged every [`PING_EVERY`], and the cache answers only within
//!   [`LEASE`] of the sending of the last ping answered — an answer that arrives after
//!   every notification sent before it. So whatever fails, a revocation stops the token
//!   within [`LEASE`].
//! - **Only once the trigger is there**: a database whose migrations have not run yet
//!   sends no notice at all, so the cache answers nothing until it has seen the trigger
//!   ([`SessionCache::arm_when_triggered`]); till then every request asks Postgres.
//! - **No stale answer kept**: a lookup takes a [`Ticket`] before it asks Postgres; what it
//!   found is kept only if nothing was forgotten (and the connection did not drop) since,
//!   so an answer read before a revocation never outlives the revocation's notice.
//!
//! It only saves the lookup: a request it answers still runs in an owner scope (the owner
//! and the role set in the same round trip), and row-level security still confines it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::db::Queries;
use crate::db::listener::{Heard, Tap};
use crate::request::Principal;

/// The channel the sessions trigger notifies: a session's id, or `*` for all.
pub const CHANNEL: &str = "pgbridge_sessions";

/// A token's hash (SHA-256).
type Key = [u8; 32];

/// How long after a keep-alive round trip was sent its answer keeps the cache trusted: the
/// bound on a revocation under any failure of the `LISTEN` connection.
///
/// ```
/// assert!(pgbridge::auth::cache::LEASE <= std::time::Duration::from_secs(1));
/// ```
pub const LEASE: Duration = Duration::from_secs(1);

/// How often the cache asks for a keep-alive round trip on the `LISTEN` connection: a few
/// per [`LEASE`], so a late answer or two do not stop the cache from answering.
pub const PING_EVERY: Duration = Duration::from_millis(250);

/// Live sessions by token hash; see the [module](self).
///
/// ```
/// use std::time::Duration;
/// use pgbridge::auth::cache::SessionCache;
/// use pgbridge::auth::Principal;
/// use pgbridge::db::listener::Heard;
///
/// let cache = SessionCache::new(1000, Duration::from_secs(60));
/// let principal = Principal { account_id: 7, session_id: 42 };
/// let hash = [1_u8; 32];
/// cache.arm(); // the sessions trigger exists (see `arm_when_triggered`)
/// cache.hear(Heard::Listening); // trusted only while its LISTEN connection is up
/// let ticket = cache.ticket(); // before the lookup
/// cache.keep(&ticket, &hash, principal, Duration::from_secs(3600));
/// assert_eq!(cache.get(&hash), Some(principal));
/// cache.hear(Heard::Payload("42")); // the session was revoked, here or elsewhere
/// assert_eq!(cache.get(&hash), None);
/// ```
#[derive(Debug)]
pub struct SessionCache {
    capacity: usize,
    ttl: Duration,
    state: Mutex<State>,
    /// Whether the database has the trigger that sends the notices.
    armed: AtomicBool,
    /// Whether notices reach the cache (the `LISTEN` connection is up).
    listening: AtomicBool,
    /// The lease: nanoseconds after `born` until which the connection is known alive.
    alive_until: AtomicU64,
    born: Instant,
    /// Bumped (under the lock) by everything that forgets: a lookup that began before a
    /// bump may have read a session since revoked, and is not kept.
    epoch: AtomicU64,
    stats: Stats,
}

#[derive(Debug, Default)]
struct State {
    by_hash: HashMap<Key, Entry>,
    by_session: HashMap<i64, Key>,
    /// Insertion order, for eviction: `(key, serial)`; an item whose serial is no longer
    /// its key's is stale and skipped.
    order: VecDeque<(Key, u64)>,
    serial: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    principal: Principal,
    until: Instant,
    serial: u64,
}

#[derive(Debug, Default)]
struct Stats {
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    resets: AtomicU64,
}

/// Taken before a session lookup, handed to [`SessionCache::keep`] with its answer.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
    at: Instant,
}

impl SessionCache {
    /// A cache of at most `capacity` sessions, each kept at most `ttl`. It trusts nothing
    /// until it hears [`Heard::Listening`].
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity,
            ttl,
            state: Mutex::default(),
            armed: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            alive_until: AtomicU64::new(0),
            born: Instant::now(),
            epoch: AtomicU64::new(0),
            stats: Stats::default(),
        }
    }

    /// The tap that keeps the cache in step with [`CHANNEL`] (see [`Self::hear`]), pinging
    /// every [`PING_EVERY`].
    pub fn tap(self: &Arc<Self>) -> Tap {
        let cache = self.clone();
        Tap::new(CHANNEL, move |heard| cache.hear(heard)).pinging_every(PING_EVERY)
    }

    /// What the `LISTEN` connection heard: a session id to forget (`*`, or anything
    /// unreadable: all of them); the connection lost (forget all, trust nothing);
    /// listening again (start empty, trusted for a [`LEASE`]); or a ping answered (the
    /// lease renewed from when it was sent).
    pub fn hear(&self, heard: Heard<'_>) {
        match heard {
            Heard::Payload(payload) => match payload.trim().parse::<i64>() {
                Ok(session_id) => self.forget(session_id),
                Err(_) => {
                    if payload.trim() != "*" {
                        tracing::warn!(payload, "unreadable session notice; clearing the cache");
                    }
                    self.reset(true);
                }
            },
            Heard::Listening => {
                self.renew(Instant::now());
                self.reset(true);
            }
            Heard::Lost => self.reset(false),
            Heard::Answered(sent) => self.renew(sent),
        }
    }

    fn since_born(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.born).as_nanos()).unwrap_or(u64::MAX)
    }

    fn renew(&self, sent: Instant) {
        let until = self.since_born(sent + LEASE);
        self.alive_until.fetch_max(until, Ordering::AcqRel);
    }

    /// Whether the cache's `LISTEN` connection is up (it may still be past its lease).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Whether the cache answers now: listening, and within its [`LEASE`].
    pub fn is_trusted(&self) -> bool {
        self.trusted_at(Instant::now())
    }

    fn trusted_at(&self, now: Instant) -> bool {
        self.armed.load(Ordering::Acquire)
            && self.is_listening()
            && self.since_born(now) < self.alive_until.load(Ordering::Acquire)
    }

    /// Declares that the database has the sessions trigger: without it no revocation would
    /// ever be heard, so the cache answers nothing until this is called. The service calls
    /// it from [`arm_when_triggered`](Self::arm_when_triggered).
    pub fn arm(&self) {
        self.armed.store(true, Ordering::Release);
    }

    /// Checks every second (on `db`'s shared connections) whether the sessions trigger of
    /// the migration `…_sessions_notify_revocations.sql` is installed, and [arms](Self::arm)
    /// the cache once it is; gives up when `stop` turns `true`. A service whose migrations
    /// run later (`MIGRATE=false`, or the tests' harness) thus starts without a cache and
    /// gains it, never the reverse.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) {
    /// use std::sync::Arc;
    /// use pgbridge::auth::SessionCache;
    ///
    /// let cache = Arc::new(SessionCache::new(1000, std::time::Duration::from_secs(60)));
    /// let (_stop, stopped) = tokio::sync::watch::channel(false);
    /// tokio::spawn(cache.clone().arm_when_triggered(db, stopped));
    /// # }
    /// ```
    pub async fn arm_when_triggered(
        self: Arc<Self>,
        db: crate::db::Db,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        // The service's own migrations run while this starts: only a trigger still missing
        // after a while is worth a warning.
        const WARN_AFTER_CHECKS: u32 = 30;
        let mut checks = 0u32;
        loop {
            let found = db
                .shared()
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_trigger \
                     WHERE tgname = 'sessions_notify_revocations' \
                       AND tgrelid = to_regclass('sessions'))",
                    &[],
                )
                .await
                .map(|row| row.get::<_, bool>(0));
            match found {
                Ok(true) => {
                    self.arm();
                    tracing::debug!("the sessions trigger is installed: session cache on");
                    return;
                }
                Ok(false) => {
                    checks += 1;
                    if checks == WARN_AFTER_CHECKS {
                        tracing::warn!(
                            waited_secs = checks,
                            "no sessions trigger yet (migrations not run?): the session cache \
                             stays off until it is installed"
                        );
                    }
                }
                Err(err) => tracing::debug!(error = %err, "session cache: trigger check failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Forgets `session_id` (revoked, here or elsewhere).
    pub fn forget(&self, session_id: i64) {
        let mut state = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(key) = state.by_session.remove(&session_id) {
            state.by_hash.remove(&key);
        }
        drop(state);
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    fn reset(&self, listening: bool) {
        let mut state = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        *state = State::default();
        self.listening.store(listening, Ordering::Release);
        drop(state);
        self.stats.resets.fetch_add(1, Ordering::Relaxed);
    }

    /// Take one before looking a session up; [`keep`](Self::keep) what it found with it.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            epoch: self.epoch.load(Ordering::Acquire),
            at: Instant::now(),
        }
    }

    /// The live session of the token whose hash is `hash`, if the cache knows it and is
    /// trusted. Counts a hit or a miss.
    pub fn get(&self, hash: &[u8]) -> Option<Principal> {
        let found = self.get_at(hash, Instant::now());
        let counter = match found {
            Some(_) => &self.stats.hits,
            None => &self.stats.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn get_at(&self, hash: &[u8], now: Instant) -> Option<Principal> {
        let key: &Key = hash.try_into().ok()?;
        if !self.trusted_at(now) {
            return None;
        }
        let mut state = self.lock();
        let entry = *state.by_hash.get(key)?;
        if entry.until > now {
            return Some(entry.principal);
        }
        state.by_hash.remove(key);
        state.by_session.remove(&entry.principal.session_id);
        None
    }

    /// Whether the cache knows `session_id` as live (and is trusted): an open stream's
    /// heartbeat then asks nobody. Counts a hit or a miss.
    pub fn is_live(&self, session_id: i64) -> bool {
        let live = self.is_live_at(session_id, Instant::now());
        let counter = if live {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        live
    }

    fn is_live_at(&self, session_id: i64, now: Instant) -> bool {
        if !self.trusted_at(now) {
            return false;
        }
        let state = self.lock();
        state
            .by_session
            .get(&session_id)
            .and_then(|key| state.by_hash.get(key))
            .is_some_and(|entry| entry.until > now)
    }

    /// Keeps `principal` as the live session of `hash` for what is left of the cache's
    /// lifetime or of `expires_in` (the session's, counted from before `ticket`'s lookup),
    /// whichever ends first — unless the cache is not trusted, or forgot anything since
    /// `ticket` was taken (the answer may predate a revocation).
    pub fn keep(&self, ticket: &Ticket, hash: &[u8], principal: Principal, expires_in: Duration) {
        let Ok(key) = Key::try_from(hash) else {
            return;
        };
        if self.capacity == 0 {
            return;
        }
        let until = ticket.at + expires_in.min(self.ttl);
        let mut state = self.lock();
        if !self.is_trusted() || self.epoch.load(Ordering::Acquire) != ticket.epoch {
            return;
        }
        state.serial += 1;
        let serial = state.serial;
        if let Some(old) = state.by_hash.insert(
            key,
            Entry {
                principal,
                until,
                serial,
            },
        ) && old.principal.session_id != principal.session_id
        {
            state.by_session.remove(&old.principal.session_id);
        }
        if let Some(other) = state.by_session.insert(principal.session_id, key)
            && other != key
        {
            state.by_hash.remove(&other);
        }
        state.order.push_back((key, serial));
        while state.by_hash.len() > self.capacity {
            let Some((oldest, serial)) = state.order.pop_front() else {
                break;
            };
            if state
                .by_hash
                .get(&oldest)
                .is_some_and(|e| e.serial == serial)
                && let Some(entry) = state.by_hash.remove(&oldest)
            {
                state.by_session.remove(&entry.principal.session_id);
            }
        }
        // Stale items (forgotten or replaced entries) must not grow the queue past a bound.
        if state.order.len() > 2 * self.capacity + 16 {
            let State { by_hash, order, .. } = &mut *state;
            order.retain(|(key, serial)| by_hash.get(key).is_some_and(|e| e.serial == *serial));
        }
    }

    /// Sessions kept now.
    pub fn len(&self) -> usize {
        self.lock().by_hash.len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most sessions kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// [`SessionCache`] counters on `/metrics`.
#[derive(Debug)]
pub struct CacheGauges(pub Arc<SessionCache>);

impl Collector for CacheGauges {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let cache = &self.0;
        let stats = &cache.stats;
        crate::metrics::counter(
            &mut e,
            "pgbridge_session_cache_hits",
            "Session checks the session cache answered (no lookup in Postgres).",
            stats.hits.load(Ordering::Relaxed),
        )?;
        crate::metrics::counter(
            &mut e,
            "pgbridge_session_cache_misses",
            "Session checks the session cache could not answer (looked up in Postgres).",
            stats.misses.load(Ordering::Relaxed),
        )?;
        crate::metrics::counter(
            &mut e,
            "pgbridge_session_cache_invalidations",
            "Sessions the session cache was told to forget (revoked, expired or deleted).",
            stats.invalidations.load(Ordering::Relaxed),
        )?;
        crate::metrics::counter(
            &mut e,
            "pgbridge_session_cache_resets",
            "Times the session cache was emptied: its LISTEN connection lost or back.",
            stats.resets.load(Ordering::Relaxed),
        )?;
        crate::metrics::gauge(
            &mut e,
            "pgbridge_session_cache_entries",
            "Sessions in the session cache.",
            cache.len(),
        )?;
        crate::metrics::gauge(
            &mut e,
            "pgbridge_session_cache_capacity",
            "Most sessions the session cache keeps (SESSION_CACHE_SIZE).",
            cache.capacity(),
        )?;
        crate::metrics::gauge(
            &mut e,
            "pgbridge_session_cache_trusted",
            "1 while the session cache answers: its LISTEN connection up, within its lease.",
            usize::from(cache.is_trusted()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(n: i64) -> Principal {
        Principal {
            account_id: n % 3,
            session_id: n,
        }
    }

    fn key(n: i64) -> Key {
        let mut key = [0; 32];
        key[..8].copy_from_slice(&n.to_le_bytes());
        key
    }

    fn listening(capacity: usize, ttl: Duration) -> SessionCache {
        let cache = SessionCache::new(capacity, ttl);
        cache.arm();
        cache.hear(Heard::Listening);
        cache
    }

    #[test]
    fn it_answers_nothing_before_it_is_armed() {
        let cache = SessionCache::new(10, Duration::from_secs(60));
        cache.hear(Heard::Listening);
        let ticket = cache.ticket();
        cache.keep(&ticket, &key(1), principal(1), Duration::from_secs(60));
        assert!(cache.is_empty() && !cache.is_trusted());
        cache.arm();
        cache.keep(&ticket, &key(1), principal(1), Duration::from_secs(60));
        assert_eq!(cache.get(&key(1)), Some(principal(1)));
    }

    #[test]
    fn never_holds_more_than_its_capacity_and_drops_the_oldest() {
        let cache = listening(10, Duration::from_secs(60));
        for n in 0..1000 {
            let ticket = cache.ticket();
            cache.keep(&ticket, &key(n), principal(n), Duration::from_secs(3600));
            assert!(cache.len() <= 10, "{} after {n}", cache.len());
            let state = cache.lock();
            assert_eq!(state.by_hash.len(), state.by_session.len());
            assert!(state.order.len() <= 2 * 10 + 16 + 1);
        }
        assert_eq!(cache.len(), 10);
        assert_eq!(cache.get(&key(999)), Some(principal(999)));
        assert_eq!(cache.get(&key(989)), None, "the oldest went first");
        // Forgetting and keeping again, over and over, keeps the queue bounded too.
        for n in 0..1000 {
            cache.forget(n % 5);
            let ticket = cache.ticket();
            cache.keep(
                &ticket,
                &key(n % 5),
                principal(n % 5),
                Duration::from_secs(60),
            );
            assert!(cache.lock().order.len() <= 2 * 10 + 16 + 1);
        }
    }

    #[test]
    fn an_entry_ends_with_its_lifetime_or_its_session_whichever_is_first() {
        let cache = listening(10, Duration::from_secs(60));
        let ticket = cache.ticket();
        cache.keep(&ticket, &key(1), principal(1), Duration::from_secs(5));
        cache.keep(&ticket, &key(2), principal(2), Duration::from_secs(3600));
        // Each moment below just after a ping answered (within the lease).
        let at = |secs: u64| {
            let at = ticket.at + Duration::from_secs(secs);
            cache.hear(Heard::Answered(at));
            at
        };
        assert_eq!(cache.get_at(&key(1), at(4)), Some(principal(1)));
        assert!(cache.is_live_at(1, at(4)));
        assert_eq!(cache.get_at(&key(1), at(5)), None, "the session expired");
        assert!(!cache.is_live_at(1, at(5)));
        assert_eq!(cache.get_at(&key(2), at(59)), Some(principal(2)));
        assert_eq!(cache.get_at(&key(2), at(60)), None, "the cache's lifetime");
        assert!(cache.is_empty(), "expired entries are dropped when met");
    }

    #[test]
    fn revocations_and_lost_connections_win_over_answers_read_before_them() {
        let cache = listening(10, Duration::from_secs(60));
        let ticket = cache.ticket();
        cache.hear(Heard::Payload("7")); // a revocation heard while the lookup ran
        cache.keep(&ticket, &key(1), principal(1), Duration::from_secs(60));
        assert_eq!(
            cache.get(&key(1)),
            None,
            "an answer older than a revocation"
        );

        let ticket = cache.ticket();
        cache.keep(&ticket, &key(1), principal(1), Duration::from_secs(60));
        assert!(cache.is_live(1));
        cache.hear(Heard::Payload("1"));
        assert!(!cache.is_live(1));
        assert_eq!(cache.get(&key(1)), None);

        let ticket = cache.ticket();
        cache.keep(&ticket, &key(2), principal(2), Duration::from_secs(60));
        cache.hear(Heard::Lost);
        assert_eq!(
            cache.get(&key(2)),
            None,
            "nothing is trusted while not listening"
        );
        let ticket = cache.ticket();
        cache.keep(&ticket, &key(2), principal(2), Duration::from_secs(60));
        assert!(cache.is_empty(), "nothing is kept while not listening");
        cache.hear(Heard::Listening);
        assert_eq!(cache.get(&key(2)), None, "it starts empty");
        cache.keep(&ticket, &key(2), principal(2), Duration::from_secs(60));
        assert!(
            cache.is_empty(),
            "a lookup from before the reconnect is not kept"
        );

        let ticket = cache.ticket();
        cache.keep(&ticket, &key(3), principal(3), Duration::from_secs(60));
        cache.hear(Heard::Payload("*"));
        assert!(cache.is_empty(), "`*` forgets everything");
    }

    #[test]
    fn it_answers_only_within_the_lease_of_the_last_ping_answered() {
        let cache = listening(10, Duration::from_secs(60));
        let ticket = cache.ticket();
        cache.keep(&ticket, &key(1), principal(1), Duration::from_secs(60));
        let start = ticket.at;
        assert!(cache.trusted_at(start));
        assert_eq!(cache.get_at(&key(1), start + LEASE / 2), Some(principal(1)));
        // No answer for a lease: a connection that may be dead without having closed.
        let late = start + LEASE + Duration::from_millis(10);
        assert_eq!(cache.get_at(&key(1), late), None);
        assert!(!cache.is_live_at(1, late));
        // A ping sent after that and answered: what it kept is trusted again (every
        // notice sent before the ping was heard before its answer).
        cache.hear(Heard::Answered(late));
        assert_eq!(cache.get_at(&key(1), late), Some(principal(1)));
        // An older answer arriving late does not shorten or stretch it.
        cache.hear(Heard::Answered(start));
        assert!(cache.trusted_at(late + LEASE / 2));
        assert!(!cache.trusted_at(late + LEASE));
    }

    #[test]
    fn a_token_kept_again_replaces_its_old_session() {
        let cache = listening(10, Duration::from_secs(60));
        let ticket = cache.ticket();
        cache.keep(&ticket, &key(1), principal(1), Duration::from_secs(60));
        cache.keep(&ticket, &key(1), principal(2), Duration::from_secs(60));
        assert!(!cache.is_live(1));
        assert!(cache.is_live(2));
        assert_eq!(cache.len(), 1);
    }
}
