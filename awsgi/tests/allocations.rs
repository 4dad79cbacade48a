//! Heap allocations per request through the layer, against a native axum handler giving
//! the same response on the same router: the layer's own cost, counted (deterministic,
//! unlike a timing). Its own test binary, because it installs a counting global allocator.
//!
//! `cargo test -p awsgi --test allocations -- --nocapture` prints both counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use awsgi::{AwsgiLayer, Body, Environ, Error, StartResponse};
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

/// The system allocator, counting the allocations made on each thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread-local may be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is passed unchanged to `System`, which upholds `GlobalAlloc`'s contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's layout goes to `System` as given.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` was allocated by `System` through this allocator with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BODY: &[u8] = br#"{"id":4174,"randomNumber":331}"#;

/// The TechEmpower `/db` answer's shape: two headers and a whole JSON body.
async fn through_the_layer(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
    start_response.start(
        "200 OK",
        [("Content-Type", "application/json"), ("Server", "pgbridge")],
    )?;
    Ok(Body::from(BODY.to_vec()))
}

async fn native() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "application/json"),
            (http::header::SERVER, "pgbridge"),
        ],
        BODY.to_vec(),
    )
        .into_response()
}

/// Allocations on this thread for one request to `path` and its whole body, the mean of
/// `ROUNDS` requests after a warm-up (routers and lazily built tables allocate once).
async fn allocations_per_request(router: &Router, path: &str) -> f64 {
    const ROUNDS: usize = 200;
    let mut total = 0;
    for round in 0..ROUNDS + 10 {
        let request = http::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request");
        let before = ALLOCATIONS.with(Cell::get);
        let response = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.expect("body");
        let after = ALLOCATIONS.with(Cell::get);
        assert_eq!(body.to_bytes(), BODY);
        if round >= 10 {
            total += after - before;
        }
    }
    total as f64 / ROUNDS as f64
}

/// The layer allocates no more per request than the native handler. Before issue 21 it
/// made 3 more (20 against 17): a box around its response future besides the
/// application's, two `Arc`s of start_response state, and a copy of each header value.
#[tokio::test(flavor = "current_thread")]
async fn the_layer_allocates_no_more_than_a_native_handler() {
    const EXTRA: f64 = 0.0;
    let router = Router::new()
        .route_service("/layer", AwsgiLayer::new().layer(through_the_layer))
        .route("/native", get(native));
    let layer = allocations_per_request(&router, "/layer").await;
    let native = allocations_per_request(&router, "/native").await;
    println!("allocations per request: layer {layer}, native {native}");
    assert!(
        layer <= native + EXTRA,
        "the layer allocates {layer} times per request, the native handler {native}"
    );
}
