//! The `pgbridge` binary: flags, start-up against a missing database, request logs, and a
//! graceful stop on SIGTERM that lets in-flight requests finish.

use crate::common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::http::get;
use common::pg::Cluster;
use common::process::{Listen, free_port, pgbridge_command};

const BIN: &str = env!("CARGO_BIN_EXE_pgbridge");

fn spawn(database_url: &str, listen: &Listen, log: &std::path::Path) -> Child {
    pgbridge_command(listen, log)
        .env("DATABASE_URL", database_url)
        // A line for every request, successful ones included (the default logs 4xx/5xx).
        .env("LOG_REQUESTS", "all")
        .spawn()
        .expect("start pgbridge")
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_for_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn temp_log(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pgbridge-{name}-{}.log", std::process::id()))
}

#[test]
fn help_lists_every_setting() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for setting in [
        "--database-url",
        "DATABASE_URL",
        "--bind",
        "BIND_ADDR",
        "DB_POOL_SIZE",
        "REQUEST_TIMEOUT_MS",
        "BODY_LIMIT_BYTES",
        "SHUTDOWN_GRACE_SECS",
    ] {
        assert!(
            help.contains(setting),
            "--help does not mention {setting}:\n{help}"
        );
    }
}

#[test]
fn a_bad_flag_is_refused_clearly() {
    let out = Command::new(BIN)
        .args(["--bind", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bind"));
}

#[tokio::test]
async fn serves_logs_each_request_and_drains_on_sigterm() {
    let url = Cluster::shared().await.create_database().await;
    let listen = Listen::socket();
    let port = listen.addr().port();
    let log = temp_log("serve");
    let mut child = spawn(&url, &listen, &log);
    assert!(
        wait_for_port(port, Duration::from_secs(20)).await,
        "pgbridge did not listen"
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(get(addr, "/healthz").await.status, 200);
    // The container healthcheck: the binary checks itself.
    let check = Command::new(BIN)
        .env_clear()
        .env("BIND_ADDR", format!("0.0.0.0:{port}"))
        .arg("--healthcheck")
        .status()
        .unwrap();
    assert!(check.success(), "--healthcheck against a live server");
    let dead = Command::new(BIN)
        .env_clear()
        .args([
            "--healthcheck",
            "--bind",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .status()
        .unwrap();
    assert!(!dead.success(), "--healthcheck with nothing listening");

    // A request in flight when SIGTERM arrives still finishes.
    let in_flight = tokio::spawn(async move { get(addr, "/seed/poll-sleep?seconds=2").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    terminate(&child);
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("slept 2/2"), "{}", reply.text());

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "pgbridge did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("/healthz") && l.contains("finished processing"))
        .collect();
    // Two GETs of /healthz (the test's and --healthcheck's): one line each.
    assert_eq!(lines.len(), 2, "one line per request:\n{logged}");
    for field in ["method=GET", "request_id=", "status=200", "latency="] {
        assert!(lines[0].contains(field), "{field} missing: {}", lines[0]);
    }
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn waits_for_a_database_that_is_down_and_does_not_crash() {
    let dead_port = free_port();
    let url = format!("postgres://postgres@127.0.0.1:{dead_port}/postgres");
    let log = temp_log("down");
    let mut child = spawn(&url, &Listen::socket(), &log);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "pgbridge exited instead of waiting"
    );
    terminate(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.matches("database not ready").count() >= 2,
        "retries are logged:\n{logged}"
    );
    assert!(!logged.contains("panicked"), "{logged}");
    let _ = std::fs::remove_file(log);
}

#[tokio::test]
async fn serves_on_a_socket_passed_in_listen_fds_instead_of_binding() {
    let url = Cluster::shared().await.create_database().await;
    // BIND_ADDR names a port that is taken: binding it would fail at once.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = Listen::socket();
    let addr = listen.addr();
    let log = temp_log("listenfds");
    let mut command = pgbridge_command(&listen, &log);
    command
        .env("DATABASE_URL", &url)
        .env("BIND_ADDR", taken.local_addr().unwrap().to_string());
    let mut child = common::process::KillOnDrop(command.spawn().expect("start pgbridge"));
    let reply = tokio::time::timeout(Duration::from_secs(30), get(addr, "/healthz"))
        .await
        .expect("served on the passed socket");
    assert_eq!(reply.status, 200);
    terminate(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("passed in LISTEN_FDS"), "{logged}");
    assert!(!logged.contains("cannot listen"), "{logged}");
    let _ = std::fs::remove_file(log);
}
