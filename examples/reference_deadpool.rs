//! Reference program for `bench/run.sh`: plain axum + deadpool-postgres, the way most
//! services are written — one pooled connection per in-flight request, statements
//! prepared per connection (`prepare_cached`), the multi-threaded runtime.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres BIND_ADDR=127.0.0.1:8082 \
//!     cargo run --release --example reference_deadpool
//! ```
//!
//! `DB_POOL_SIZE` (default 32) sets the pool.

#[path = "shared/fortunes_page.rs"]
mod fortunes_page;

use std::str::FromStr;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};
use tokio_postgres::NoTls;

const WORLD: &str = "SELECT id, randomnumber FROM world WHERE id = $1";
const FORTUNES: &str = "SELECT id, message FROM fortune";

#[derive(Serialize)]
struct World {
    id: i32,
    #[serde(rename = "randomNumber")]
    random_number: i32,
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
impl<E: std::fmt::Display> From<E> for Failure {
    fn from(err: E) -> Self {
        eprintln!("database error: {err}");
        Failure
    }
}

fn server(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("deadpool"));
    response
}

async fn db(State(pool): State<Pool>) -> Result<Response, Failure> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(WORLD).await?;
    let row = client.query_one(&statement, &[&random_id()]).await?;
    let world = World {
        id: row.get(0),
        random_number: row.get(1),
    };
    Ok(server(Json(world).into_response()))
}

#[derive(Deserialize)]
struct Count {
    queries: Option<String>,
}

async fn queries(State(pool): State<Pool>, Query(q): Query<Count>) -> Result<Response, Failure> {
    let n = q
        .queries
        .and_then(|q| q.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 500) as usize;
    let client = pool.get().await?;
    let statement = client.prepare_cached(WORLD).await?;
    let ids: Vec<i32> = (0..n).map(|_| random_id()).collect();
    let params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 1]> =
        ids.iter().map(|id| [id as _]).collect();
    let rows = try_join_all(params.iter().map(|p| client.query_one(&statement, p))).await?;
    let worlds: Vec<World> = rows
        .iter()
        .map(|row| World {
            id: row.get(0),
            random_number: row.get(1),
        })
        .collect();
    Ok(server(Json(worlds).into_response()))
}

async fn fortunes(State(pool): State<Pool>) -> Result<Response, Failure> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(FORTUNES).await?;
    let rows = client.query(&statement, &[]).await?;
    let html = fortunes_page::page(&rows)?;
    Ok(server(Html(html).into_response()))
}

async fn plaintext() -> Response {
    server(([(header::CONTENT_TYPE, "text/plain")], "Hello, World!").into_response())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:8082".into());
    let size = std::env::var("DB_POOL_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let manager = Manager::from_config(
        tokio_postgres::Config::from_str(&url)?,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(size).build()?;
    let app = Router::new()
        .route("/plaintext", get(plaintext))
        .route("/db", get(db))
        .route("/queries", get(queries))
        .route("/fortunes", get(fortunes))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("reference (axum + deadpool, pool {size}) on http://{bind}");
    axum::serve(listener, app).await?;
    Ok(())
}
