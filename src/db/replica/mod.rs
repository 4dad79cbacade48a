//! Reads from hot standbys, with read-your-writes: [`ReadRouter`].
//!
//! Writes, conditional writes and transactions use the primary pool ([`Db`]). Reads that
//! tolerate a little lag ask [`ReadRouter::reader`] for a connection; it lends one from a
//! standby (round robin over `DATABASE_READ_URL`) when
//!
//! - the standby is up and its replay lags less than `READ_MAX_LAG_MS` (a background task
//!   checks every standby twice a second; a connection that fails marks it down at once);
//! - and, when the request carries a WAL position (`Pgbridge-Min-Lsn`, from an earlier
//!   write's `Pgbridge-Commit-Lsn`), the standby has replayed at least that far — waiting up
//!   to `READ_LSN_WAIT_MS` for it.
//!
//! Otherwise the read goes to the primary, which always sees every committed write. A
//! write reads its token with [`commit_lsn`] on its own connection after the commit:
//! `pg_current_wal_insert_lsn()` is at or past the commit record even with
//! `synchronous_commit = off`, when the commit record may not be written out yet.
//!
//! ```no_run
//! # async fn demo(primary: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
//! use pgbridge::db::DbConfig;
//! use pgbridge::db::replica::{ReadConfig, ReadRouter};
//!
//! let reads = ReadRouter::new(
//!     primary.clone(),
//!     &ReadConfig::new(["postgres://app@standby/app"]),
//!     &DbConfig::new("postgres://app@primary/app"),
//! )?;
//! let conn = primary.conn().await?;
//! conn.execute("UPDATE notes SET title = 'x' WHERE id = 1", &[]).await?;
//! let token = pgbridge::db::replica::commit_lsn(&conn).await?;
//! let reader = reads.reader(Some(token)).await?; // sees the UPDATE, standby or not
//! let row = reader.query_one("SELECT title FROM notes WHERE id = 1", &[]).await?;
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

mod lsn;
mod read;

pub use lsn::{Lsn, commit_lsn};
pub use read::{ReadFrom, Reader, ScopedRead};

use super::{Conn, Db, DbConfig, DbError};

/// How often the background task checks each standby.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often a read waiting for a WAL position asks the standby again.
const POLL_EVERY: Duration = Duration::from_millis(5);

static FROM_STANDBY: AtomicU64 = AtomicU64::new(0);
static FROM_PRIMARY: AtomicU64 = AtomicU64::new(0);

static RETRIED: AtomicU64 = AtomicU64::new(0);

/// Counts a read that met a failover and ran again ([`ReadRouter::retry_reader`]).
///
/// ```
/// pgbridge::db::replica::count_retry();
/// assert!(pgbridge::db::replica::reads_retried() >= 1);
/// ```
pub fn count_retry() {
    RETRIED.fetch_add(1, Ordering::Relaxed);
}

/// Reads this process retried after a failover, for `/metrics`.
///
/// ```
/// let before = pgbridge::db::replica::reads_retried();
/// pgbridge::db::replica::count_retry();
/// assert!(pgbridge::db::replica::reads_retried() > before);
/// ```
pub fn reads_retried() -> u64 {
    RETRIED.load(Ordering::Relaxed)
}

/// Reads this process has served `(from a standby, from the primary)`, for `/metrics`.
pub fn reads_served() -> (u64, u64) {
    (
        FROM_STANDBY.load(Ordering::Relaxed),
        FROM_PRIMARY.load(Ordering::Relaxed),
    )
}

/// What the router needs: the standbys and its bounds.
#[derive(Debug, Clone)]
pub struct ReadConfig {
    /// Standby URLs; empty: every read goes to the primary.
    pub urls: Vec<String>,
    /// Most pooled connections per standby.
    pub pool_size: usize,
    /// How long a read with a WAL position waits for a standby to replay it.
    pub lsn_wait: Duration,
    /// A standby lagging more than this is skipped.
    pub max_lag: Duration,
}

impl ReadConfig {
    /// `urls` with the service's defaults for the rest.
    pub fn new<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            pool_size: super::defaults::READ_POOL_SIZE,
            lsn_wait: Duration::from_millis(super::defaults::READ_LSN_WAIT_MS),
            max_lag: Duration::from_millis(super::defaults::READ_MAX_LAG_MS),
        }
    }
}

/// The primary pool and the standbys' pools; cheap to clone.
#[derive(Clone, Debug)]
pub struct ReadRouter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    primary: Db,
    standbys: Vec<Standby>,
    lsn_wait: Duration,
    max_lag: Duration,
    next: AtomicUsize,
}

#[derive(Debug)]
struct Standby {
    db: Db,
    /// Up, in recovery, and lagging less than the bound, at the last check.
    usable: AtomicBool,
    /// Answered the last check, and either [usable](Self::usable) or out of recovery (a
    /// standby just promoted, still behind the read-only address): a read whose first try
    /// on the primary met a failover may go there ([`ReadRouter::retry_reader`]).
    readable: AtomicBool,
    /// Replay lag at the last check that answered, in milliseconds; `u64::MAX` when the
    /// last check did not answer.
    lag_ms: AtomicU64,
}

/// One standby's state at its last check, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StandbyStatus {
    /// Up, in recovery and within the lag bound: reads go to it.
    pub usable: bool,
    /// Its replay lag, if it answered the last check.
    pub lag: Option<Duration>,
}

impl ReadRouter {
    /// A router over `config.urls` (opening no connection yet), pools built like
    /// `pool`'s but with `config.pool_size`, a short pool wait (a busy standby sends the
    /// read to the primary) and a short connect timeout. With standbys, starts the task
    /// that checks them (it needs a tokio runtime, and ends with the router).
    pub fn new(primary: Db, config: &ReadConfig, pool: &DbConfig) -> Result<Self, DbError> {
        let standbys = config
            .urls
            .iter()
            .map(|url| {
                let mut standby = pool.clone();
                standby.url = url.clone();
                standby.pool_size = config.pool_size;
                standby.pool_wait = pool.pool_wait.min(Duration::from_millis(200));
                standby.connect_timeout = pool.connect_timeout.min(Duration::from_secs(1));
                Ok(Standby {
                    db: Db::connect_counting(&standby, primary.cancel_count()).map_err(|err| {
                        DbError::Config(format!(
                            "DATABASE_READ_URL {:?}: {err}",
                            crate::db::connect::redact(url, url)
                        ))
                    })?,
                    usable: AtomicBool::new(false),
                    readable: AtomicBool::new(false),
                    lag_ms: AtomicU64::new(u64::MAX),
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        let inner = Arc::new(Inner {
            primary,
            standbys,
            lsn_wait: config.lsn_wait,
            max_lag: config.max_lag,
            next: AtomicUsize::new(0),
        });
        if !inner.standbys.is_empty() {
            tokio::spawn(check_standbys(Arc::downgrade(&inner)));
        }
        Ok(Self { inner })
    }

    /// Only the primary: every read goes there.
    pub fn primary_only(primary: Db) -> Self {
        Self {
            inner: Arc::new(Inner {
                primary,
                standbys: Vec::new(),
                lsn_wait: Duration::ZERO,
                max_lag: Duration::ZERO,
                next: AtomicUsize::new(0),
            }),
        }
    }

    /// The primary pool.
    pub fn primary(&self) -> &Db {
        &self.inner.primary
    }

    /// Each standby's state at its last check, in `DATABASE_READ_URL` order.
    ///
    /// ```no_run
    /// # fn demo(reads: pgbridge::db::replica::ReadRouter) {
    /// let usable = reads.standbys().iter().filter(|s| s.usable).count();
    /// # }
    /// ```
    pub fn standbys(&self) -> Vec<StandbyStatus> {
        self.inner
            .standbys
            .iter()
            .map(|standby| {
                let lag_ms = standby.lag_ms.load(Ordering::Relaxed);
                StandbyStatus {
                    usable: standby.usable.load(Ordering::Relaxed),
                    lag: (lag_ms != u64::MAX).then(|| Duration::from_millis(lag_ms)),
                }
            })
            .collect()
    }

    /// The lag bound (`READ_MAX_LAG_MS`) past which a standby serves no reads.
    pub fn max_lag(&self) -> Duration {
        self.inner.max_lag
    }

    /// Whether any standby is configured.
    ///
    /// ```no_run
    /// # fn demo(db: pgbridge::db::Db) {
    /// assert!(!pgbridge::db::replica::ReadRouter::primary_only(db).has_standbys());
    /// # }
    /// ```
    pub fn has_standbys(&self) -> bool {
        !self.inner.standbys.is_empty()
    }

    /// A connection for a read that must see at least `min_lsn` (if given): from a usable
    /// standby that has replayed that far within the wait, else from the primary.
    pub async fn reader(&self, min_lsn: Option<Lsn>) -> Result<Reader, DbError> {
        let inner = &self.inner;
        let count = inner.standbys.len();
        if count > 0 {
            let deadline = Instant::now() + inner.lsn_wait;
            let first = inner.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..count {
                let standby = &inner.standbys[(first + i) % count];
                if !standby.usable.load(Ordering::Relaxed) {
                    continue;
                }
                match standby.reader(min_lsn, deadline).await {
                    Ok(Some(conn)) => {
                        FROM_STANDBY.fetch_add(1, Ordering::Relaxed);
                        return Ok(Reader {
                            conn,
                            from: ReadFrom::Standby,
                        });
                    }
                    Ok(None) => {} // not replayed far enough in time: try the next
                    Err(err) => {
                        tracing::warn!(error = %err, "standby failed; reading from the primary");
                        standby.usable.store(false, Ordering::Relaxed);
                    }
                }
            }
        }
        FROM_PRIMARY.fetch_add(1, Ordering::Relaxed);
        Ok(Reader {
            conn: inner.primary.conn().await?,
            from: ReadFrom::Primary,
        })
    }

    /// A connection for the second and last try of a read whose first try, on `failed`,
    /// met a failover (the connection lost, the server shutting down or unreachable)
    /// before any answer was sent: a read is idempotent, so it may run again elsewhere.
    /// After a standby, the primary; after the primary, a standby that answered its last
    /// check (within the lag bound, or out of recovery: just promoted, and still behind
    /// the read-only address while the read-write one does not lead to it yet). `None`:
    /// nowhere else to go.
    ///
    /// ```no_run
    /// # async fn demo(reads: pgbridge::db::replica::ReadRouter) -> Result<(), pgbridge::db::DbError> {
    /// use pgbridge::db::replica::ReadFrom;
    ///
    /// if let Some(reader) = reads.retry_reader(None, ReadFrom::Primary).await? {
    ///     let row = reader.query_one("SELECT 1", &[]).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn retry_reader(
        &self,
        min_lsn: Option<Lsn>,
        failed: ReadFrom,
    ) -> Result<Option<Reader>, DbError> {
        let inner = &self.inner;
        if failed == ReadFrom::Standby {
            FROM_PRIMARY.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(Reader {
                conn: inner.primary.conn().await?,
                from: ReadFrom::Primary,
            }));
        }
        let deadline = Instant::now() + inner.lsn_wait;
        for standby in &inner.standbys {
            if !standby.readable.load(Ordering::Relaxed) {
                continue;
            }
            if let Ok(Some(conn)) = standby.reader(min_lsn, deadline).await {
                FROM_STANDBY.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(Reader {
                    conn,
                    from: ReadFrom::Standby,
                }));
            }
        }
        Ok(None)
    }
}

impl Standby {
    /// A connection once this standby has replayed `min_lsn`; `None` if it has not by
    /// `deadline`.
    async fn reader(
        &self,
        min_lsn: Option<Lsn>,
        deadline: Instant,
    ) -> Result<Option<Conn>, DbError> {
        let conn = self.db.conn().await?;
        let Some(min_lsn) = min_lsn else {
            return Ok(Some(conn));
        };
        loop {
            let row = conn
                .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
                .await?;
            let replayed = row
                .get::<_, Option<String>>(0)
                .and_then(|text| text.parse::<Lsn>().ok());
            if replayed.is_some_and(|replayed| replayed >= min_lsn) {
                return Ok(Some(conn));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL_EVERY.min(deadline - now)).await;
        }
    }

    /// Whether the standby answers, is in recovery and lags less than `max_lag`
    /// (`usable`), and whether it may serve a retried read (`readable`: usable, or out of
    /// recovery).
    async fn check(&self, max_lag: Duration) -> Result<Check, DbError> {
        let conn = self.db.conn().await?;
        // Lag is 0 while everything received is replayed (an idle primary sends nothing,
        // and `pg_last_xact_replay_timestamp` would grow old); otherwise the age of the
        // last replayed transaction.
        let row = conn
            .query_one(
                "SELECT pg_is_in_recovery(), \
                        coalesce(CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() \
                                      THEN 0 \
                                      ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000 \
                                 END, 0)::float8",
                &[],
            )
            .await?;
        let in_recovery: bool = row.get(0);
        let lag_ms: f64 = row.get(1);
        self.lag_ms.store(
            if in_recovery {
                lag_ms.max(0.0) as u64
            } else {
                u64::MAX
            },
            Ordering::Relaxed,
        );
        let usable = in_recovery && lag_ms <= max_lag.as_millis() as f64;
        Ok(Check {
            usable,
            readable: usable || !in_recovery,
        })
    }
}

/// What one check of a standby found.
#[derive(Debug, Clone, Copy)]
struct Check {
    usable: bool,
    readable: bool,
}

/// Checks every standby every [`CHECK_EVERY`] until the router is dropped.
async fn check_standbys(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        for (i, standby) in inner.standbys.iter().enumerate() {
            let checked = tokio::time::timeout(CHECK_EVERY * 2, standby.check(inner.max_lag))
                .await
                .map(|answer| answer.map(|check| (check.usable, check.readable)));
            let usable = matches!(checked, Ok(Ok((true, _))));
            standby
                .readable
                .store(matches!(checked, Ok(Ok((_, true)))), Ordering::Relaxed);
            if !matches!(checked, Ok(Ok(_))) {
                standby.lag_ms.store(u64::MAX, Ordering::Relaxed);
            }
            let was = standby.usable.swap(usable, Ordering::Relaxed);
            if was != usable {
                match checked {
                    Ok(Ok((true, _))) => {
                        tracing::info!(standby = i, "standby usable for reads")
                    }
                    Ok(Ok((false, _))) => {
                        tracing::warn!(standby = i, "standby not in recovery or lagging; skipped")
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(standby = i, error = %err, "standby down; skipped")
                    }
                    Err(_) => tracing::warn!(standby = i, "standby did not answer; skipped"),
                }
            }
        }
    }
}
