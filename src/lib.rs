//! **pgbridge** — an asynchronous WSGI for Rust, served on axum, with non-blocking Postgres.
//!
//! In 2008 the Python Web-SIG sketched an *asynchronous WSGI*: an application keeps the
//! `app(environ, start_response)` shape but may suspend — "wake me when this socket is
//! readable, or after a timeout" — so one event loop serves thousands of requests waiting on
//! Postgres. Its flaw was that every function in the call chain had to `yield`. Rust's
//! `async`/`await` removes that flaw. This crate is that contract, done in Rust:
//!
//! - [`awsgi`]: the contract (PEP 3333's rules, the fdevent extension) and the tower layer
//!   that serves it on axum — the workspace crate `awsgi/`, re-exported here. It knows
//!   nothing of Postgres.
//! - [`db`]: shared, pipelined connections for single statements (`db.shared()`) and a
//!   deadpool-postgres pool of exclusive ones (`db.conn()`), with statements dealt with on
//!   the server when the request awaiting them goes away.
//! - [`apps`]: applications on the contract, each with its table of [`routes`](mod@routes); [`router`]
//!   mounts every table, and the index at `/` lists it.
//! - [`config`], [`error`]: every setting in one place; one JSON error shape.
//! - [`embedded_pg`]: a private PostgreSQL cluster from the machine's server binaries, the
//!   database of `cargo run` with no `DATABASE_URL` and of the test harness.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use pgbridge::{AppState, config::Config, router};
//!
//! let config = Config::new("postgres://postgres@localhost/postgres");
//! let state = AppState::new(config)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router(state)).await?;
//! # Ok(()) }
//! ```

#![warn(
    missing_docs,
    unreachable_pub,
    rust_2018_idioms,
    missing_debug_implementations
)]
#![forbid(unsafe_code)]

pub mod apps;
pub mod auth;
/// The contract crate (`awsgi/` in this workspace), re-exported so that a user of pgbridge
/// names it `pgbridge::awsgi` without a second dependency.
pub use awsgi;
pub mod backoff;
pub mod bulkhead;
pub mod config;
pub mod db;
mod drain;
pub mod embedded_pg;
pub mod error;
pub mod http;
mod http_edge;
pub mod keyed_limit;
pub mod log_secrets;
pub mod metrics;
mod request_log;
pub mod routes;
pub mod server;
pub mod unavailable_log;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Extension;
use axum::Router;

use crate::apps::Apps;
use crate::config::Config;
use crate::db::replica::ReadRouter;
use crate::db::{Db, DbError};
use crate::metrics::{DbGauges, Metrics};
use crate::routes::Route;
use awsgi::AwsgiLayer;

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
    /// [`bulkhead`]).
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
        let db = Db::connect(&config.db())?;
        let reads = ReadRouter::new(db.clone(), &config.read_route(), &config.db())?;
        let mut core_config = config.db();
        core_config.shared.connections = 1;
        core_config.pool_size = (config.db_pool_size / cores.max(1)).max(1);
        let core_dbs = (0..cores)
            .map(|_| Db::connect(&core_config))
            .collect::<Result<Vec<_>, _>>()?;
        let apps = Apps::start(&db, &config);
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

/// Every route the service serves, in the order the index at `/` lists them: each module's
/// table ([`routes::Route`]), joined. [`router`] mounts exactly these. To add a resource,
/// add its module's `routes()` here.
///
/// ```
/// let table = pgbridge::routes();
/// assert!(table.iter().any(|r| r.path == "/notes/{id}"));
/// ```
pub fn routes() -> Vec<Route> {
    [
        apps::index::routes(),
        apps::health::routes(),
        apps::postgres_async::routes(),
        apps::poll_sleep::routes(),
        apps::notes::routes(),
        apps::accounts::routes(),
        metrics::routes(),
        apps::web::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The whole HTTP surface: the [`routes()`] table mounted (the contract's applications
/// through the [`AwsgiLayer`], native axum handlers as they are), under the service's
/// tower-http layers (request id, tracing, timeout, JSON errors).
pub fn router(state: AppState) -> Router {
    let awsgi = AwsgiLayer::new()
        .body_limit(state.config.body_limit_bytes)
        .server(
            state.config.bind_addr.ip().to_string(),
            state.config.bind_addr.port(),
        )
        .error_responder(error::awsgi_error_response);
    let (routes, listing) = routes::mount(routes(), &state, &awsgi, state.config.validate_apps);
    let mut auth_settings = auth::AuthSettings::from_config(&state.config);
    auth_settings.stats = state.login_stats.clone();
    let routes = routes
        .layer(Extension(listing))
        .layer(Extension(state.db.clone()))
        .layer(Extension(state.reads.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.draining.clone(),
            drain::refuse_reads,
        ))
        .layer(Extension(auth_settings));
    let routes = state.apps.layer(routes);
    http_edge::layers(routes, &state)
}
