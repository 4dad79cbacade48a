//! The binary's server loop against hostile clients: slowloris and idle connections are
//! closed on time, the connection cap pauses accepting and resumes, a low file-descriptor
//! limit does not stop normal service, and the end of the shutdown grace period cancels the
//! queries still running in Postgres.
//!
//! The timeouts and the shedding at the cap run in-process ([`application`]: the same
//! startup and server loop as the binary); what reads the process's log, lowers its
//! file-descriptor limit or signals it runs the binary.

use crate::common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::http::get;
use common::pg::Cluster;
use common::process::{KillOnDrop, loopback_listener, pass_listener};
use common::service::{active_sleeps, application, connect};

const BIN: &str = env!("CARGO_BIN_EXE_pgbridge");

/// A running binary, killed when dropped.
struct Server {
    child: KillOnDrop,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the server's log ---\n{}", self.log());
        }
        // `child` is killed as it drops, after this.
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts the binary on a fresh database with `env`, optionally under `prlimit --nofile=N`.
async fn spawn(name: &str, env: &[(&str, &str)], nofile: Option<u64>) -> (Server, String) {
    let url = Cluster::shared().await.create_database().await;
    let listener = loopback_listener();
    let addr = listener.local_addr().unwrap();
    let log =
        std::env::temp_dir().join(format!("pgbridge-limits-{name}-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let mut command = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    command
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    pass_listener(&mut command, listener);
    let child = KillOnDrop(command.spawn().expect("start pgbridge"));
    drop(command);
    let mut server = Server { child, addr, log };
    let log = server.log.clone();
    server
        .child
        .wait_ready(addr, Duration::from_secs(30), &log)
        .await;
    (server, url)
}

/// The value of one line of the service's `/metrics`.
async fn metric(addr: SocketAddr, line_prefix: &str) -> u64 {
    let text = get(addr, "/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in /metrics:\n{text}"))
}

/// Waits until the peer closes `stream` (EOF or reset); returns how long that took, or
/// `None` if it stayed open for `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn slowloris_and_idle_connections_are_closed_busy_ones_are_not() {
    let server = application(|config| {
        config.header_read_timeout_ms = 1000;
        config.idle_timeout_ms = 2500;
    })
    .await;

    // Slowloris: a request head one byte at a time, never finished.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let trickle = async {
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    trickle.await;
    assert!(
        closed_within(&mut slow, Duration::from_secs(10))
            .await
            .is_some(),
        "slowloris connection still open"
    );
    assert_eq!(
        metric(
            server.addr,
            "pgbridge_http_connections_timed_out_total{reason=\"header\"}"
        )
        .await,
        1
    );

    // Idle keep-alive: one request, then nothing.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    common::http::read_until(&mut idle, &mut seen, "\"ok\"", "healthz").await;
    let took = closed_within(&mut idle, Duration::from_secs(15))
        .await
        .expect("idle keep-alive connection still open");
    assert!(
        took >= Duration::from_millis(2000),
        "closed early: {took:?}"
    );
    assert!(
        metric(
            server.addr,
            "pgbridge_http_connections_timed_out_total{reason=\"idle\"}"
        )
        .await
            >= 1
    );

    // A request that takes longer than both timeouts is not cut.
    let reply = get(server.addr, "/seed/poll-sleep?seconds=4").await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("slept 4/4"), "{}", reply.text());
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_then_are_served() {
    let (server, _) = spawn(
        "cap",
        &[("MAX_CONNECTIONS", "4"), ("IDLE_TIMEOUT_MS", "60000")],
        None,
    )
    .await;
    let token = common::http::account(server.addr, "cap-streamer", "cap streamer password").await;
    // Four signed-in event streams (their greeting read, so they are surely accepted and
    // in flight): nothing may shed them. (Long *anonymous* requests would be evicted for
    // the newcomer: tests/api/bulkheads.rs.)
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "GET /notes/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        common::http::read_until(&mut stream, &mut seen, "connected", "event stream").await;
        busy.push(stream);
    }
    let addr = server.addr;
    let waiting = tokio::spawn(async move { get(addr, "/healthz").await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!waiting.is_finished(), "served past the cap");
    for stream in &mut busy {
        assert!(
            closed_within(stream, Duration::from_millis(200))
                .await
                .is_none(),
            "an in-flight stream was shed"
        );
    }
    drop(busy.pop());
    let reply = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("not served once below the cap")
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(metric(server.addr, "pgbridge_http_connections_cap_reached_total ").await >= 1);
    assert_eq!(
        metric(server.addr, "pgbridge_http_connections_evicted_total ").await,
        0,
        "no anonymous request to evict"
    );
    let log = server.log();
    assert!(log.contains("connection cap reached"), "{log}");
    assert!(log.contains("accepting again"), "{log}");
}

#[tokio::test]
async fn at_the_cap_idle_connections_make_room_for_new_ones() {
    let server = application(|config| {
        config.max_connections = 4;
        config.idle_timeout_ms = 600_000;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // With a ten-minute idle timeout, only the cap's pressure can free a slot.
    let reply = tokio::time::timeout(Duration::from_secs(15), get(server.addr, "/healthz"))
        .await
        .expect("a new connection is served once idle ones are shed");
    assert_eq!(reply.status, 200);
    assert!(
        metric(
            server.addr,
            "pgbridge_http_connections_timed_out_total{reason=\"idle\"}"
        )
        .await
            >= 1
    );
}

#[tokio::test]
async fn with_few_file_descriptors_slowloris_does_not_stop_normal_requests() {
    let (server, _) = spawn("nofile", &[("HEADER_READ_TIMEOUT_MS", "2000")], Some(256)).await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        slow.push(stream);
    }
    for i in 0..5 {
        let started = Instant::now();
        let reply = tokio::time::timeout(Duration::from_secs(20), get(server.addr, "/healthz"))
            .await
            .unwrap_or_else(|_| panic!("request {i} not served within 20 s"));
        assert_eq!(reply.status, 200);
        eprintln!("request {i}: {:?}", started.elapsed());
    }
    assert!(
        metric(
            server.addr,
            "pgbridge_http_connections_timed_out_total{reason=\"header\"}"
        )
        .await
            >= 100
    );
    let log = server.log();
    assert!(log.contains("lowered_to"), "cap fitted to the limit: {log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn the_end_of_the_grace_period_cancels_queries_in_postgres() {
    let (mut server, url) = spawn("grace", &[("SHUTDOWN_GRACE_SECS", "1")], None).await;
    let admin = connect(&url).await;
    let addr = server.addr;
    let request = tokio::spawn(async move {
        let request = http::Request::get("/seed/postgres-async?delay=10")
            .body(String::new())
            .unwrap();
        common::http::send(addr, request).await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while active_sleeps(&admin).await.is_empty() {
        assert!(Instant::now() < deadline, "the query never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited = Instant::now();
    let mut still = active_sleeps(&admin).await;
    while !still.is_empty() && exited.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        still = active_sleeps(&admin).await;
    }
    assert!(
        still.is_empty(),
        "pg_sleep still running 2 s after exit: {still:?}\n{}",
        server.log()
    );
    assert!(
        request.await.unwrap().is_err(),
        "the dropped request is cut"
    );
    let log = server.log();
    assert!(log.contains("grace period over"), "{log}");
}

#[test]
fn help_lists_the_connection_settings() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for setting in [
        "HEADER_READ_TIMEOUT_MS",
        "IDLE_TIMEOUT_MS",
        "MAX_CONNECTIONS",
        "MAX_CONNECTIONS_PER_ADDRESS",
        "MAX_LONG_REQUESTS_PER_ADDRESS",
        "ANONYMOUS_DB_REQUESTS",
        "EVENTS_MAX_STREAMS_PER_ACCOUNT",
        "EVENTS_MAX_OPENING",
    ] {
        assert!(help.contains(setting), "--help lacks {setting}:\n{help}");
    }
}
