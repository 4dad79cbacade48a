//! [`Db`]: the deadpool-postgres pool, built from [`DbConfig`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::conn::ServerAddr;
use super::{Conn, DbError, Shared, SharedConfig};

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
            pool_size: 16,
            pool_wait: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(15),
            shared: SharedConfig::default(),
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
    server: Option<Arc<ServerAddr>>,
    shared: Shared,
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
    /// Builds the pool and the shared connection set. Fails only on a malformed URL.
    pub fn connect(config: &DbConfig) -> Result<Self, DbError> {
        let pg = pg_config(config)?;
        let server = ServerAddr::of(&pg).map(Arc::new);
        let mut shared_pg = pg.clone();
        if shared_pg.get_application_name() == Some("pgbridge") {
            shared_pg.application_name("pgbridge-shared");
        }
        let shared = Shared::new(
            config.shared,
            shared_pg,
            server.clone(),
            config.pool_wait,
            config.connect_timeout,
        );
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .wait_timeout(Some(config.pool_wait))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|err| DbError::Config(err.to_string()))?;
        Ok(Self {
            pool,
            server,
            shared,
        })
    }

    /// The shared, pipelined connections: for single short statements.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let n: i64 = db.shared().query_one("SELECT count(*) FROM notes", &[]).await?.get(0);
    /// # Ok(()) }
    /// ```
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// An exclusive connection from the pool, within the wait timeout: for transactions,
    /// `LISTEN`, session state, and statements that may run long.
    pub async fn conn(&self) -> Result<Conn, DbError> {
        let object = self.pool.get().await?;
        Ok(Conn::new(object, self.server.clone()))
    }

    /// `SELECT 1` within `timeout`: readiness.
    pub async fn ping(&self, timeout: Duration) -> Result<(), DbError> {
        let ping = async {
            let conn = self.conn().await?;
            conn.query_one("SELECT 1", &[]).await.map(drop)
        };
        tokio::time::timeout(timeout, ping)
            .await
            .map_err(|_| DbError::Unavailable(format!("no answer within {timeout:?}")))?
    }

    /// Waits until Postgres answers, retrying with a backoff that doubles from 100 ms up to
    /// `max_backoff`; logs each failure. Returns when the database is ready.
    pub async fn wait_until_ready(&self, max_backoff: Duration) {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1u32;
        loop {
            match self.ping(Duration::from_secs(5)).await {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::info!(attempt, "database is ready");
                    }
                    return;
                }
                Err(err) => {
                    tracing::warn!(attempt, retry_in = ?backoff, error = %err, "database not ready");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(max_backoff);
                    attempt += 1;
                }
            }
        }
    }

    /// The pool's current state.
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

/// The driver's configuration for every connection of `config` (pooled or shared):
/// connect timeout, `statement_timeout`, application name.
fn pg_config(config: &DbConfig) -> Result<tokio_postgres::Config, DbError> {
    let mut pg = tokio_postgres::Config::from_str(&config.url)
        .map_err(|err| DbError::Config(format!("DATABASE_URL: {err}")))?;
    pg.connect_timeout(config.connect_timeout);
    let statement_ms = config.statement_timeout.as_millis();
    let options = match pg.get_options() {
        Some(existing) => format!("{existing} -c statement_timeout={statement_ms}"),
        None => format!("-c statement_timeout={statement_ms}"),
    };
    pg.options(options);
    if pg.get_application_name().is_none() {
        pg.application_name("pgbridge");
    }
    Ok(pg)
}
