//! [`AppState`]: what the router's handlers share, built once at startup (re-exported as
//! `pgbridge::AppState`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::apps::Apps;
use crate::config::Config;
use crate::db::replica::ReadRouter;
use crate::db::{Db, DbError};
use crate::metrics::{DbGauges, Metrics};
use crate::{auth, bulkhead};

/// What the router's handlers share: the pool, each application's own state, the
/// configuration.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database pool (also in every environ's extensions).
    pub db: Db,
    /// Each application's long-lived state (the notes' event feed), in the environ's
    /// extensions too.
    pub apps: Apps,
    /// The service's settings.
    pub config: Arc<Config>,
    /// The `/metrics` registry: request counters, and the collectors read when scraped.
    pub metrics: Arc<Metrics>,
    /// Reads that tolerate lag: standbys (`DATABASE_READ_URL`), else the primary.
    pub reads: ReadRouter,
    /// Login counters (`/metrics`): passwords checked, logins throttled, sessions capped.
    pub login_stats: Arc<auth::LoginStats>,
    /// Set once [`shutdown`](Self::shutdown) began: `/readyz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// Each class of route's share of the pool and of the long requests (see
    /// [`bulkhead`](crate::bulkhead)).
    pub bulkheads: bulkhead::Bulkheads,
}

impl AppState {
    /// Builds the pool (opening no connection yet) and starts the applications' background
    /// work ([`Apps::start`]), which connects in the background. Needs a tokio runtime.
    /// `PGSSLMODE`/`PGSSLROOTCERT` are folded into every database URL here, so every
    /// connection sees them.
    pub fn new(config: Config) -> Result<Self, DbError> {
        Ok(Self::per_core(config, 0)?.0)
    }

    /// [`new`](Self::new), plus one state per core for `RUNTIME=percore`: each the same but
    /// for its own [`Db`] (one shared connection, `DB_POOL_SIZE / cores` pooled ones) and
    /// read router, opened lazily by the runtime that uses it. Everything else — settings,
    /// the event feed (one `LISTEN` connection), the draining flag, and one `/metrics`
    /// registry whose database gauges sum every core's — is the process's, shared.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), pgbridge::db::DbError> {
    /// use clap::Parser;
    /// let config = pgbridge::config::Config::parse_from(["pgbridge"]);
    /// let (process, cores) = pgbridge::AppState::per_core(config, 2)?;
    /// assert_eq!(cores.len(), 2);
    /// # let _ = process; Ok(()) }
    /// ```
    pub fn per_core(mut config: Config, cores: usize) -> Result<(Self, Vec<Self>), DbError> {
        config.check_pooler().map_err(DbError::Config)?;
        config.fold_tls_defaults();
        // The session cache goes with every Db, so that whatever holds one (a request, an
        // open stream) reaches it; its revocations come through the feed's LISTEN.
        let sessions = (config.session_cache_size > 0).then(|| {
            Arc::new(auth::SessionCache::new(
                config.session_cache_size,
                std::time::Duration::from_secs(config.session_cache_ttl_secs.max(1)),
            ))
        });
        let with_sessions = |db: Db| match &sessions {
            Some(cache) => db.attach(cache.clone()),
            None => db,
        };
        let db = with_sessions(Db::connect(&config.db())?);
        let reads = ReadRouter::new(db.clone(), &config.read_route(), &config.db())?;
        let mut core_config = config.db();
        core_config.shared.connections = 1;
        core_config.pool_size = (config.db_pool_size / cores.max(1)).max(1);
        let core_dbs = (0..cores)
            .map(|_| Db::connect(&core_config).map(with_sessions))
            .collect::<Result<Vec<_>, _>>()?;
        let taps = sessions.iter().map(|cache| cache.tap()).collect();
        let apps = Apps::start_with(&db, &config, taps);
        if let Some(cache) = &sessions {
            tokio::spawn(
                cache
                    .clone()
                    .arm_when_triggered(db.clone(), apps.notes.listener.stopped()),
            );
        }
        let bulkheads = bulkhead::Bulkheads::behind(
            config.bulkheads(),
            auth::client_addr::TrustedProxies::new(config.trusted_proxies.clone()),
        );
        let mut metrics = Metrics::default();
        metrics.register_collector(bulkheads.clone());
        if cores == 0 {
            metrics.register_collector(DbGauges(db.clone()));
        } else {
            metrics.register_collector(DbGauges::summed(db.clone(), core_dbs.clone()));
        }
        metrics.register_collector(crate::metrics::StandbyGauges(reads.clone()));
        apps.register_metrics(&mut metrics);
        let login_stats = Arc::new(auth::LoginStats::default());
        metrics.register_collector(auth::sessions::LoginGauges(login_stats.clone()));
        if let Some(cache) = &sessions {
            metrics.register_collector(auth::cache::CacheGauges(cache.clone()));
        }
        let state = Self {
            login_stats,
            db,
            apps,
            config: Arc::new(config),
            metrics: Arc::new(metrics),
            reads,
            draining: Arc::new(AtomicBool::new(false)),
            bulkheads,
        };
        let per_core = core_dbs
            .into_iter()
            .map(|db| {
                let reads = ReadRouter::new(db.clone(), &state.config.read_route(), &core_config)?;
                Ok(Self {
                    db,
                    reads,
                    ..state.clone()
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        Ok((state, per_core))
    }

    /// Begins a graceful stop: `/readyz` turns 503 ("draining"), event streams end, so
    /// in-flight requests can finish.
    pub fn shutdown(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.apps.stop();
    }
}
