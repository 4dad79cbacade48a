//! The TechEmpower Framework Benchmarks database tests, served twice over the same data
//! functions: through the contract (`AwsgiLayer`) at `/db`, `/queries`, …, and as native
//! axum handlers at `/native/db`, `/native/queries`, …, so the layer's cost is measured on
//! identical work. `/sequential/queries` (through the layer) awaits its queries one after
//! another, for comparison with the pipelined `/queries`.
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
//! `DB_SHARED_MAX_IN_FLIGHT` (default 256),
//! `RUNTIME=percore` (one current-thread runtime per core with `SO_REUSEPORT` listeners,
//! each with its own `Db`; default: one multi-threaded runtime).

use std::cell::Cell;
use std::time::Duration;

use awsgi::{Application, AwsgiLayer, Body, Environ, Error, StartResponse};
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures_util::future::try_join_all;
use http::{HeaderValue, StatusCode, header};
use pgbridge::db::{Db, DbConfig, DbError};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use tower::Layer;

// ---- data: shared by both variants -------------------------------------------------

/// A `world` row, as the benchmark's JSON names it.
#[derive(Debug, Clone, Copy, Serialize)]
struct World {
    id: i32,
    #[serde(rename = "randomNumber")]
    random_number: i32,
}

/// A `fortune` row.
#[derive(Debug, Clone)]
struct Fortune {
    id: i32,
    message: String,
}

const SELECT_WORLD: &str = "SELECT id, randomnumber FROM world WHERE id = $1";
const SELECT_FORTUNES: &str = "SELECT id, message FROM fortune";
const UPDATE_WORLDS: &str = "UPDATE world SET randomnumber = v.r \
     FROM (SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) AS v \
     WHERE world.id = v.id";

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let addr = &nanos as *const u64 as u64;
    (nanos ^ addr.rotate_left(32)) | 1
}

/// 1..=10000, from a per-thread xorshift: cheap, and good enough to spread the ids.
fn random_id() -> i32 {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x % 10_000) as i32 + 1
    })
}

/// `queries`, clamped to 1..=500; anything unparsable is 1 (the benchmark's rule).
fn query_count(raw: Option<&str>) -> usize {
    raw.and_then(|q| q.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 500) as usize
}

/// One row, on the shared pipelined connections: a single short statement.
async fn one_world(db: &Db) -> Result<World, DbError> {
    let row = db.shared().query_one(SELECT_WORLD, &[&random_id()]).await?;
    Ok(World {
        id: row.get(0),
        random_number: row.get(1),
    })
}

/// `n` rows, all in flight at once on the shared connections, pipelined with every other
/// request's statements.
async fn many_worlds(db: &Db, n: usize) -> Result<Vec<World>, DbError> {
    let conn = db.shared();
    let ids: Vec<i32> = (0..n).map(|_| random_id()).collect();
    let params: Vec<[&(dyn ToSql + Sync); 1]> =
        ids.iter().map(|id| [id as &(dyn ToSql + Sync)]).collect();
    let rows = try_join_all(params.iter().map(|p| conn.query_one(SELECT_WORLD, p))).await?;
    Ok(rows
        .iter()
        .map(|row| World {
            id: row.get(0),
            random_number: row.get(1),
        })
        .collect())
}

/// The obvious version: one query after another, on an exclusive connection.
async fn many_worlds_sequentially(db: &Db, n: usize) -> Result<Vec<World>, DbError> {
    let conn = db.conn().await?;
    let mut worlds = Vec::with_capacity(n);
    for _ in 0..n {
        let row = conn.query_one(SELECT_WORLD, &[&random_id()]).await?;
        worlds.push(World {
            id: row.get(0),
            random_number: row.get(1),
        });
    }
    Ok(worlds)
}

/// Reads `n` rows (pipelined), gives each a new number, and writes them back in one
/// statement, ids sorted so that concurrent updates lock rows in the same order.
async fn update_worlds(db: &Db, n: usize) -> Result<Vec<World>, DbError> {
    let mut worlds = many_worlds(db, n).await?;
    for world in &mut worlds {
        world.random_number = random_id();
    }
    let mut sorted = worlds.clone();
    sorted.sort_by_key(|w| w.id);
    sorted.dedup_by_key(|w| w.id);
    let ids: Vec<i32> = sorted.iter().map(|w| w.id).collect();
    let numbers: Vec<i32> = sorted.iter().map(|w| w.random_number).collect();
    // One statement: the shared path too.
    db.shared()
        .execute(UPDATE_WORLDS, &[&ids, &numbers])
        .await?;
    // A repeated id was written once, with its last number: answer consistently.
    for world in &mut worlds {
        if let Some(written) = sorted.iter().find(|w| w.id == world.id) {
            world.random_number = written.random_number;
        }
    }
    Ok(worlds)
}

/// The fortunes page: the rows, one more added now, sorted by message, escaped.
async fn fortunes_html(db: &Db) -> Result<String, DbError> {
    let rows = db.shared().query(SELECT_FORTUNES, &[]).await?;
    let mut fortunes: Vec<Fortune> = rows
        .iter()
        .map(|r| Fortune {
            id: r.get(0),
            message: r.get(1),
        })
        .collect();
    fortunes.push(Fortune {
        id: 0,
        message: "Additional fortune added at request time.".into(),
    });
    fortunes.sort_by(|a, b| a.message.cmp(&b.message));
    let mut html = String::with_capacity(2048);
    html.push_str("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr>");
    for fortune in &fortunes {
        html.push_str("<tr><td>");
        html.push_str(&fortune.id.to_string());
        html.push_str("</td><td>");
        escape_into(&fortune.message, &mut html);
        html.push_str("</td></tr>");
    }
    html.push_str("</table></body></html>");
    Ok(html)
}

/// HTML-escapes `text` onto `out`.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

// ---- through the contract ----------------------------------------------------------

const JSON: [(&str, &str); 2] = [("Content-Type", "application/json"), ("Server", "pgbridge")];

fn pool(environ: &Environ) -> Result<Db, Error> {
    environ
        .extensions()
        .get::<Db>()
        .cloned()
        .ok_or_else(|| Error::msg("no Db extension"))
}

async fn plaintext(_: Environ, sr: StartResponse) -> Result<Body, Error> {
    sr.start(
        "200 OK",
        [("Content-Type", "text/plain"), ("Server", "pgbridge")],
    )?;
    Ok(Body::from("Hello, World!"))
}

async fn json(_: Environ, sr: StartResponse) -> Result<Body, Error> {
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(
        &serde_json::json!({ "message": "Hello, World!" }),
    )?))
}

async fn db(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let world = one_world(&pool(&environ)?).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&world)?))
}

async fn queries(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    let worlds = many_worlds(&pool(&environ)?, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

async fn sequential_queries(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    let worlds = many_worlds_sequentially(&pool(&environ)?, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

async fn updates(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    let worlds = update_worlds(&pool(&environ)?, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

async fn fortunes(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let html = fortunes_html(&pool(&environ)?).await?;
    sr.start(
        "200 OK",
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Server", "pgbridge"),
        ],
    )?;
    Ok(Body::from(html))
}

// ---- native axum twins -------------------------------------------------------------

#[derive(Deserialize)]
struct Count {
    queries: Option<String>,
}

struct Failure(DbError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        eprintln!("database error: {}", self.0);
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

impl From<DbError> for Failure {
    fn from(err: DbError) -> Self {
        Self(err)
    }
}

fn server(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("pgbridge"));
    response
}

async fn native_plaintext() -> Response {
    server(([(header::CONTENT_TYPE, "text/plain")], "Hello, World!").into_response())
}

async fn native_json() -> Response {
    server(Json(serde_json::json!({ "message": "Hello, World!" })).into_response())
}

async fn native_db(State(db): State<Db>) -> Result<Response, Failure> {
    Ok(server(Json(one_world(&db).await?).into_response()))
}

async fn native_queries(State(db): State<Db>, Query(q): Query<Count>) -> Result<Response, Failure> {
    let n = query_count(q.queries.as_deref());
    Ok(server(Json(many_worlds(&db, n).await?).into_response()))
}

async fn native_updates(State(db): State<Db>, Query(q): Query<Count>) -> Result<Response, Failure> {
    let n = query_count(q.queries.as_deref());
    Ok(server(Json(update_worlds(&db, n).await?).into_response()))
}

async fn native_fortunes(State(db): State<Db>) -> Result<Response, Failure> {
    Ok(server(Html(fortunes_html(&db).await?).into_response()))
}

fn contract<A: Application>(layer: &AwsgiLayer, app: A) -> awsgi::AwsgiService<A> {
    layer.layer(app)
}

fn app(db: Db) -> Router {
    let layer = AwsgiLayer::new();
    Router::new()
        .route_service("/plaintext", contract(&layer, plaintext))
        .route_service("/json", contract(&layer, json))
        .route_service("/db", contract(&layer, self::db))
        .route_service("/queries", contract(&layer, queries))
        .route_service("/updates", contract(&layer, updates))
        .route_service("/fortunes", contract(&layer, fortunes))
        .route_service("/sequential/queries", contract(&layer, sequential_queries))
        .layer(Extension(db.clone()))
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

/// Serves on `listener` with its own `Db` (its shared connections belong to this runtime).
async fn serve(config: DbConfig, listener: tokio::net::TcpListener) -> Result<(), String> {
    let db = Db::connect(&config).map_err(|e| e.to_string())?;
    db.wait_until_ready(Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
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

/// `RUNTIME=percore`: one current-thread runtime per core, each with its own `SO_REUSEPORT`
/// listener and its own `Db` (one shared connection, the pool divided between cores).
/// Otherwise one multi-threaded runtime.
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

    if std::env::var("RUNTIME").as_deref() == Ok("percore") {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        config.shared.connections = 1;
        config.pool_size = (config.pool_size / cores).max(1);
        println!("techempower (per core x {cores}) listening on http://{bind}");
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                let config = config.clone();
                std::thread::spawn(move || -> Result<(), String> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(async {
                        let listener = reuseport_listener(bind).map_err(|e| e.to_string())?;
                        serve(config, listener).await
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
        serve(config, listener).await?;
        Ok(())
    })
}
