//! The HTTP edge: transfer codings the server does not decode, client request ids, the
//! headers every response carries, 405 with `Allow` on every route, and readiness and
//! statement timeouts that do not invite load balancers or clients to make things worse.

use crate::common;

use std::time::Duration;

use common::http::{default_token, get, raw, send};
use common::service::{active_sleeps, connect, start, start_migrated};

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_501_and_stores_nothing() {
    let service = start_migrated(|_| {}).await;
    let token = default_token(service.addr, "/notes").await.expect("token");
    // The refusal comes before any application runs: with a valid token and without one.
    for authorization in [format!("Authorization: Bearer {token}\r\n"), String::new()] {
        let request = format!(
            "POST /notes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             {authorization}Transfer-Encoding: gzip, chunked\r\n\r\n\
             10\r\n{{\"title\":\"gzip\"}}\r\n0\r\n\r\n"
        );
        let reply = raw(service.addr, &request, Duration::from_secs(5)).await;
        assert!(reply.starts_with("HTTP/1.1 501"), "{reply}");
        assert!(reply.contains("\"code\":\"not_implemented\""), "{reply}");
    }
    let list = get(service.addr, "/notes").await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(!list.text().contains("gzip"), "stored: {}", list.text());

    // Plain chunked bodies are still read.
    let request = format!(
        "POST /notes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         11\r\n{{\"title\":\"plain\"}}\r\n0\r\n\r\n"
    );
    let reply = raw(service.addr, &request, Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
}

fn with_request_id(id: &str) -> http::Request<String> {
    http::Request::get("/healthz")
        .header("x-request-id", id)
        .body(String::new())
        .unwrap()
}

#[tokio::test]
async fn only_short_safe_request_ids_are_kept() {
    let service = start(|_| {}).await;
    let reply = send(service.addr, with_request_id("abc-123:x.y_z"))
        .await
        .unwrap();
    assert_eq!(reply.header("x-request-id"), Some("abc-123:x.y_z"));

    let long = "a".repeat(8000);
    for bad in [long.as_str(), "x\" request_id=forged", "two words"] {
        let reply = send(service.addr, with_request_id(bad)).await.unwrap();
        let id = reply.header("x-request-id").expect("an id");
        assert_ne!(id, bad);
        assert!(
            id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)),
            "fresh id {id:?}"
        );
    }
}

#[tokio::test]
async fn every_response_has_nosniff_and_a_cache_policy() {
    let service = start_migrated(|_| {}).await;
    for path in [
        "/healthz",
        "/no/such/path",
        "/notes/not-a-number",
        "/metrics",
    ] {
        let reply = get(service.addr, path).await;
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{path}");
    }
    // A response that sets its own Cache-Control keeps it.
    let token = default_token(service.addr, "/notes/events")
        .await
        .expect("token");
    let head = raw(
        service.addr,
        &format!("GET /notes/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n"),
        Duration::from_millis(500),
    )
    .await
    .to_ascii_lowercase();
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(!head.contains("no-store"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
}

#[tokio::test]
async fn every_route_answers_405_with_allow_to_a_method_it_does_not_serve() {
    let service = start_migrated(|_| {}).await;
    for (method, path, allowed) in [
        ("DELETE", "/", "GET"),
        ("POST", "/seed/poll-sleep", "GET"),
        ("PUT", "/seed/postgres-async", "GET"),
        ("POST", "/notes/events", "GET"),
        ("PUT", "/notes", "POST"),
        ("POST", "/notes/1", "PATCH"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/readyz", "GET"),
    ] {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(String::new())
            .unwrap();
        let reply = send(service.addr, request).await.unwrap();
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text());
        let allow = reply.header("allow").unwrap_or_default();
        assert!(
            allow.contains(allowed) && allow.contains("HEAD"),
            "{method} {path}: Allow {allow:?}"
        );
        assert_eq!(
            reply.json()["error"]["code"],
            "method_not_allowed",
            "{method} {path}"
        );
    }
    // HEAD keeps working where GET does.
    for path in ["/", "/seed/poll-sleep?seconds=0", "/notes", "/healthz"] {
        let request = http::Request::head(path).body(String::new()).unwrap();
        let reply = send(service.addr, request).await.unwrap();
        assert_eq!(reply.status, 200, "HEAD {path}");
    }
}

#[tokio::test]
async fn readyz_reports_busy_not_down_when_the_pool_is_full() {
    let service = start(|c| {
        c.db_pool_size = 1;
        c.db_pool_timeout_ms = 300;
        c.ready_timeout_ms = 500;
        // Past the pool, not the anonymous share (tests/api/bulkheads.rs tests that).
        c.anonymous_db_requests = 2;
    })
    .await;
    let addr = service.addr;
    let holder = tokio::spawn(async move { get(addr, "/seed/postgres-async?delay=3").await });
    let admin = connect(&service.database_url).await;
    while active_sleeps(&admin).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "busy");
    // The request that needs the database still gets its 503 from the pool.
    let reply = get(addr, "/seed/postgres-async?delay=0").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(holder.await.unwrap().status, 200);
    // Ready again once the holder's connection is back. Its return and the next check race
    // the response on a loaded machine, so look for a while instead of once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready = get(addr, "/readyz").await;
        if ready.json()["status"] == "ready" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ready again: {}",
            ready.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
