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
//! - [`resource`]: the resource kit, the way to write a JSON resource owned by an account
//!   (`apps::notes` is its worked example).
//! - [`api_doc`]: the OpenAPI document `/openapi.json` serves, built from the route table.
//! - [`config`], [`error`]: every setting in one place; one JSON error shape.
//! - [`embedded_pg`]: a private PostgreSQL cluster from the machine's server binaries, the
//!   database of `cargo run` with no `DATABASE_URL` and of the test harness.
//!
//! - [`startup`]: [`Application`] — bind, the embedded database, migrations, serving and the
//!   drain — which the binary runs, and the tests run in-process.
//!
//! ```no_run
//! # async fn run() -> Result<(), pgbridge::StartError> {
//! use pgbridge::{Application, config::Config};
//!
//! let config = Config::new("postgres://postgres@localhost/postgres");
//! let app = Application::build(config).await?;
//! println!("listening on {}", app.addr());
//! app.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

#![warn(
    missing_docs,
    unreachable_pub,
    rust_2018_idioms,
    missing_debug_implementations
)]
#![forbid(unsafe_code)]

pub mod api_doc;
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
pub mod log_fields;
pub mod log_secrets;
pub mod metrics;
pub mod request;
pub mod resource;
pub mod routes;
pub mod server;
pub mod startup;
mod state;
pub mod unavailable_log;

pub use startup::{Application, StartError};
pub use state::AppState;

use axum::Extension;
use axum::Router;
use tower::ServiceBuilder;

use crate::routes::Route;
use awsgi::AwsgiLayer;

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
        apps::health::metrics_routes(),
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
    router_with(state, Vec::new())
}

/// [`router`], serving `extra` routes too (after the [`routes()`] table): a resource defined
/// outside the crate (a test's, a plug-in's) is mounted, listed and documented like the
/// service's own.
///
/// ```no_run
/// # async fn run(state: pgbridge::AppState) {
/// let extra = pgbridge::resource::routes::<pgbridge::apps::notes::Notes>();
/// # let extra: Vec<pgbridge::routes::Route> = extra.into_iter().take(0).collect();
/// let router = pgbridge::router_with(state, extra);
/// # let _ = router; }
/// ```
pub fn router_with(state: AppState, extra: Vec<Route>) -> Router {
    Router::new().fallback_service(stack_with(state, extra))
}

/// [`router`] as the server serves it: the same routes under the same layers, with no
/// `axum::Router` around the layers (one would route every request a second time).
///
/// ```no_run
/// # async fn run(state: pgbridge::AppState) {
/// let stack: pgbridge::server::Stack = pgbridge::stack(state);
/// # let _ = stack; }
/// ```
pub fn stack(state: AppState) -> server::Stack {
    stack_with(state, Vec::new())
}

/// [`router_with`] as the server serves it (see [`stack`]).
///
/// ```no_run
/// # async fn run(state: pgbridge::AppState) {
/// let stack = pgbridge::stack_with(state, Vec::new());
/// # let _ = stack; }
/// ```
pub fn stack_with(state: AppState, extra: Vec<Route>) -> server::Stack {
    let awsgi = AwsgiLayer::new()
        .body_limit(state.config.body_limit_bytes)
        .server(
            state.config.bind_addr.ip().to_string(),
            state.config.bind_addr.port(),
        )
        .error_responder(error::awsgi_error_response);
    let mut table = routes();
    table.extend(extra);
    let document = apps::web::ApiDocument::new(api_doc::text(&routes::document(&table)));
    let (routes, listing) = routes::mount(table, &state, &awsgi, state.config.validate_apps);
    let mut auth_settings = auth::AuthSettings::from_config(&state.config);
    auth_settings.stats = state.login_stats.clone();
    // `with_state(())` turns every handler into its final route once, here: a router left
    // without it builds each handler's route — a clone of a box for every layer above it —
    // on every request.
    let routes = state.apps.layer(routes).with_state(());
    // The layers every request passes, around the router as one service, not added with
    // `Router::layer`: that wraps each route in a box per layer, and a request clones every
    // box of its route's chain once per level (305 allocations per `GET /healthz` when all
    // the layers were added that way; `cargo run --example stack_allocations`).
    // The values a request may read, but most do not: one extension for all of them.
    let mut provided = ::http::Extensions::new();
    provided.insert(auth_settings);
    provided.insert(state.reads.clone());
    provided.insert(listing);
    provided.insert(document);
    let service = ServiceBuilder::new()
        .layer(drain::closing(&state.draining))
        .layer(drain::refusal(&state.draining))
        .layer(Extension(request::Provided::new(provided)))
        .layer(Extension(state.db.clone()))
        .service(routes);
    http_edge::layers(service, &state)
}
