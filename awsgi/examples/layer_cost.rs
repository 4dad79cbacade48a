//! The layer's own CPU cost per request, timed in process: one axum `Router` serves
//! TechEmpower's `/plaintext` answer through the layer and from a native handler (the
//! example's twin, `examples/techempower/native.rs`), called directly — no sockets, no
//! hyper, no kernel — so what differs is the layer. Pairs of runs alternate the two routes;
//! the median of the pairs' ratios and differences is printed (a shared machine's noise
//! moves both halves of a pair together). A measurement to read, not a test.
//!
//! ```sh
//! cargo run --release -p awsgi --example layer_cost        # PAIRS=40 REQUESTS=20000
//! ```

use std::time::Instant;

use awsgi::{AwsgiLayer, Body, Environ, Error, StartResponse};
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use tower::{Layer, Service};

async fn through_the_layer(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
    start_response.start(
        "200 OK",
        [("Content-Type", "text/plain"), ("Server", "pgbridge")],
    )?;
    Ok(Body::from("Hello, World!"))
}

async fn native() -> Response {
    let mut response = (
        [(http::header::CONTENT_TYPE, "text/plain")],
        "Hello, World!",
    )
        .into_response();
    response.headers_mut().insert(
        http::header::SERVER,
        http::HeaderValue::from_static("pgbridge"),
    );
    response
}

/// Mean nanoseconds per request over `n` requests to `path`, body collected.
async fn run(router: &mut Router, path: &'static str, n: usize) -> Result<f64, Error> {
    let started = Instant::now();
    for _ in 0..n {
        let request = http::Request::get(path)
            .header("host", "localhost:8080")
            .body(axum::body::Body::empty())?;
        let response = Service::<http::Request<axum::body::Body>>::call(router, request).await?;
        let body = response.into_body().collect().await.map_err(Error::new)?;
        std::hint::black_box(body);
    }
    Ok(started.elapsed().as_nanos() as f64 / n as f64)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (pairs, requests) = (
        env_or("PAIRS", 40).max(1),
        env_or("REQUESTS", 20_000).max(1),
    );
    let mut router = Router::new()
        .route_service("/plaintext", AwsgiLayer::new().layer(through_the_layer))
        .route("/native/plaintext", get(native));
    run(&mut router, "/plaintext", requests).await?;
    run(&mut router, "/native/plaintext", requests).await?;
    let (mut layer, mut twin, mut ratio, mut extra) = (vec![], vec![], vec![], vec![]);
    for _ in 0..pairs {
        let a = run(&mut router, "/plaintext", requests).await?;
        let b = run(&mut router, "/native/plaintext", requests).await?;
        layer.push(a);
        twin.push(b);
        ratio.push(a / b);
        extra.push(a - b);
    }
    println!(
        "ns per request (median of {pairs} pairs of {requests}): layer {:.0}, native {:.0}; \
         layer/native {:.3}, layer - native {:.0} ns",
        median(layer),
        median(twin),
        median(ratio),
        median(extra)
    );
    Ok(())
}
