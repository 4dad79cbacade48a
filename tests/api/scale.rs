//! Past one process, with the real programs: three pgbridge processes behind nginx
//! (`deploy/nginx.conf`), PgBouncer 1.18 in transaction mode between them and Postgres, and
//! a streaming standby (`pg_basebackup -R`) for reads that still see your writes.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::http::{Reply, send};
use common::nginx::Nginx;
use common::pg::Cluster;
use common::pgbouncer::PgBouncer;
use common::process::{Program, Spec, free_port, temp_dir};
use common::service::{connect, start_on};
use common::standby::{Standby, port_of};
use serde_json::json;

/// The settings every replica gets: the pool through PgBouncer in transaction mode, the
/// listener and the migrator straight to Postgres.
struct Topology {
    pooled_url: String,
    direct_url: String,
}

/// One `pgbridge` process.
struct Replica {
    port: u16,
    program: Program,
}

impl Replica {
    async fn start(topology: &Topology, port: u16, dir: &Path) -> Replica {
        let program = Program::start(Spec {
            name: "pgbridge",
            program: Path::new(env!("CARGO_BIN_EXE_pgbridge")),
            args: vec![],
            env: vec![
                ("DATABASE_URL".into(), topology.pooled_url.clone()),
                ("DB_POOL_MODE".into(), "transaction".into()),
                ("EVENTS_DATABASE_URL".into(), topology.direct_url.clone()),
                ("MIGRATE_DATABASE_URL".into(), topology.direct_url.clone()),
                ("BIND_ADDR".into(), format!("127.0.0.1:{port}")),
                ("DB_STATEMENT_TIMEOUT_MS".into(), "1000".into()),
                ("SSE_HEARTBEAT_MS".into(), "1000".into()),
                ("SHUTDOWN_GRACE_SECS".into(), "10".into()),
                // Above deploy/nginx.conf's upstream keepalive_timeout (4 s).
                ("DRAIN_DELAY_MS".into(), "5000".into()),
                ("RUST_LOG".into(), "warn".into()),
            ],
            user: None,
            log: dir.join(format!("pgbridge-{port}-{}.log", unique())),
            stop_signal: "KILL",
            cleanup: None,
        });
        let mut replica = Replica { port, program };
        replica.wait_ready().await;
        replica
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = tokio::time::timeout(
                Duration::from_secs(2),
                send(self.addr(), get_request("/readyz")),
            )
            .await;
            if matches!(ready, Ok(Ok(ref reply)) if reply.status == 200) {
                return;
            }
            assert!(
                self.program.running(),
                "pgbridge exited during start-up\n{}",
                self.program.log_tail()
            );
            assert!(
                Instant::now() < deadline,
                "pgbridge was not ready in 30 s\n{}",
                self.program.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn get_request(path: &str) -> http::Request<String> {
    http::Request::get(path).body(String::new()).unwrap()
}

fn post_note(title: &str) -> http::Request<String> {
    http::Request::post("/notes")
        .header("Content-Type", "application/json")
        .body(json!({"title": title, "body": "b", "tags": ["scale"]}).to_string())
        .unwrap()
}

async fn must(addr: SocketAddr, request: http::Request<String>, what: &str) -> Reply {
    let reply = send(addr, request)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        reply.status < 300,
        "{what}: {} {}",
        reply.status,
        reply.text()
    );
    reply
}

fn database_of(url: &str) -> &str {
    url.rsplit('/').next().expect("database name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    any(skip_nginx, skip_pgbouncer),
    ignore = "SKIPPED: needs nginx and pgbouncer: apt-get install nginx-light pgbouncer"
)]
async fn replicas_behind_nginx_share_pgbouncer_events_and_restart_without_failures() {
    let cluster = Cluster::shared().await;
    let direct_url = cluster.create_database().await;
    let bouncer = PgBouncer::start(port_of(&direct_url), 4).await;
    let topology = Topology {
        pooled_url: bouncer.url(database_of(&direct_url)),
        direct_url: direct_url.clone(),
    };
    let logs = temp_dir("scale-logs", None);

    // LISTEN through the transaction pooler is refused at start-up, with what to set.
    let mut refused = Program::start(Spec {
        name: "pgbridge (LISTEN through the pooler)",
        program: Path::new(env!("CARGO_BIN_EXE_pgbridge")),
        args: vec![],
        env: vec![
            ("DATABASE_URL".into(), topology.pooled_url.clone()),
            ("DB_POOL_MODE".into(), "transaction".into()),
            ("BIND_ADDR".into(), format!("127.0.0.1:{}", free_port())),
        ],
        user: None,
        log: logs.join("refused.log"),
        stop_signal: "KILL",
        cleanup: None,
    });
    let status = refused
        .wait_exit(Duration::from_secs(20))
        .expect("pgbridge must refuse to start");
    assert!(!status.success());
    let log = std::fs::read_to_string(logs.join("refused.log")).unwrap();
    assert!(log.contains("EVENTS_DATABASE_URL"), "{log}");

    let ports = [free_port(), free_port(), free_port()];
    let mut replicas = Vec::new();
    for port in ports {
        replicas.push(Replica::start(&topology, port, &logs).await);
    }
    let nginx = Nginx::start(&ports).await;
    let front = SocketAddr::from(([127, 0, 0, 1], nginx.port));
    // One account, signed up and logged in through nginx (so through one of the replicas);
    // its token lives in the shared database, so every replica accepts it, also after a
    // restart. `/notes…` requests below carry it by default.
    let token = common::http::account(
        front,
        common::http::HARNESS_USER,
        common::http::HARNESS_PASSWORD,
    )
    .await;
    common::http::authenticate_with(front, &token);
    for replica in &replicas {
        common::http::authenticate_with(replica.addr(), &token);
    }

    // The notes flow through nginx and PgBouncer: unnamed statements on shared server
    // connections (4 of them for 3 x 16 pooled clients).
    let created = must(front, post_note("through the pooler"), "POST").await;
    let id = created.json()["id"].as_i64().unwrap();
    assert!(created.header("pgbridge-commit-lsn").is_some());
    let patch = http::Request::patch(format!("/notes/{id}"))
        .header("Content-Type", "application/merge-patch+json")
        .header("If-Match", "\"v1\"")
        .body(json!({"body": "patched"}).to_string())
        .unwrap();
    must(front, patch, "PATCH").await;
    let shown = must(front, get_request(&format!("/notes/{id}")), "GET").await;
    assert_eq!(shown.json()["body"], "patched");
    let listed = must(front, get_request("/notes?tag=scale&q=pooler"), "list").await;
    assert_eq!(listed.json()["notes"][0]["id"], id);
    let mut burst = Vec::new();
    for i in 0..60 {
        burst.push(tokio::spawn(async move {
            let request = if i % 3 == 0 {
                post_note(&format!("burst {i}"))
            } else {
                get_request(&format!("/notes/{id}"))
            };
            send(front, request).await.map(|r| (r.status, r.text()))
        }));
    }
    for task in burst {
        let (status, text) = task.await.unwrap().expect("burst request");
        assert!(status < 300, "{status} {text}");
    }
    let delete = http::Request::delete(format!("/notes/{id}"))
        .body(String::new())
        .unwrap();
    let deleted = must(front, delete, "DELETE").await;
    assert!(deleted.header("pgbridge-commit-lsn").is_some());

    // The statement timeout still applies through PgBouncer (no startup option): the
    // client cancels, PgBouncer forwards the cancel, and the backend stops sleeping.
    let started = Instant::now();
    let slow = send(
        replicas[0].addr(),
        get_request("/seed/postgres-async?delay=8"),
    )
    .await
    .unwrap();
    // 504 `database_timeout`: the statement timeout's answer at the HTTP edge.
    assert_eq!(slow.status, 504, "{}", slow.text());
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}\n{}\n{}",
        started.elapsed(),
        replicas[0].program.log_tail(),
        bouncer.program.log_tail()
    );
    let admin = connect(&direct_url).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !common::service::active_sleeps(&admin).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the timed-out pg_sleep still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A note written through one replica reaches subscribers of the other two.
    let mut on_second = common::sse::open(replicas[1].addr(), "/notes/events", None).await;
    let mut on_third = common::sse::open(replicas[2].addr(), "/notes/events", None).await;
    assert_eq!((on_second.status, on_third.status), (200, 200));
    let written = must(replicas[0].addr(), post_note("fan out"), "POST").await;
    let note_id = written.json()["id"].clone();
    let a = on_second.take(1, Duration::from_secs(10)).await;
    let b = on_third.take(1, Duration::from_secs(10)).await;
    assert_eq!(a[0].data["note_id"], note_id);
    assert_eq!(b[0].data["note_id"], note_id);
    let seen = a[0].id;

    // A subscriber that reconnects to another replica with Last-Event-ID misses nothing.
    drop(on_second);
    let mut missed = Vec::new();
    for i in 0..3 {
        let reply = must(
            replicas[0].addr(),
            post_note(&format!("while away {i}")),
            "POST",
        )
        .await;
        missed.push(reply.json()["id"].clone());
    }
    let mut back = common::sse::open(replicas[2].addr(), "/notes/events", Some(seen)).await;
    let replayed = back.take(3, Duration::from_secs(10)).await;
    let ids: Vec<_> = replayed.iter().map(|e| e.data["note_id"].clone()).collect();
    assert_eq!(ids, missed);
    assert!(replayed.windows(2).all(|w| w[0].id < w[1].id));
    drop((back, on_third));

    // A rolling restart under a bounded load through nginx fails no request.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for worker in 0..6u64 {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        let note = note_id.as_i64().unwrap();
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let request = match (worker + n) % 4 {
                    0 => post_note(&format!("load {worker}/{n}")),
                    1 => get_request("/notes?limit=5"),
                    _ => get_request(&format!("/notes/{note}")),
                };
                match tokio::time::timeout(Duration::from_secs(20), send(front, request)).await {
                    Ok(Ok(reply)) if reply.status < 300 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(reply)) => {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{} {}", reply.status, reply.text()))
                    }
                    Ok(Err(err)) => failures.lock().unwrap().push(err),
                    Err(_) => failures.lock().unwrap().push("no answer in 20 s".into()),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for replica in replicas.iter_mut() {
        let port = replica.port;
        replica.program.signal("TERM");
        // Draining: not ready within moments of the signal, while still answering.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ready = send(replica.addr(), get_request("/readyz")).await.unwrap();
            if ready.status == 503 {
                assert!(ready.text().contains("draining"), "{}", ready.text());
                break;
            }
            assert!(Instant::now() < deadline, "/readyz still 200 after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = replica.program.wait_exit(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "replica on {port} did not drain and exit cleanly: {status:?}\n{}",
            replica.program.log_tail()
        );
        *replica = Replica::start(&topology, port, &logs).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let ok = ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rolling restart: {:?}\n{}",
        failures.len(),
        failures.len() as u64 + ok,
        &failures[..failures.len().min(5)],
        nginx.error_log()
    );
    assert!(ok > 50, "the load sent only {ok} requests");
    eprintln!("rolling restart: {ok} requests, 0 failed");
    let _ = std::fs::remove_dir_all(&logs);
}

/// A session-mode pool pointed at PgBouncer says why it cannot connect, and what to set,
/// instead of tokio-postgres' bare "db error".
#[tokio::test]
#[cfg_attr(
    skip_pgbouncer,
    ignore = "SKIPPED: needs pgbouncer: apt-get install pgbouncer"
)]
async fn a_session_pool_through_pgbouncer_says_what_is_wrong() {
    let cluster = Cluster::shared().await;
    let direct_url = cluster.create_database().await;
    let bouncer = PgBouncer::start(port_of(&direct_url), 2).await;
    let db = pgbridge::db::Db::connect(&pgbridge::db::DbConfig::new(
        bouncer.url(database_of(&direct_url)),
    ))
    .unwrap();
    let err = db
        .ping(Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported startup parameter"), "{err}");
    assert!(err.contains("DB_POOL_MODE=transaction"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_a_standby_see_your_writes() {
    let primary = Cluster::start_private().await;
    let direct_url = primary.create_database().await;
    pgbridge::db::migrate::Migrator::embedded()
        .unwrap()
        .run_url(&direct_url)
        .await
        .expect("migrate");
    let mut standby = Standby::start(port_of(&direct_url)).await;
    let standby_url = standby.url(database_of(&direct_url));
    let service = start_on(direct_url.clone(), |config| {
        config.database_read_url = Some(standby_url.clone());
        config.read_lsn_wait_ms = 300;
        config.read_max_lag_ms = 60_000;
    })
    .await;
    let addr = service.addr;
    standby.catch_up(&direct_url).await;

    // Wait until the router has checked the standby and uses it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = must(addr, get_request("/notes"), "list").await;
        if reply.header("pgbridge-served-by") == Some("standby") {
            break;
        }
        assert!(Instant::now() < deadline, "the standby was never used");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Write, then read with the token: always the write, from the standby when it has
    // replayed it in time.
    let mut from_standby = 0;
    for i in 0..20 {
        let created = must(addr, post_note(&format!("ryw {i}")), "POST").await;
        let id = created.json()["id"].as_i64().unwrap();
        let lsn = created
            .header("pgbridge-commit-lsn")
            .expect("token")
            .to_owned();
        let cookie = created.header("set-cookie").expect("cookie").to_owned();
        assert!(
            cookie.starts_with(&format!("Pgbridge-Commit-Lsn={lsn};")),
            "{cookie}"
        );
        let read = if i % 2 == 0 {
            http::Request::get(format!("/notes/{id}")).header("Pgbridge-Min-Lsn", &lsn)
        } else {
            http::Request::get(format!("/notes/{id}"))
                .header("Cookie", format!("Pgbridge-Commit-Lsn={lsn}"))
        };
        let read = must(addr, read.body(String::new()).unwrap(), "read your write").await;
        assert_eq!(read.json()["title"], format!("ryw {i}"));
        if read.header("pgbridge-served-by") == Some("standby") {
            from_standby += 1;
        }
    }
    assert!(
        from_standby > 0,
        "no read-your-write read was served by the standby"
    );

    // Row-level security holds on the standby as on the primary: the read runs in the
    // reader's owner scope there (session resolved on the primary), so another account
    // sees none of these notes, whichever server answers.
    let mine = must(addr, post_note("not yours"), "POST").await;
    let my_id = mine.json()["id"].as_i64().unwrap();
    let my_lsn = mine.header("pgbridge-commit-lsn").unwrap().to_owned();
    let other = common::accounts::Account::new(addr, "other").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let one = other
            .send(
                "GET",
                &format!("/notes/{my_id}"),
                None,
                &[("Pgbridge-Min-Lsn", &my_lsn)],
            )
            .await;
        assert_eq!(one.status, 404, "{}", one.text());
        let list = other
            .send("GET", "/notes", None, &[("Pgbridge-Min-Lsn", &my_lsn)])
            .await;
        assert_eq!(list.status, 200, "{}", list.text());
        assert_eq!(
            list.json()["notes"],
            json!([]),
            "another account's notes leaked"
        );
        if list.header("pgbridge-served-by") == Some("standby") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no read of the other account was served by the standby"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Replay paused: a read with the token goes to the primary, and sees the write; one
    // without it is served by the (stale) standby.
    let admin_standby = connect(&standby.url("postgres")).await;
    admin_standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let created = must(addr, post_note("while paused"), "POST").await;
    let id = created.json()["id"].as_i64().unwrap();
    let lsn = created.header("pgbridge-commit-lsn").unwrap().to_owned();
    for _ in 0..3 {
        let read = http::Request::get(format!("/notes/{id}"))
            .header("Pgbridge-Min-Lsn", &lsn)
            .body(String::new())
            .unwrap();
        let read = must(addr, read, "read while paused").await;
        assert_eq!(read.json()["title"], "while paused");
        assert_eq!(read.header("pgbridge-served-by"), Some("primary"));
    }
    let (standby_before, _) = pgbridge::db::replica::reads_served();
    let stale = send(addr, get_request(&format!("/notes/{id}")))
        .await
        .unwrap();
    let (standby_after, _) = pgbridge::db::replica::reads_served();
    assert_eq!(
        (stale.status, standby_after - standby_before),
        (404, 1),
        "without the token the paused standby answers, without the write"
    );
    admin_standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    drop(admin_standby);

    // Standby stopped: every read is served, by the primary.
    standby.stop();
    for i in 0..10 {
        let path = if i % 2 == 0 {
            format!("/notes/{id}")
        } else {
            "/notes".to_owned()
        };
        let read = must(addr, get_request(&path), "read with the standby down").await;
        assert_eq!(read.header("pgbridge-served-by"), Some("primary"));
    }
    // Back up: it is used again.
    standby.start_again().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = must(addr, get_request("/notes"), "list").await;
        if reply.header("pgbridge-served-by") == Some("standby") {
            break;
        }
        assert!(Instant::now() < deadline, "the standby was not used again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
