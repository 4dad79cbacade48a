//! Reference program for `bench/run.sh`: the per-core pipelined technique of the fastest
//! Rust entries of TechEmpower's last round, with none of pgbridge's guarantees (no
//! cancel on hang-up, no limits, no reconnect).
//!
//! One current-thread tokio runtime per core, each with its own `SO_REUSEPORT` listener and
//! **one** tokio-postgres connection whose statements are prepared at connect; the
//! queries of all of that core's concurrent requests are pipelined on it.
//!
//! `RUNTIME=multi` runs the same program on one multi-threaded runtime instead (one
//! listener, one worker per core, the same number of connections used round-robin): the
//! comparison of issue 10's item 4.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres BIND_ADDR=127.0.0.1:8081 \
//!     cargo run --release --example reference_percore
//! ```

#[path = "shared/fortunes_page.rs"]
mod fortunes_page;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, NoTls, Statement};

#[derive(Serialize)]
struct World {
    id: i32,
    #[serde(rename = "randomNumber")]
    random_number: i32,
}

/// One connection and its prepared statements.
struct Pg {
    client: Client,
    world: Statement,
    fortunes: Statement,
}

/// The connections this runtime uses (one in per-core mode).
struct Conns {
    pgs: Vec<Pg>,
    next: AtomicUsize,
}

impl Conns {
    fn pick(&self) -> &Pg {
        &self.pgs[self.next.fetch_add(1, Ordering::Relaxed) % self.pgs.len()]
    }
}

async fn connect(url: &str) -> Result<Pg, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            eprintln!("connection: {err}");
        }
    });
    let world = client
        .prepare("SELECT id, randomnumber FROM world WHERE id = $1")
        .await?;
    let fortunes = client.prepare("SELECT id, message FROM fortune").await?;
    Ok(Pg {
        client,
        world,
        fortunes,
    })
}

fn random_id() -> i32 {
    use std::cell::Cell;
    thread_local!(static S: Cell<u64> = Cell::new({
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        t | 1
    }));
    S.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % 10_000) as i32 + 1
    })
}

struct Failure;
impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}
impl From<tokio_postgres::Error> for Failure {
    fn from(err: tokio_postgres::Error) -> Self {
        eprintln!("database error: {err}");
        Failure
    }
}

fn server(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("reference"));
    response
}

async fn world(pg: &Pg) -> Result<World, tokio_postgres::Error> {
    let row = pg.client.query_one(&pg.world, &[&random_id()]).await?;
    Ok(World {
        id: row.get(0),
        random_number: row.get(1),
    })
}

async fn db(State(conns): State<Arc<Conns>>) -> Result<Response, Failure> {
    Ok(server(Json(world(conns.pick()).await?).into_response()))
}

#[derive(Deserialize)]
struct Count {
    queries: Option<String>,
}

async fn queries(
    State(conns): State<Arc<Conns>>,
    Query(q): Query<Count>,
) -> Result<Response, Failure> {
    let n = q
        .queries
        .and_then(|q| q.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 500) as usize;
    let pg = conns.pick();
    let worlds = try_join_all((0..n).map(|_| world(pg))).await?;
    Ok(server(Json(worlds).into_response()))
}

async fn fortunes(State(conns): State<Arc<Conns>>) -> Result<Response, Failure> {
    let pg = conns.pick();
    let rows = pg.client.query(&pg.fortunes, &[]).await?;
    let html = fortunes_page::page(&rows)?;
    Ok(server(Html(html).into_response()))
}

async fn plaintext() -> Response {
    server(([(header::CONTENT_TYPE, "text/plain")], "Hello, World!").into_response())
}

fn app(conns: Arc<Conns>) -> Router {
    Router::new()
        .route("/plaintext", get(plaintext))
        .route("/db", get(db))
        .route("/queries", get(queries))
        .route("/fortunes", get(fortunes))
        .with_state(conns)
}

fn listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn serve(addr: SocketAddr, url: String, connections: usize) -> Result<(), String> {
    let mut pgs = Vec::new();
    for _ in 0..connections {
        pgs.push(connect(&url).await.map_err(|e| e.to_string())?);
    }
    let conns = Arc::new(Conns {
        pgs,
        next: AtomicUsize::new(0),
    });
    let listener = listener(addr).map_err(|e| e.to_string())?;
    axum::serve(listener, app(conns))
        .await
        .map_err(|e| e.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let addr: SocketAddr = std::env::var("BIND_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8081".into())
        .parse()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if std::env::var("RUNTIME").as_deref() == Ok("multi") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()?;
        println!("reference (multi-threaded, {cores} connections) on http://{addr}");
        return Ok(runtime.block_on(serve(addr, url, cores))?);
    }
    println!("reference (per core x {cores}) on http://{addr}");
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(serve(addr, url, 1))
            })
        })
        .collect();
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => return Err("a server thread panicked".into()),
        }
    }
    Ok(())
}
