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
//! - [`apps`]: applications on the contract; [`router`] mounts them beside native routes.
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

pub mod apps;
pub mod auth;
/// The contract crate (`awsgi/` in this workspace), re-exported so that a user of pgbridge
/// names it `pgbridge::awsgi` without a second dependency.
pub use awsgi;
pub mod backoff;
pub mod config;
pub mod db;
mod drain;
pub mod embedded_pg;
pub mod error;
mod http_edge;
pub mod metrics;
mod request_log;
pub mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::routing::{MethodFilter, get, on_service};
use axum::{Extension, Router};
use tower::Layer;

use crate::apps::notes::events::{Broadcast, Feed};
use crate::config::Config;
use crate::db::listener::{ListenConfig, Listener};
use crate::db::replica::ReadRouter;
use crate::db::{Db, DbError};
use crate::metrics::Metrics;
use awsgi::{Application, AwsgiLayer, Validator};

/// What the router's handlers share: the pool, the note-event feed, the configuration.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database pool (also in every environ's extensions).
    pub db: Db,
    /// The one `LISTEN` connection and its subscribers (in the environ's extensions too).
    pub feed: Feed,
    /// The service's settings.
    pub config: Arc<Config>,
    /// Request counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Reads that tolerate lag: standbys (`DATABASE_READ_URL`), else the primary.
    pub reads: ReadRouter,
    /// Set once [`shutdown`](Self::shutdown) began: `/readyz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
}

impl AppState {
    /// Builds the pool (opening no connection yet) and starts the note-event listener,
    /// which connects in the background. Needs a tokio runtime. `PGSSLMODE`/`PGSSLROOTCERT`
    /// are folded into every database URL here, so every connection sees them.
    pub fn new(mut config: Config) -> Result<Self, DbError> {
        config.check_pooler().map_err(DbError::Config)?;
        config.fold_tls_defaults();
        let db = Db::connect(&config.db())?;
        let reads = ReadRouter::new(db.clone(), &config.read_route(), &config.db())?;
        let listener = Listener::spawn(
            ListenConfig {
                url: config.events_url().to_owned(),
                channel: apps::notes::events::CHANNEL,
                capacity: config.events_buffer,
                connect_timeout: Duration::from_millis(config.db_connect_timeout_ms),
                max_backoff: Duration::from_secs(5),
                ping_interval: Duration::from_millis(config.events_listen_ping_ms),
            },
            Broadcast::parse,
        );
        let feed = Feed::start(listener, &db, &config);
        Ok(Self {
            db,
            feed,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            reads,
            draining: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Begins a graceful stop: `/readyz` turns 503 ("draining"), event streams end, so
    /// in-flight requests can finish.
    pub fn shutdown(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.feed.listener.stop();
    }
}

/// The whole HTTP surface: the contract's applications mounted beside native axum
/// handlers, under the service's tower-http layers (request id, tracing, timeout, JSON
/// errors).
pub fn router(state: AppState) -> Router {
    let awsgi = AwsgiLayer::new()
        .body_limit(state.config.body_limit_bytes)
        .server(
            state.config.bind_addr.ip().to_string(),
            state.config.bind_addr.port(),
        )
        .error_responder(error::awsgi_error_response);
    let readiness = apps::health::Readiness {
        db: state.db.clone(),
        timeout: state.config.ready_timeout(),
        draining: state.draining.clone(),
    };

    let mount = Mount {
        layer: awsgi,
        validate: state.config.validate_apps,
    };

    // Each application with the methods it serves (GET also answers HEAD): any other
    // method is a 405 with `Allow`, answered here, before the application runs.
    let routes = Router::new();
    let routes = mount.at(routes, "/", GET, apps::index::app);
    let routes = mount.at(
        routes,
        "/seed/postgres-async",
        GET,
        apps::postgres_async::app,
    );
    let routes = mount.at(routes, "/seed/poll-sleep", GET, apps::poll_sleep::app);
    let routes = mount.at(routes, "/notes", GET.or(POST), apps::notes::app);
    let routes = mount.at(routes, "/notes/events", GET, apps::notes::events::app);
    let routes = mount.at(
        routes,
        "/notes/{id}",
        GET.or(PATCH).or(DELETE),
        apps::notes::app,
    );
    let routes = mount.at(routes, "/accounts", POST, apps::accounts::signup);
    let routes = mount.at(routes, "/accounts/me", GET, apps::accounts::me);
    let routes = mount.at(routes, "/sessions", POST, apps::accounts::login);
    let routes = mount.at(routes, "/sessions/current", DELETE, apps::accounts::logout);
    let auth_settings = auth::AuthSettings::from_config(&state.config);
    let routes = routes
        .route("/healthz", get(apps::health::healthz))
        .route("/readyz", get(apps::health::readyz).with_state(readiness))
        .route(
            "/metrics",
            get(metrics::handler).with_state(state.clone()).route_layer(
                axum::middleware::from_fn_with_state(
                    auth_settings.metrics_token.clone(),
                    auth::require_metrics_token,
                ),
            ),
        )
        .route("/openapi.json", get(apps::web::openapi))
        .route("/docs", get(apps::web::docs))
        .route("/assets/{name}", get(apps::web::asset));
    let routes = routes
        .layer(Extension(state.db.clone()))
        .layer(Extension(state.reads.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.draining.clone(),
            drain::refuse_reads,
        ))
        .layer(Extension(state.feed.clone()))
        .layer(Extension(auth_settings));
    http_edge::layers(routes, &state)
}

const GET: MethodFilter = MethodFilter::GET;
const POST: MethodFilter = MethodFilter::POST;
const PATCH: MethodFilter = MethodFilter::PATCH;
const DELETE: MethodFilter = MethodFilter::DELETE;

/// Mounts applications through the layer, under the `Validator` when configured.
struct Mount {
    layer: AwsgiLayer,
    validate: bool,
}

impl Mount {
    fn at<A: Application>(
        &self,
        router: Router,
        path: &str,
        methods: MethodFilter,
        app: A,
    ) -> Router {
        if self.validate {
            router.route(
                path,
                on_service(methods, self.layer.layer(Validator::new(app))),
            )
        } else {
            router.route(path, on_service(methods, self.layer.layer(app)))
        }
    }
}
