//! The smallest application on the contract, mounted on axum beside a native route and
//! under a tower-http layer.
//!
//! ```sh
//! cargo run --example hello                      # or BIND_ADDR=127.0.0.1:4000 cargo run --example hello
//! curl -i 'http://127.0.0.1:3000/hello?name=Ada'
//! curl -i  http://127.0.0.1:3000/native
//! ```

use std::time::Duration;

use awsgi::{AwsgiLayer, Body, Environ, Error, StartResponse};
use axum::{Router, routing::get};
use tower::Layer;
use tower_http::timeout::TimeoutLayer;

/// WSGI's hello world, asynchronous: `app(environ, start_response) -> body`.
async fn hello(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let name = environ.query("name").unwrap_or_else(|| "world".into());
    start_response.start("200 OK", [("Content-Type", "text/plain; charset=utf-8")])?;
    Ok(Body::from(format!("Hello, {name}!\n")))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route_service("/hello", AwsgiLayer::new().layer(hello))
        .route("/native", get(|| async { "a native axum handler\n" }))
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ));
    // The same variable the service reads; this example's own default port.
    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
