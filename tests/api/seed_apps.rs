//! The seed's two examples, health and the index, against a real Postgres; cancel on drop;
//! pool exhaustion; and the proof that requests suspend rather than block.

use crate::common;

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use common::http::get;
use common::service::{active_sleeps, connect, start};

#[tokio::test]
async fn postgres_async_returns_the_rows_read_after_the_wait() {
    let service = start(|_| {}).await;
    let started = Instant::now();
    let reply = get(service.addr, "/seed/postgres-async?delay=0.3").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(started.elapsed() >= Duration::from_millis(300));
    let report = reply.json();
    assert_eq!(report["delay"], 0.3);
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    assert!(rows[0]["backend_pid"].as_i64().unwrap() > 0);
    assert!(rows[0]["finished_at"].as_str().unwrap() > rows[0]["started_at"].as_str().unwrap());
}

#[tokio::test]
async fn bad_parameters_are_400_in_the_json_shape() {
    let service = start(|_| {}).await;
    for path in [
        "/seed/postgres-async?delay=abc",
        "/seed/postgres-async?delay=10.5",
        "/seed/postgres-async?delay=-1",
        "/seed/postgres-async?delay=",
        "/seed/poll-sleep?seconds=31",
        "/seed/poll-sleep?seconds=1.5",
        "/seed/poll-sleep?seconds=x",
    ] {
        let reply = get(service.addr, path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let error = &reply.json()["error"];
        assert_eq!(error["code"], "bad_request", "{path}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("must be a number from"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn poll_sleep_streams_a_line_a_second() {
    let service = start(|_| {}).await;
    let started = Instant::now();
    let reply = get(service.addr, "/seed/poll-sleep?seconds=2").await;
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() >= Duration::from_secs(2));
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "sleeping 2 s");
    assert!(lines[1].starts_with("slept 1/2 s"), "{text}");
    assert!(lines[2].starts_with("slept 2/2 s"), "{text}");
    assert_eq!(
        get(service.addr, "/seed/poll-sleep?seconds=0").await.text(),
        "sleeping 0 s\n"
    );
}

#[tokio::test]
async fn health_index_and_unknown_routes() {
    let service = start(|_| {}).await;
    let health = get(service.addr, "/healthz").await;
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("ok"))
    );
    assert!(
        health.header("x-request-id").is_some(),
        "every response carries a request id"
    );
    let ready = get(service.addr, "/readyz").await;
    assert_eq!(ready.status, 200);

    let index = get(service.addr, "/").await;
    assert_eq!(index.status, 200);
    let routes = index.json()["routes"].as_array().unwrap().clone();
    for route in [
        "GET /healthz",
        "GET /readyz",
        "GET /seed/postgres-async?delay=SECONDS",
        "GET /seed/poll-sleep?seconds=N",
    ] {
        assert!(
            routes.iter().any(|r| r["route"] == route),
            "{route} missing from the index"
        );
    }

    let missing = get(service.addr, "/no/such/route").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "not_found");
}

#[tokio::test]
async fn without_a_database_healthz_is_ok_and_the_rest_is_503() {
    // A port nothing listens on: the pool cannot connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let service = common::service::start_on(url, |c| {
        c.db_connect_timeout_ms = 500;
        c.db_pool_timeout_ms = 500;
    })
    .await;
    assert_eq!(get(service.addr, "/healthz").await.status, 200);
    let ready = get(service.addr, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["error"]["code"], "database_unavailable");
    let started = Instant::now();
    let reply = get(service.addr, "/seed/postgres-async?delay=0").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.json()["error"]["code"], "database_unavailable");
    assert!(
        !reply.text().contains("127.0.0.1"),
        "no driver detail in responses"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails fast: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_cancels_its_query_on_the_server() {
    let service = start(|_| {}).await;
    let admin = connect(&service.database_url).await;

    let mut client = TcpStream::connect(service.addr).await.unwrap();
    client
        .write_all(b"GET /seed/postgres-async?delay=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        if let Some(&pid) = active_sleeps(&admin).await.first() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the query never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    drop(client); // the client hangs up mid-query
    let hung_up = Instant::now();
    loop {
        let state: Option<String> = admin
            .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .get(0);
        if state.as_deref() == Some("idle") {
            break;
        }
        assert!(
            hung_up.elapsed() < Duration::from_secs(1),
            "backend {pid} still {state:?} a second after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection went back to the pool clean: the next request uses it fine.
    let reply = get(service.addr, "/seed/postgres-async?delay=0").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn an_exhausted_pool_answers_503_after_a_bounded_wait() {
    let service = start(|c| {
        c.db_pool_size = 1;
        c.db_pool_timeout_ms = 300;
        // Past the pool, not the anonymous share (tests/api/bulkheads.rs tests that).
        c.anonymous_db_requests = 2;
    })
    .await;
    let addr = service.addr;
    let holder = tokio::spawn(async move { get(addr, "/seed/postgres-async?delay=2").await });
    let admin = connect(&service.database_url).await;
    while active_sleeps(&admin).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let reply = get(addr, "/seed/postgres-async?delay=0").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "database_unavailable");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(
        holder.await.unwrap().status,
        200,
        "the holder finishes normally"
    );
}

/// 200 one-second sleeps on two worker threads finish together: they suspend, not block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sleeps_overlap_on_two_threads() {
    // All from one address: past its long-request limit (tests/api/bulkheads.rs).
    let service = start(|c| c.max_long_requests_per_address = 0).await;
    let started = Instant::now();
    let requests = (0..200).map(|_| get(service.addr, "/seed/poll-sleep?seconds=1"));
    let replies = futures_util::future::join_all(requests).await;
    let elapsed = started.elapsed();
    assert!(
        replies
            .iter()
            .all(|r| r.status == 200 && r.text().contains("slept 1/1"))
    );
    // In sequence: 200 s. Suspended: about 1 s. The bound is coarse on purpose.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

/// While 50 requests wait inside Postgres, the workers stay free for other requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_fifty_queries_wait() {
    let service = start(|c| {
        c.db_pool_size = 60;
        // Fifty anonymous sleeps at once: past the default anonymous share of the pool.
        c.anonymous_db_requests = 60;
    })
    .await;
    let addr = service.addr;
    let waiting: Vec<_> = (0..50)
        .map(|_| tokio::spawn(async move { get(addr, "/seed/postgres-async?delay=2").await }))
        .collect();
    let admin = connect(&service.database_url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let active = active_sleeps(&admin).await.len();
        if active >= 40 {
            break;
        }
        assert!(Instant::now() < deadline, "only {active} queries started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(get(addr, "/healthz").await.status, 200);
        let took = started.elapsed();
        // A blocked worker would take the full 2 s.
        assert!(took < Duration::from_millis(500), "healthz took {took:?}");
    }
    for request in waiting {
        assert_eq!(request.await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn metrics_count_requests_and_show_the_pool() {
    let service = start(|_| {}).await;
    for _ in 0..3 {
        assert_eq!(get(service.addr, "/healthz").await.status, 200);
    }
    assert_eq!(get(service.addr, "/no/such/route").await.status, 404);
    assert_eq!(
        get(service.addr, "/seed/postgres-async?delay=0")
            .await
            .status,
        200
    );
    let metrics = get(service.addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text();
    for line in [
        "pgbridge_http_requests_total{method=\"GET\",status=\"200\"} 4",
        "pgbridge_http_requests_total{method=\"GET\",status=\"404\"} 1",
        "pgbridge_http_request_duration_seconds_count 5",
        "pgbridge_db_pool_max_connections 16",
        "pgbridge_db_pool_connections 1",
        "pgbridge_events_subscribers 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(text.contains("pgbridge_db_cancels_total "));
}
