//! [`Db`]: the deadpool-postgres pool, built from [`DbConfig`].

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
};

use super::cancel::{CancelCount, CancelTarget};
use super::connect::{Endpoint, PgConnect};
use super::pooler::{PoolMode, StatementTypes};
use super::{Conn, DbError, Shared, SharedConfig, defaults, failover};
use crate::backoff::Backoff;
use failover::Marks;

/// What the pool needs to know. The service fills it from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The most connections the pool opens.
    pub pool_size: usize,
    /// How long a request waits for a free connection before it gets 503.
    pub pool_wait: Duration,
    /// How long opening one connection may take.
    pub connect_timeout: Duration,
    /// `statement_timeout`, set on every connection: no statement runs longer.
    pub statement_timeout: Duration,
    /// The shared, pipelined connections ([`Db::shared`]).
    pub shared: SharedConfig,
    /// How `url` reaches Postgres: directly (or a session pooler), or through a
    /// transaction pooler (no startup options, unnamed statements; see [`super::pooler`]).
    pub pool_mode: PoolMode,
}

impl DbConfig {
    /// A configuration for `url` with the service's defaults for everything else.
    ///
    /// ```
    /// let config = pgbridge::db::DbConfig::new("postgres://app@localhost/app");
    /// assert_eq!(config.pool_size, 16);
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: defaults::POOL_SIZE,
            pool_wait: Duration::from_millis(defaults::POOL_TIMEOUT_MS),
            connect_timeout: Duration::from_millis(defaults::CONNECT_TIMEOUT_MS),
            statement_timeout: Duration::from_millis(defaults::STATEMENT_TIMEOUT_MS),
            shared: SharedConfig::default(),
            pool_mode: PoolMode::default(),
        }
    }
}

/// The database handle applications get: a cheap-to-clone pool.
///
/// Creating it opens no connection; the first [`conn`](Self::conn) does. When Postgres is
/// down, `conn` fails with [`DbError::Unavailable`] within the wait and connect timeouts,
/// and works again once Postgres is back: the pool heals without a restart.
///
/// ```no_run
/// # async fn demo() -> Result<(), pgbridge::db::DbError> {
/// use pgbridge::db::{Db, DbConfig};
///
/// let db = Db::connect(&DbConfig::new("postgres://postgres@localhost/postgres"))?;
/// let conn = db.conn().await?;
/// let one: i32 = conn.query_one("SELECT 1", &[]).await?.get(0);
/// assert_eq!(one, 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Db {
    pool: Pool,
    /// Where this pool's cancels go, and their count.
    server: Arc<CancelTarget>,
    endpoint: Arc<Endpoint>,
    shared: Shared,
    /// `Some` in transaction-pooler mode.
    unnamed: Option<Arc<StatementTypes>>,
}

/// What [`Db::check_ready`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// A pooled connection answered, on a server that takes writes.
    Answered,
    /// A pooled connection answered, but the server is read-only: a standby (a failover
    /// is under way, or the URL leads to a standby), or `default_transaction_read_only`
    /// is on. Writes would fail with `25006`.
    ReadOnly,
    /// Every pooled connection is in use: the database is busy, not down.
    Busy,
}

/// A snapshot of the pool, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// The configured maximum.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Connections open and idle.
    pub available: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

impl Db {
    /// Builds the pool and the shared connection set. Fails only on a malformed URL or
    /// unusable TLS settings (say, an `sslrootcert` file that cannot be read).
    pub fn connect(config: &DbConfig) -> Result<Self, DbError> {
        Self::connect_counting(config, CancelCount::default())
    }

    /// [`connect`](Self::connect), counting the cancels this pool sends in `cancels` (a
    /// standby's pool counts in its primary's).
    pub(crate) fn connect_counting(
        config: &DbConfig,
        cancels: CancelCount,
    ) -> Result<Self, DbError> {
        let mut target = PgConnect::parse(&config.url)
            .map_err(|err| DbError::Config(format!("DATABASE_URL: {err}")))?;
        let pg = target.config_mut();
        pg.connect_timeout(config.connect_timeout);
        let statement_ms = config.statement_timeout.as_millis();
        let unnamed = match config.pool_mode {
            PoolMode::Session => {
                let options = match pg.get_options() {
                    Some(existing) => format!("{existing} -c statement_timeout={statement_ms}"),
                    None => format!("-c statement_timeout={statement_ms}"),
                };
                pg.options(options);
                None
            }
            // A transaction pooler refuses startup options: the client times statements.
            PoolMode::Transaction => Some(Arc::new(StatementTypes::new(config.statement_timeout))),
        };
        if pg.get_application_name().is_none() {
            pg.application_name("pgbridge");
        }
        let server = Arc::new(CancelTarget::of(target.config(), target.tls(), cancels));
        let endpoint = Arc::new(target.endpoint());
        // The same settings and TLS as the pool's; a name of its own in pg_stat_activity.
        let mut shared_target = target.clone();
        if shared_target.config().get_application_name() == Some("pgbridge") {
            shared_target
                .config_mut()
                .application_name("pgbridge-shared");
        }
        let manager = Manager::from_connect(
            target.config().clone(),
            super::connect::Pooled::new(target.tls()),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .wait_timeout(Some(config.pool_wait))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            // After a failover sign, connections opened before it may lead to the old
            // primary: thrown away, not lent (see `super::failover`).
            .pre_recycle(Hook::sync_fn({
                let marks = server.failover.clone();
                move |client, metrics| {
                    // Closed (Postgres restarted, the session cut while idle): thrown away
                    // here, quietly — deadpool's own check would log a WARN for each one.
                    if client.is_closed() {
                        return Err(HookError::message("closed"));
                    }
                    if marks.is_stale(metrics.created) {
                        Err(HookError::message("opened before a failover sign"))
                    } else {
                        Ok(())
                    }
                }
            }))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|err| DbError::Config(err.to_string()))?;
        // Through a transaction pooler the shared path runs statements unnamed too, with
        // the pool's parameter types, learnt on a pooled connection.
        let shared_unnamed = unnamed.clone().map(|types| super::shared::Unnamed {
            types,
            pool: pool.clone(),
            server: server.clone(),
        });
        let shared = Shared::new(
            config.shared,
            shared_target,
            server.clone(),
            config.pool_wait,
            config.connect_timeout,
            shared_unnamed,
        );
        Ok(Self {
            pool,
            server,
            endpoint,
            shared,
            unnamed,
        })
    }

    /// The shared, pipelined connections: for single short statements that touch no
    /// owner-protected table (see [`Shared`]).
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// use pgbridge::db::Queries;
    /// let n: i64 = db.shared().query_one("SELECT count(*) FROM pg_stat_activity", &[]).await?.get(0);
    /// # Ok(()) }
    /// ```
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// This handle with `value` attached: state of the layers above the pool that must go
    /// wherever the `Db` goes — into every environ, every clone made from now on, and code
    /// that keeps only [`shared`](Self::shared) (the session cache, which the event
    /// streams' revocation checks reach this way). One value per type; a second replaces
    /// the first. Attach before cloning: clones made earlier do not see it.
    ///
    /// ```no_run
    /// # fn demo(db: pgbridge::db::Db) {
    /// #[derive(Clone)]
    /// struct Region(&'static str);
    /// let db = db.attach(Region("eu"));
    /// assert_eq!(db.extension::<Region>().map(|r| r.0), Some("eu"));
    /// # }
    /// ```
    pub fn attach<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.shared.attach(value);
        self
    }

    /// The value of type `T` [attached](Self::attach), if any.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.shared.extension::<T>()
    }

    /// How this pool reaches Postgres (`DB_POOL_MODE`): a statement path of its own must
    /// run statements unnamed, under a client-side timeout, in
    /// [`PoolMode::Transaction`] (see [`super::pooler`]).
    pub fn pool_mode(&self) -> PoolMode {
        if self.unnamed.is_some() {
            PoolMode::Transaction
        } else {
            PoolMode::Session
        }
    }

    /// An exclusive connection from the pool, within the wait timeout: for transactions,
    /// scopes ([`Scoped`](super::Scoped)), `LISTEN`, session state, and statements that
    /// may run long. A failure to open a new one is a [`DbError::Connect`] that says why
    /// and where.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let conn = db.conn().await?;
    /// // Cancelled on the server if this future is dropped (the client hung up).
    /// conn.execute("SELECT pg_sleep(1)", &[]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn conn(&self) -> Result<Conn, DbError> {
        let object = self.pool.get().await.map_err(|err| self.pool_error(err))?;
        Ok(Conn::new(object, self.server.clone(), self.unnamed.clone()))
    }

    /// An exclusive connection like [`conn`](Self::conn)'s, but only if the pool can lend
    /// one without waiting for another borrower: `Ok(None)` when every connection is in use
    /// (or others already wait). An idle connection is checked as `conn` checks it (one
    /// opened before a failover sign is thrown away); when none is idle but the pool is
    /// below its size, one is opened, within the connect timeout. For spreading work over
    /// several pools (say, one per core) before queueing on one.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db, other: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let conn = match db.try_conn().await? {
    ///     Some(conn) => conn,
    ///     None => other.conn().await?,
    /// };
    /// conn.execute("SELECT 1", &[]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn try_conn(&self) -> Result<Option<Conn>, DbError> {
        let timeouts = deadpool_postgres::Timeouts {
            wait: Some(Duration::ZERO),
            ..self.pool.timeouts()
        };
        match self.pool.timeout_get(&timeouts).await {
            Ok(object) => Ok(Some(Conn::new(
                object,
                self.server.clone(),
                self.unnamed.clone(),
            ))),
            Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => Ok(None),
            Err(err) => Err(self.pool_error(err)),
        }
    }

    /// A pool error as [`DbError`]: a failure to open a connection names the endpoint.
    fn pool_error(&self, err: PoolError) -> DbError {
        match err {
            PoolError::Backend(err) => DbError::Connect(super::connect::ConnectError::connecting(
                err,
                (*self.endpoint).clone(),
            )),
            other => other.into(),
        }
    }

    /// `SELECT 1` within `timeout`: readiness.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) {
    /// let up = db.ping(std::time::Duration::from_secs(1)).await.is_ok();
    /// # }
    /// ```
    pub async fn ping(&self, timeout: Duration) -> Result<(), DbError> {
        let ping = async {
            let conn = self.conn().await?;
            conn.query_one("SELECT 1", &[]).await?;
            self.server.failover.answered();
            Ok(())
        };
        tokio::time::timeout(timeout, ping)
            .await
            .map_err(|_| DbError::Unavailable(format!("no answer within {timeout:?}")))?
    }

    /// Readiness: one round trip on a pooled connection within `timeout` that also asks
    /// whether the server takes writes ([`Ready::ReadOnly`] if not), except that a pool
    /// whose connections are all in use (the wait for one times out) is
    /// [`Ready::Busy`] rather than an error: busy is not down.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) {
    /// use pgbridge::db::Ready;
    ///
    /// let ready = matches!(
    ///     db.check_ready(std::time::Duration::from_secs(1)).await,
    ///     Ok(Ready::Answered | Ready::Busy)
    /// );
    /// # }
    /// ```
    pub async fn check_ready(&self, timeout: Duration) -> Result<Ready, DbError> {
        let timeouts = deadpool_postgres::Timeouts {
            wait: Some(timeout / 2),
            create: Some(timeout),
            recycle: Some(timeout),
        };
        let check = async {
            let object = match self.pool.timeout_get(&timeouts).await {
                Ok(object) => object,
                Err(deadpool_postgres::PoolError::Timeout(
                    deadpool_postgres::TimeoutType::Wait,
                )) => {
                    return Ok(Ready::Busy);
                }
                Err(err) => return Err(DbError::from(err)),
            };
            let conn = Conn::new(object, self.server.clone(), self.unnamed.clone());
            let row = conn
                .query_one(
                    "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only')::bool",
                    &[],
                )
                .await?;
            // Seen by the shared path: a slot that failed to connect a moment ago tries
            // again now, so that what `/readyz` says is what requests find.
            self.server.failover.answered();
            if row.try_get::<_, bool>(0).unwrap_or(false) {
                Ok(Ready::ReadOnly)
            } else {
                Ok(Ready::Answered)
            }
        };
        tokio::time::timeout(timeout, check)
            .await
            .map_err(|_| DbError::Unavailable(format!("no answer within {timeout:?}")))?
    }

    /// Waits until Postgres answers, retrying with a backoff that doubles from 100 ms up to
    /// `max_backoff`; logs each failure. Returns when the database is ready, or at once with
    /// the error when retrying cannot help ([`DbError::is_permanent`]: authentication, a
    /// missing database, a certificate or TLS problem) — start-up should then fail.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), pgbridge::db::DbError> {
    /// use pgbridge::db::{Db, DbConfig};
    ///
    /// let db = Db::connect(&DbConfig::new("postgres://app@localhost/app"))?;
    /// db.wait_until_ready(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_until_ready(&self, max_backoff: Duration) -> Result<(), DbError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), max_backoff);
        let mut attempt = 1u32;
        loop {
            match self.ping(Duration::from_secs(5)).await {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::info!(attempt, "database is ready");
                    }
                    return Ok(());
                }
                Err(err) if err.is_permanent() => return Err(err),
                Err(err) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(attempt, retry_in = ?delay, error = %err, "database not ready");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    /// How many statements this pool (and the standbys' pools of a
    /// [`ReadRouter`](super::replica::ReadRouter) built on it) has cancelled on the server
    /// because the future awaiting them was dropped, or ran past a client-side statement
    /// timeout; the shared path's cancels included. Shown on `/metrics` as
    /// `pgbridge_db_cancels_total`.
    ///
    /// ```no_run
    /// # fn demo(db: pgbridge::db::Db) {
    /// println!("{} cancels sent", db.cancels_sent());
    /// # }
    /// ```
    pub fn cancels_sent(&self) -> u64 {
        self.server.sent.get()
    }

    /// Through a transaction pooler (`DB_POOL_MODE=transaction`): how many owner-scoped
    /// units ran a second time because the server connection the pooler lent them lacked a
    /// statement the service prepares there by name (see
    /// [`server_prepared`](super::server_prepared)). Each server connection misses each
    /// statement once, so this stays near connections × statements; one that keeps rising
    /// means the pooler discards them (`server_reset_query_always`). Always 0 otherwise.
    /// Shown on `/metrics` as `pgbridge_db_server_prepares_total`.
    ///
    /// ```no_run
    /// # fn demo(db: pgbridge::db::Db) {
    /// println!("{} statements prepared on a pooler's server connections", db.server_prepares());
    /// # }
    /// ```
    pub fn server_prepares(&self) -> u64 {
        self.unnamed.as_ref().map_or(0, |types| {
            types
                .server_prepares
                .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// The cancel counter, for a pool that counts with this one.
    pub(crate) fn cancel_count(&self) -> CancelCount {
        self.server.sent.clone()
    }

    /// The failover signs seen on this pool's connections: statements refused as
    /// read-only (`25006`) and connections lost (see [`super::failover`]).
    ///
    /// ```no_run
    /// # fn demo(db: pgbridge::db::Db) {
    /// let signs = db.failover().counts();
    /// println!("{} read-only errors, {} connections lost", signs.read_only, signs.lost);
    /// # }
    /// ```
    pub fn failover(&self) -> &Marks {
        &self.server.failover
    }

    /// The pool's current state.
    ///
    /// ```no_run
    /// # fn demo(db: pgbridge::db::Db) {
    /// let status = db.status();
    /// println!("{} of {} connections in use", status.size - status.available, status.max_size);
    /// # }
    /// ```
    pub fn status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }
}
