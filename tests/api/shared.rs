//! The shared, pipelined path (`db.shared()`): abandoned statements never cancel a
//! neighbour's; dead connections fail fast and are replaced; Postgres restarts; statement
//! timeout; backpressure; metrics.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::http::get;
use common::pg::Cluster;
use common::service::{connect, start_migrated};
use pgbridge::db::{Db, DbConfig, DbError, Queries, Ready, SharedConfig};

fn shared_db(url: String, connections: usize, max_in_flight: usize) -> Db {
    queued_db(url, connections, max_in_flight, 0)
}

fn queued_db(url: String, connections: usize, max_in_flight: usize, max_queued: usize) -> Db {
    let mut config = DbConfig::new(url);
    config.shared = SharedConfig {
        connections,
        max_in_flight,
        max_queued,
    };
    config.pool_wait = Duration::from_secs(10);
    Db::connect(&config).unwrap()
}

/// A `Db` for the `postgres` database at loopback `port` (a fake server, a forwarder), in
/// plain text, with `connections` shared connections of `max_in_flight` statements each
/// (and as many queued).
fn loopback_db(
    port: u16,
    connect_timeout: Duration,
    connections: usize,
    max_in_flight: usize,
) -> Db {
    let mut config = DbConfig::new(format!(
        "postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"
    ));
    config.connect_timeout = connect_timeout;
    config.shared = SharedConfig {
        connections,
        max_in_flight,
        max_queued: max_in_flight,
    };
    Db::connect(&config).unwrap()
}

/// A tiny deterministic generator per worker (no `rand` dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// Thousands of pipelined statements, dropped at random moments from many concurrent
/// tasks, on two shared connections: every statement that was not dropped answers, with
/// its own value. A cancel that hit a neighbour would show as a "canceling statement due
/// to user request" error (DbError::Timeout) on a statement that was not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_pipelined_statements_never_cancel_a_neighbour() {
    let url = Cluster::shared().await.create_database().await;
    let db = shared_db(url, 2, 1024);
    let dropped = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let cancels_before = db.cancels_sent();
    let workers: Vec<_> = (0..24u64)
        .map(|w| {
            let db = db.clone();
            let dropped = dropped.clone();
            let completed = completed.clone();
            tokio::spawn(async move {
                let mut rng = Lcg(w * 7919 + 17);
                for i in 0..400i32 {
                    let value = w as i32 * 100_000 + i;
                    // Mostly instant statements, some that take a moment on the backend.
                    let sleep = [0.0, 0.0, 0.0005, 0.002][rng.next(4) as usize];
                    let shared = db.shared();
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&value, &sleep];
                    let work =
                        shared.query_one("SELECT $1::int FROM pg_sleep($2::float8)", &params);
                    let outcome = if rng.next(2) == 0 {
                        let at = Duration::from_micros(rng.next(3_000));
                        tokio::time::timeout(at, work).await.ok()
                    } else {
                        Some(work.await)
                    };
                    match outcome {
                        None => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Ok(row)) => {
                            assert_eq!(row.get::<_, i32>(0), value, "another statement's answer");
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Err(err)) => {
                            panic!("a statement that was not dropped failed: {err:?}")
                        }
                    }
                    // Idle now and then, so a dropped statement is sometimes its
                    // connection's only one and is cancelled.
                    if rng.next(8) == 0 {
                        tokio::time::sleep(Duration::from_micros(rng.next(2_000))).await;
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker failed");
    }
    let dropped = dropped.load(Ordering::Relaxed);
    let completed = completed.load(Ordering::Relaxed);
    let cancels = db.cancels_sent() - cancels_before;
    eprintln!(
        "dropped {dropped}, completed {completed}, cancels sent {cancels}, left to finish {}",
        pgbridge::db::shared::abandoned_uncancelled()
    );
    assert!(dropped >= 2_000, "only {dropped} statements were dropped");
    assert!(completed >= 2_000, "only {completed} statements completed");
    assert!(
        cancels > 0,
        "no dropped statement was ever cancelled: the test proves nothing"
    );
    // And the connections are healthy afterwards.
    let row = db.shared().query_one("SELECT 1::int", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
}

/// A lone statement whose caller goes away is cancelled: its backend goes idle at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_abandoned_statement_is_cancelled() {
    let url = Cluster::shared().await.create_database().await;
    let admin = connect(&url).await;
    let db = shared_db(url, 1, 16);
    let work = db.shared().query("SELECT pg_sleep(10)", &[]);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), work)
            .await
            .is_err()
    );
    let started = Instant::now();
    while !common::service::active_sleeps(&admin).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the statement still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The fence came down: the connection takes statements again.
    let row = db.shared().query_one("SELECT 2::int", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
}

/// Terminating the shared backends fails their in-flight statements at once with
/// ConnectionLost (503), and the next statement gets a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shared_connection_fails_fast_and_is_replaced() {
    let url = Cluster::shared().await.create_database().await;
    let admin = connect(&url).await;
    let db = shared_db(url, 2, 64);
    let sleepers: Vec<_> = (0..10)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let out = db.shared().query("SELECT pg_sleep(20)", &[]).await;
                (out, started.elapsed())
            })
        })
        .collect();
    let started = Instant::now();
    while common::service::active_sleeps(&admin).await.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the statements did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'pgbridge-shared'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 2, "two shared backends");
    for sleeper in sleepers {
        let (out, took) = sleeper.await.unwrap();
        match out {
            // The server closed the connection (or said it is shutting down): a 503.
            Err(DbError::ConnectionLost(_) | DbError::Unavailable(_)) => {}
            other => panic!("expected ConnectionLost, got {other:?}"),
        }
        assert!(
            took < Duration::from_secs(10),
            "a statement hung for {took:?}"
        );
    }
    // Replaced on demand.
    for _ in 0..4 {
        let row = db.shared().query_one("SELECT 3::int", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 3);
    }
    assert!(db.shared().status().iter().all(|c| c.in_flight == 0));
}

/// Postgres stops and comes back: the shared path answers Unavailable meanwhile and works
/// again afterwards, with no restart of the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_path_recovers_after_a_postgres_restart() {
    let cluster = Cluster::start_private().await;
    let url = cluster.create_database().await;
    let mut config = DbConfig::new(url);
    config.shared = SharedConfig {
        connections: 2,
        max_in_flight: 64,
        max_queued: 64,
    };
    config.connect_timeout = Duration::from_secs(1);
    let db = Db::connect(&config).unwrap();
    db.shared().query_one("SELECT 1::int", &[]).await.unwrap();
    cluster.stop().await;
    let started = Instant::now();
    match db.shared().query_one("SELECT 1::int", &[]).await {
        // Unavailable, or Connect (refused) when this statement tried to reconnect: both 503.
        Err(err) if err.is_unavailable() && !err.is_permanent() => {}
        other => panic!("expected a 503 error while Postgres is down, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    cluster.restart().await;
    let started = Instant::now();
    loop {
        match db.shared().query_one("SELECT 4::int", &[]).await {
            Ok(row) => {
                assert_eq!(row.get::<_, i32>(0), 4);
                break;
            }
            Err(err) => {
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "no recovery: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `statement_timeout` applies on the shared path, and only to the statement that ran long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_applies_on_the_shared_path() {
    let url = Cluster::shared().await.create_database().await;
    let mut config = DbConfig::new(url);
    config.statement_timeout = Duration::from_millis(300);
    config.shared = SharedConfig {
        connections: 1,
        max_in_flight: 16,
        max_queued: 16,
    };
    let db = Db::connect(&config).unwrap();
    let shared = db.shared();
    let started = Instant::now();
    let (slow, quick) = tokio::join!(
        shared.query("SELECT pg_sleep(5)", &[]),
        shared.query_one("SELECT 5::int", &[]),
    );
    assert!(matches!(slow, Err(DbError::Timeout(_))), "{slow:?}");
    assert_eq!(quick.unwrap().get::<_, i32>(0), 5);
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Past `max_in_flight` on every connection and `max_queued` waiting, statements are
/// refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pipeline_refuses_with_unavailable() {
    let url = Cluster::shared().await.create_database().await;
    let db = queued_db(url, 1, 4, 4);
    let shared = db.shared();
    let started = Instant::now();
    let outcomes =
        futures_util::future::join_all((0..12).map(|_| shared.query("SELECT pg_sleep(0.3)", &[])))
            .await;
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(DbError::Unavailable(_))))
        .count();
    // Four run, four wait and then run, four are refused.
    assert_eq!((ok, refused), (8, 4), "{outcomes:?}");
    assert_eq!(shared.rejected(), 4);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A statement queued for room gives up with 503 after the wait timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_statement_gives_up_after_the_wait() {
    let url = Cluster::shared().await.create_database().await;
    let mut config = DbConfig::new(url);
    config.pool_wait = Duration::from_millis(200);
    config.shared = SharedConfig {
        connections: 1,
        max_in_flight: 1,
        max_queued: 10,
    };
    let db = Db::connect(&config).unwrap();
    let shared = db.shared();
    let (slow, queued) = tokio::join!(shared.query("SELECT pg_sleep(1)", &[]), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        (shared.query("SELECT 1", &[]).await, started.elapsed())
    });
    assert!(slow.is_ok());
    assert!(
        matches!(queued.0, Err(DbError::Unavailable(_))),
        "{:?}",
        queued.0
    );
    assert!(
        queued.1 < Duration::from_millis(900),
        "waited {:?}",
        queued.1
    );
}

/// The notes never run on the shared path: every notes statement needs its owner-scoped
/// transaction on an exclusive connection. The shared connections open lazily, so after
/// notes traffic none is open; a statement on `db.shared()` opens one, and `/metrics`
/// shows the shared connections per slot.
/// The notes' owner scopes go on the shared connections, as one unit each
/// (`db/shared/scope.rs`), and the metrics show the connections.
#[tokio::test]
async fn notes_go_on_the_shared_path_and_metrics_show_it() {
    // Without the session cache, whose start-up check (is the revocation trigger there?)
    // runs on a shared connection: here none may be open before the notes traffic.
    let service = start_migrated(|c| {
        c.db_shared_connections = 2;
        c.session_cache_size = 0;
    })
    .await;
    let shared = service.state.db.shared();
    assert!(shared.status().iter().all(|c| !c.connected));
    let alice = common::accounts::Account::new(service.addr, "alice").await;
    let id = alice.create("mine").await;
    assert_eq!(alice.get(&format!("/notes/{id}")).await.status, 200);
    assert_eq!(alice.get("/notes").await.status, 200);
    assert_eq!(get(service.addr, "/notes/424242").await.status, 404);
    assert!(
        shared.status().iter().any(|c| c.connected),
        "notes traffic opened no shared connection: {:?}",
        shared.status()
    );
    let one: i32 = shared.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let metrics = get(service.addr, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        "pgbridge_db_shared_in_flight{connection=\"0\"} 0",
        "pgbridge_db_shared_in_flight{connection=\"1\"} 0",
        "pgbridge_db_shared_rejected_total 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("pgbridge_db_shared_up{connection="), "{text}");
}

/// `DB_POOL_MODE=transaction` through PgBouncer 1.18 (transaction mode, 3 server
/// connections behind two shared client connections): no startup option (PgBouncer would
/// refuse the connection), no named statement (one prepared on one server connection and
/// run on another fails: "prepared statement \"s9\" does not exist"), the statement
/// timeout enforced by the client, and a lone abandoned statement cancelled through
/// PgBouncer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    skip_pgbouncer,
    ignore = "SKIPPED: needs pgbouncer: apt-get install pgbouncer"
)]
async fn the_shared_path_works_through_a_transaction_pooler() {
    let direct_url = Cluster::shared().await.create_database().await;
    let bouncer =
        common::pgbouncer::PgBouncer::start(common::standby::port_of(&direct_url), 3).await;
    let database = direct_url.rsplit('/').next().expect("database name");
    let mut config = DbConfig::new(bouncer.url(database));
    config.pool_mode = pgbridge::db::PoolMode::Transaction;
    config.statement_timeout = Duration::from_millis(800);
    config.shared = SharedConfig {
        connections: 2,
        max_in_flight: 64,
        max_queued: 1024,
    };
    config.pool_wait = Duration::from_secs(10);
    let db = Db::connect(&config).unwrap();
    let admin = connect(&direct_url).await;

    // Pipelined from 16 tasks on two shared connections, over several statement texts.
    let tasks: Vec<_> = (0..16i32)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                for i in 0..60i32 {
                    let value = w * 1000 + i;
                    let sql = ["SELECT $1::int", "SELECT $1::int + 0", "SELECT $1::int * 1"]
                        [(i % 3) as usize];
                    let row = db.shared().query_one(sql, &[&value]).await;
                    let row = row.unwrap_or_else(|e| panic!("{sql} with {value}: {e}"));
                    assert_eq!(row.get::<_, i32>(0), value);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    // A statement past the timeout fails with Timeout (the server's 57014 after the
    // client's cancel) and its backend stops. Statements sent behind it on the same
    // connection wait for it; each either answers with its own value or, having expired
    // itself, fails with Timeout — never earlier: no cancel hit a statement whose caller
    // still waited.
    let started = Instant::now();
    let slow = {
        let db = db.clone();
        tokio::spawn(async move { db.shared().query("SELECT pg_sleep(10)", &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let behind: Vec<_> = (0..8i32)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let out = db.shared().query_one("SELECT $1::int", &[&i]).await;
                (i, out, sent.elapsed())
            })
        })
        .collect();
    match slow.await.unwrap() {
        Err(DbError::Timeout(_)) => {}
        other => panic!("expected Timeout past the client-side timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    for task in behind {
        let (i, out, waited) = task.await.unwrap();
        match out {
            Ok(row) => assert_eq!(row.get::<_, i32>(0), i),
            Err(DbError::Timeout(_)) => assert!(
                waited >= Duration::from_millis(800),
                "statement {i} was cancelled after {waited:?}, before its own timeout"
            ),
            Err(err) => panic!("statement {i}: {err}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !common::service::active_sleeps(&admin).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the timed-out pg_sleep still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let row = db.shared().query_one("SELECT 3::int", &[]).await.unwrap();
    assert_eq!(
        row.get::<_, i32>(0),
        3,
        "the connection takes statements again"
    );

    // A lone abandoned statement is cancelled through PgBouncer.
    let work = db.shared().query("SELECT pg_sleep(5)", &[]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), work)
            .await
            .is_err()
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    while !common::service::active_sleeps(&admin).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the abandoned statement still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pooler that completes every client's start-up and then fails its first query with a
/// `FATAL` and closes — what PgBouncer does during `server_login_retry` after a failed
/// server login (Postgres restarting, "the database system is starting up") — counting
/// the connections it accepted.
async fn refusing_pooler() -> (u16, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // The start-up message: a length, then the rest.
                let Ok(len) = socket.read_i32().await else {
                    return;
                };
                let mut rest = vec![0; (len as usize).saturating_sub(4)];
                if socket.read_exact(&mut rest).await.is_err() {
                    return;
                }
                let mut out = Vec::new();
                out.extend_from_slice(b"R\0\0\0\x08\0\0\0\0"); // AuthenticationOk
                out.extend_from_slice(b"K\0\0\0\x0c\0\0\0\x01\0\0\0\x02"); // BackendKeyData
                out.extend_from_slice(b"Z\0\0\0\x05I"); // ReadyForQuery
                if socket.write_all(&out).await.is_err() {
                    return;
                }
                // The first query: a FATAL error, and the connection closed.
                let mut buf = [0u8; 1024];
                if matches!(socket.read(&mut buf).await, Ok(0) | Err(_)) {
                    return;
                }
                let mut fields = Vec::new();
                for (code, text) in [
                    (b'S', "FATAL"),
                    (b'V', "FATAL"),
                    (b'C', "08P01"),
                    (
                        b'M',
                        "server login has been failing, try again later (server_login_retry)",
                    ),
                ] {
                    fields.push(code);
                    fields.extend_from_slice(text.as_bytes());
                    fields.push(0);
                }
                fields.push(0);
                let mut error = vec![b'E'];
                error.extend_from_slice(&((fields.len() + 4) as i32).to_be_bytes());
                error.extend_from_slice(&fields);
                let _ = socket.write_all(&error).await;
            });
        }
    });
    (port, accepted)
}

/// Through a pooler that accepts connections and then fails their first query, a shared
/// connection that never answered counts as a failed connect, and its slot waits before
/// the next: a stream of statements costs a few connects, not one each (before, one
/// Postgres restart behind PgBouncer made thousands of connects a second, each logged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_refusing_queries_does_not_make_every_statement_reconnect() {
    let (port, accepted) = refusing_pooler().await;
    // Session mode: the statement is prepared on the shared connection itself (in
    // transaction mode its parameter types would first be learnt on a pooled one).
    let db = loopback_db(port, Duration::from_secs(2), 2, 64);
    let started = Instant::now();
    let mut statements = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let out = tokio::time::timeout(
            Duration::from_secs(5),
            db.shared().query_one("SELECT 2::int", &[]),
        )
        .await;
        match out {
            Ok(Err(err)) if err.is_unavailable() => statements += 1,
            other => panic!("expected a 503 error from a refusing pooler, got {other:?}"),
        }
    }
    let connects = accepted.load(Ordering::SeqCst);
    eprintln!("{statements} statements, {connects} connects to the pooler");
    assert!(
        statements >= 50,
        "too few statements ({statements}) to show anything"
    );
    // Two slots, each trying at most once per 250 ms for 1.5 s: about 14.
    assert!(
        connects <= 24,
        "{connects} connects for {statements} statements: reconnecting per statement"
    );
}

/// A TCP forwarder to `target` that, while `open` is false, accepts each connection and
/// closes it at once (the server unreachable), and while true relays it.
async fn switchable_forwarder(target: u16) -> (u16, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = Arc::new(AtomicBool::new(false));
    let relay = open.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if !relay.load(Ordering::SeqCst) {
                drop(client);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, open)
}

/// A shared slot that failed to connect answers with that failure from memory for a short
/// pause — unless the server has answered the same `Db` since. Then it tries again at once:
/// `/readyz` (a probe on a pooled connection) and the requests right after it agree.
/// (Before, after a Postgres restart, `/readyz` could answer 200 and the next `GET /notes`
/// 503 for the rest of the pause.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_path_tries_again_once_readiness_found_the_server_back() {
    let cluster = Cluster::start_private().await;
    let (port, open) = switchable_forwarder(cluster.port().expect("a private cluster")).await;
    let db = loopback_db(port, Duration::from_secs(5), 1, 8);

    let down = db.shared().query_one("SELECT 1", &[]).await;
    assert!(
        matches!(&down, Err(err) if err.is_unavailable()),
        "the server unreachable: {down:?}"
    );
    open.store(true, Ordering::SeqCst);
    let ready = db.check_ready(Duration::from_secs(5)).await;
    assert!(matches!(ready, Ok(Ready::Answered)), "{ready:?}");
    let back = db.shared().query_one("SELECT 2::int", &[]).await;
    assert_eq!(back.map(|row| row.get::<_, i32>(0)).ok(), Some(2));
}
