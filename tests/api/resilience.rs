//! The service when Postgres goes away and comes back, and when requests or statements run
//! past their time: quick 503s and 408s in the JSON shape, queries cancelled on the server,
//! recovery without a restart.

use crate::common;

use std::time::{Duration, Instant};

use common::http::{get, send};
use common::pg::Cluster;
use common::service::{active_sleeps, connect, start, start_on};
use pgbridge::db::migrate::Migrator;

#[tokio::test]
async fn postgres_stopped_then_back_with_no_restart_of_the_service() {
    let cluster = Cluster::start_private().await;
    let url = cluster.create_database().await;
    Migrator::embedded().unwrap().run_url(&url).await.unwrap();
    let service = start_on(url, |c| {
        c.db_connect_timeout_ms = 1_000;
        c.db_pool_timeout_ms = 1_000;
        c.ready_timeout_ms = 500;
    })
    .await;
    let create = http::Request::post("/notes")
        .header("Content-Type", "application/json")
        .body(r#"{"title":"survives"}"#.to_owned())
        .unwrap();
    assert_eq!(send(service.addr, create).await.unwrap().status, 201);

    cluster.stop().await;
    for path in ["/readyz", "/notes", "/seed/postgres-async?delay=0"] {
        let started = Instant::now();
        let reply = get(service.addr, path).await;
        let took = started.elapsed();
        assert_eq!(reply.status, 503, "{path}: {}", reply.text());
        assert_eq!(
            reply.json()["error"]["code"],
            "database_unavailable",
            "{path}"
        );
        assert_eq!(reply.header("retry-after"), Some("1"), "{path}");
        assert!(
            took < Duration::from_secs(3),
            "{path} must fail fast, took {took:?}"
        );
        let text = reply.text().to_lowercase();
        assert!(
            !text.contains("connection refused") && !text.contains("127.0.0.1"),
            "{path} leaked: {text}"
        );
    }
    assert_eq!(
        get(service.addr, "/healthz").await.status,
        200,
        "liveness needs no database"
    );

    cluster.restart().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(service.addr, "/readyz").await.status != 200 {
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let notes = get(service.addr, "/notes").await;
    assert_eq!(notes.status, 200, "{}", notes.text());
    assert_eq!(notes.json()["notes"][0]["title"], "survives");
}

async fn wait_idle(admin: &tokio_postgres::Client, started: Instant) -> Duration {
    loop {
        if active_sleeps(admin).await.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the query is still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_request_that_times_out_cancels_its_query() {
    let service = start(|c| c.request_timeout_ms = 500).await;
    let admin = connect(&service.database_url).await;
    let started = Instant::now();
    let reply = get(service.addr, "/seed/postgres-async?delay=5").await;
    assert_eq!(reply.status, 408, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "request_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let timed_out = Instant::now();
    let idle_after = wait_idle(&admin, timed_out).await;
    assert!(
        idle_after < Duration::from_secs(1),
        "query ran on for {idle_after:?}"
    );
}

#[tokio::test]
async fn a_statement_past_its_timeout_is_a_504_with_no_retry_after() {
    let service = start(|c| c.db_statement_timeout_ms = 300).await;
    let reply = get(service.addr, "/seed/postgres-async?delay=3").await;
    // Not 503 + `Retry-After: 1`: the same query would time out again, and a prompt retry
    // from every client is a retry storm.
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "database_timeout");
    assert_eq!(reply.header("retry-after"), None);
    assert!(
        !reply.text().contains("statement timeout"),
        "no driver text: {}",
        reply.text()
    );
    // The connection is fine afterwards.
    assert_eq!(
        get(service.addr, "/seed/postgres-async?delay=0")
            .await
            .status,
        200
    );
}

/// `Db::try_conn` lends a connection only when the pool can without waiting: it reuses an
/// idle one, answers `None` (not a wait-timeout error) while every one is lent, and, like
/// `conn`, never lends one opened before a failover sign.
#[tokio::test]
async fn try_conn_lends_only_what_is_free_now() {
    let url = Cluster::shared().await.create_database().await;
    let mut config = pgbridge::db::DbConfig::new(url);
    config.pool_size = 1;
    // Were `try_conn` to wait, it would fail with a timeout after this, not answer None.
    config.pool_wait = Duration::from_secs(600);
    let db = pgbridge::db::Db::connect(&config).unwrap();
    let pid = |conn: pgbridge::db::Conn| async move {
        let row = conn
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap();
        row.get::<_, i32>(0)
    };
    let first = db
        .try_conn()
        .await
        .unwrap()
        .expect("an empty pool opens one");
    assert!(
        db.try_conn().await.unwrap().is_none(),
        "the only connection is lent"
    );
    let opened = pid(first).await;
    let again = db.try_conn().await.unwrap().expect("the idle one");
    assert_eq!(pid(again).await, opened, "the idle connection is reused");
    db.failover()
        .mark(pgbridge::db::failover::Sign::ConnectionLost);
    let fresh = db.try_conn().await.unwrap().expect("a new one");
    assert_ne!(
        pid(fresh).await,
        opened,
        "a connection opened before the failover sign is not lent"
    );
}

/// A cancel sent for an abandoned query must never land on the next query that borrows
/// the same pooled connection. The abandoned query ends on its own at about the moment it
/// is abandoned, which is when a cancel that has been written but not yet acted on by the
/// server could hit the next borrower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_never_hits_the_next_borrower() {
    let url = Cluster::shared().await.create_database().await;
    let mut config = pgbridge::db::DbConfig::new(url);
    config.pool_size = 1;
    let db = pgbridge::db::Db::connect(&config).unwrap();
    let mut abandoned = 0;
    // Until 60 abandoned (a loaded machine's late timers let more calls finish first).
    let mut round = 0u64;
    while abandoned < 60 && round < 3_000 {
        round += 1;
        {
            let conn = db.conn().await.unwrap();
            let queries: i32 = if round.is_multiple_of(2) { 1 } else { 5 };
            // Odd rounds abandon five pipelined queries at once, even rounds one.
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&queries];
            let work = futures_util::future::try_join_all(
                (0..queries).map(|_| conn.query("SELECT pg_sleep(0.01 / $1::int)", &params)),
            );
            // Abandon it at 8-12 ms: just before, at, or just after it finishes.
            let at = Duration::from_micros(8_000 + (round * 137) % 4_000);
            if tokio::time::timeout(at, work).await.is_err() {
                abandoned += 1;
            }
        }
        let conn = db.conn().await.unwrap();
        let next = conn.query_one("SELECT pg_sleep(0.002), 1::int", &[]).await;
        assert!(
            next.is_ok(),
            "round {round}: the next borrower's query failed: {next:?}"
        );
    }
    assert!(
        abandoned >= 60,
        "the test abandoned too few queries ({abandoned} in {round} rounds) to mean anything"
    );
}

/// A transaction dropped while a cancel for one of its statements is in flight queues its
/// `ROLLBACK` at once, and the cancel may land on that `ROLLBACK`: the connection is then
/// still inside the (aborted) transaction, which the pool and the next statement know
/// nothing of. Settling a cancel before a statement that expects no transaction leaves any
/// transaction first. Here the leftover transaction is made on purpose (a `BEGIN` behind
/// the connection's back), since the race itself is a window of microseconds.
#[tokio::test]
async fn after_a_cancel_a_connection_statement_runs_outside_any_transaction() {
    let url = Cluster::shared().await.create_database().await;
    let mut config = pgbridge::db::DbConfig::new(url);
    config.pool_size = 1;
    let db = pgbridge::db::Db::connect(&config).unwrap();
    let conn = db.conn().await.unwrap();
    conn.client().batch_execute("BEGIN").await.unwrap();
    // Abandoned while it runs: a cancel is pending, and it aborts the leftover transaction.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        conn.query("SELECT pg_sleep(5)", &[]),
    )
    .await;
    assert!(abandoned.is_err(), "pg_sleep(5) finished within 300 ms");
    let row = conn
        .query_one("SELECT 1::int", &[])
        .await
        .expect("the statement after the cancel runs (not in the aborted transaction)");
    assert_eq!(row.get::<_, i32>(0), 1);
    // Outside a transaction, `now()` (its start) is this statement's own time.
    let outside = conn
        .client()
        .simple_query("SELECT now() = statement_timestamp()")
        .await
        .unwrap()
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("t")));
    assert!(outside, "the leftover transaction is still open");
}

/// A statement abandoned inside a transaction must never cancel the transaction's next
/// statement. The abandoned statement ends on its own at about the moment it is dropped, so
/// a cancel written but not yet acted on by the server would land on whatever the
/// transaction runs next — unless that waits for the cancel to be settled. The next
/// statement may fail because the cancel aborted the transaction (`25P02`), never with the
/// cancel itself (`57014`, "canceling statement due to user request").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_inside_a_transaction_never_hits_its_next_statement() {
    let url = Cluster::shared().await.create_database().await;
    let mut config = pgbridge::db::DbConfig::new(url);
    config.pool_size = 1;
    let db = pgbridge::db::Db::connect(&config).unwrap();
    let (mut abandoned, mut aborted) = (0, 0);
    // Until 60 statements were abandoned near their end: on a loaded machine timers fire
    // late and more calls finish before their timeout, so the rounds needed vary.
    let mut round = 0u64;
    while abandoned < 60 && round < 3_000 {
        round += 1;
        let mut conn = db.conn().await.unwrap();
        let tx = conn.transaction().await.unwrap();
        // Warm the statement cache, so the abandoned call is one round trip.
        tx.query("SELECT pg_sleep(0.01)", &[]).await.unwrap();
        // Abandon it at 8-12 ms: just before, at, or just after it finishes.
        let at = Duration::from_micros(8_000 + (round * 137) % 4_000);
        if tokio::time::timeout(at, tx.query("SELECT pg_sleep(0.01)", &[]))
            .await
            .is_err()
        {
            abandoned += 1;
        }
        match tx.query_one("SELECT pg_sleep(0.005), 1::int", &[]).await {
            Ok(row) => assert_eq!(row.get::<_, i32>(1), 1),
            Err(pgbridge::db::DbError::Query(err))
                if err.code()
                    == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION) =>
            {
                aborted += 1;
            }
            Err(err) => panic!(
                "round {round}: the cancel landed on the transaction's next statement: {err:?}"
            ),
        }
        drop(tx);
    }
    eprintln!(
        "{round} rounds: abandoned {abandoned}, transactions aborted by their cancel {aborted}"
    );
    assert!(
        abandoned >= 60,
        "the test abandoned too few statements ({abandoned}) to mean anything"
    );
}
