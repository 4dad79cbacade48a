//! The TechEmpower Framework Benchmarks database tests, served twice over the same data
//! functions: through the contract (`AwsgiLayer`) at `/db`, `/queries`, …, and as native
//! axum handlers at `/native/db`, `/native/queries`, …, so the layer's cost is measured on
//! identical work. `/sequential/queries` (through the layer) awaits its queries one after
//! another, for comparison with the pipelined `/queries`; `/shared/queries` and
//! `/pooled/queries` pipeline them always on the shared connections or always on one
//! pooled connection, for comparison with `/queries`' choice (`FANOUT_TO_POOL`).
//!
//! ```sh
//! psql "$DATABASE_URL" -f bench/techempower.sql
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --release --example techempower
//! curl localhost:8080/db; curl localhost:8080/native/fortunes
//! ```
//!
//! Single statements go on the shared, pipelined connections (`db.shared()`, one per core);
//! `/sequential/queries` uses an exclusive pooled connection.
//!
//! Settings (this program's own): `DATABASE_URL`, `BIND_ADDR` (default `127.0.0.1:8080`),
//! `DB_POOL_SIZE` (default 32), `DB_SHARED_CONNECTIONS` (default 0: one per core),
//! `DB_SHARED_MAX_IN_FLIGHT` (default 256), `FANOUT_TO_POOL` (default 8: `/queries` and
//! `/updates` with at least that many statements pipeline them on a pooled connection),
//! `RUNTIME` (default `percore`: one current-thread runtime per core, each with its own
//! `SO_REUSEPORT` listener and its own `Db` — one shared connection — so that a request,
//! its single statements and its response stay on one core; `multi`: one multi-threaded
//! runtime, one listener, one `Db`), `POOL_LAYOUT` (with `RUNTIME=percore`, where the
//! exclusive connections come from: `steal`, the default, the pool divided between cores,
//! each taking an idle connection from its own share, else an idle one from another core's,
//! else waiting on its own share and, once it has waited `STEAL_AFTER_MS` (default 10), on
//! every share at once — `shares.rs`; `percore`, the pool divided, each core on its own
//! share only, whose queues drift apart at 256 clients until one core's clients wait
//! several times the other's; `process`, one pool of `DB_POOL_SIZE` that every core takes
//! from — one FIFO queue, as plain deadpool has, at the price of waking the other core for
//! every other request. A connection's driver runs on the core that opened it in all three.
//! `bench/percore_split.sh` compares them). Accepted connections are `TCP_NODELAY` in both
//! runtimes.

mod contract;
mod data;
#[path = "../shared/fortunes_page.rs"]
mod fortunes_page;
mod native;
mod shares;

/// With `--features jemalloc`, the service binary's allocator.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::Duration;

use awsgi::{Application, AwsgiLayer};
use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use pgbridge::db::{Db, DbConfig};
use tower::Layer;

use data::ProcessPool;
use shares::PoolShares;

use contract::{
    db as db_route, fortunes, json, plaintext, pooled_queries, queries, sequential_queries,
    shared_queries, updates, with_db,
};
use native::*;

fn contract<A: Application>(layer: &AwsgiLayer, app: A) -> awsgi::AwsgiService<A> {
    layer.layer(app)
}

fn app(db: Db) -> Router {
    // Shared by every route and request: one `Arc` clone each, not a `Db` clone (several `Arc`s).
    let db = std::sync::Arc::new(db);
    let layer = AwsgiLayer::new();
    Router::new()
        .route_service("/plaintext", contract(&layer, plaintext))
        .route_service("/json", contract(&layer, json))
        .route_service("/db", contract(&layer, with_db(db.clone(), db_route)))
        .route_service("/queries", contract(&layer, with_db(db.clone(), queries)))
        .route_service("/updates", contract(&layer, with_db(db.clone(), updates)))
        .route_service("/fortunes", contract(&layer, with_db(db.clone(), fortunes)))
        .route_service(
            "/sequential/queries",
            contract(&layer, with_db(db.clone(), sequential_queries)),
        )
        .route_service(
            "/shared/queries",
            contract(&layer, with_db(db.clone(), shared_queries)),
        )
        .route_service(
            "/pooled/queries",
            contract(&layer, with_db(db.clone(), pooled_queries)),
        )
        .route("/native/plaintext", get(native_plaintext))
        .route("/native/json", get(native_json))
        .route("/native/db", get(native_db))
        .route("/native/queries", get(native_queries))
        .route("/native/updates", get(native_updates))
        .route("/native/fortunes", get(native_fortunes))
        .with_state(db)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Serves on `listener` with `db` (its shared connections belong to this runtime, opened on
/// first use).
async fn serve(db: Db, listener: tokio::net::TcpListener) -> Result<(), String> {
    db.wait_until_ready(Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
    // Responses are written whole: nothing for Nagle's algorithm to coalesce, only delay.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(error = %err, "TCP_NODELAY");
        }
    });
    axum::serve(listener, app(db))
        .await
        .map_err(|e| e.to_string())
}

/// A `SO_REUSEPORT` listener, so that one per core can share the address.
fn reuseport_listener(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// `RUNTIME=percore` (the default): one current-thread runtime per core, each with its own
/// `SO_REUSEPORT` listener and its own `Db` (one shared connection), each taking exclusive
/// connections from its share of the pool and, when that keeps it waiting, from the others'
/// (`POOL_LAYOUT=steal`, the default), from its share only (`POOL_LAYOUT=percore`) or all
/// from one pool (`POOL_LAYOUT=process`). `RUNTIME=multi`: one multi-threaded runtime.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_ansi(false)
        .init();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let bind: std::net::SocketAddr = std::env::var("BIND_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()?;
    let mut config = DbConfig::new(url);
    config.pool_size = env_or("DB_POOL_SIZE", 32);
    config.pool_wait = Duration::from_secs(5);
    config.shared.connections = env_or("DB_SHARED_CONNECTIONS", 0);
    config.shared.max_in_flight = env_or("DB_SHARED_MAX_IN_FLIGHT", 256);

    let mode = std::env::var("RUNTIME").unwrap_or_else(|_| "percore".into());
    if mode != "percore" && mode != "multi" {
        return Err(format!("RUNTIME={mode}: expected percore or multi").into());
    }
    let layout = std::env::var("POOL_LAYOUT").unwrap_or_else(|_| "steal".into());
    if !["steal", "percore", "process"].contains(&layout.as_str()) {
        return Err(format!("POOL_LAYOUT={layout}: expected steal, percore or process").into());
    }
    let steal_after = Duration::from_millis(env_or("STEAL_AFTER_MS", 10));
    if mode == "percore" {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        config.shared.connections = 1;
        // Open no connection until a core asks for one; each connection's driver then runs
        // on the runtime of the core that opened it.
        let dbs: Vec<Db> = if layout == "process" {
            let mut pool = config.clone();
            pool.shared.connections = 1;
            let process_pool = ProcessPool(Db::connect(&pool)?);
            // With one process pool a core's own pool serves only its readiness ping.
            config.pool_size = 1;
            (0..cores)
                .map(|_| Ok(Db::connect(&config)?.attach(process_pool.clone())))
                .collect::<Result<_, pgbridge::db::DbError>>()?
        } else {
            config.pool_size = (config.pool_size / cores).max(1);
            let shares: std::sync::Arc<[Db]> = (0..cores)
                .map(|_| Db::connect(&config))
                .collect::<Result<_, _>>()?;
            (0..cores)
                .map(|core| {
                    let db = shares[core].clone();
                    if layout == "steal" {
                        db.attach(PoolShares::new(shares.clone(), core, steal_after))
                    } else {
                        db
                    }
                })
                .collect()
        };
        println!("techempower (per core x {cores}) listening on http://{bind}");
        let threads: Vec<_> = dbs
            .into_iter()
            .map(|db| {
                std::thread::spawn(move || -> Result<(), String> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(async {
                        let listener = reuseport_listener(bind).map_err(|e| e.to_string())?;
                        serve(db, listener).await
                    })
                })
            })
            .collect();
        for thread in threads {
            thread.join().map_err(|_| "a server thread panicked")??;
        }
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        println!("techempower listening on http://{}", listener.local_addr()?);
        serve(Db::connect(&config)?, listener).await?;
        Ok(())
    })
}
