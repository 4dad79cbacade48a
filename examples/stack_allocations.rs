//! Heap allocations per request through the service's whole stack (`pgbridge::router`: the
//! edge layers, tracing at INFO as the binary logs, the route table's layers), for the
//! routes that touch no database: the stack's own cost, counted — deterministic, unlike a
//! timing, so a change to a middleware shows up exactly (issue 19, item 4).
//!
//! ```sh
//! cargo run --release --example stack_allocations
//! ```
//!
//! It needs no Postgres: the database URL points at a closed port, and `/healthz` and
//! `/nothing-here` (a 404 in the JSON shape) never ask for a connection.

use http_body_util::BodyExt;
use tower::ServiceExt;

#[path = "../awsgi/tests/support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

/// Allocations on this thread for one request to `path` and its whole body, the mean of
/// `ROUNDS` requests after a warm-up (lazily built tables allocate once).
async fn allocations_per_request(router: &axum::Router, path: &str, status: u16) -> f64 {
    const ROUNDS: usize = 1_000;
    let mut total = 0;
    for round in 0..ROUNDS + 20 {
        let request = http::Request::get(path)
            .header("Host", "127.0.0.1:8080")
            .body(axum::body::Body::empty())
            .expect("a request");
        let before = counting_alloc::allocations();
        let response = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body = response.into_body().collect().await.expect("the body");
        let after = counting_alloc::allocations();
        drop(body);
        if round >= 20 {
            total += after - before;
        }
    }
    total as f64 / ROUNDS as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The binary's default: INFO, formatted (into a sink here, so the count includes the
    // span's fields being recorded, but no terminal).
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("STACK_LOG").unwrap_or_else(|_| "info".into()))
        .fmt_fields(pgbridge::log_fields::FastFields)
        .with_ansi(false)
        .with_writer(std::io::sink)
        .init();
    // Background tasks (the event feed's reconnect loop) run on the worker threads; the
    // requests run on this one, where the allocations are counted.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = pgbridge::config::Config::new("postgres://nobody@127.0.0.1:1/nothing");
        let state = pgbridge::AppState::new(config)?;
        let router = pgbridge::router(state);
        for (path, status) in [("/healthz", 200), ("/nothing-here", 404)] {
            let n = allocations_per_request(&router, path, status).await;
            println!("GET {path:<14} {status}  {n:>6.2} allocations per request");
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
