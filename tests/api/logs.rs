//! The binary's log lines: a person can act on them, a shipper can parse them, and there is
//! no noise (4xx not at ERROR, no Postgres notices at every start or cancel, one line per
//! request even when the client hangs up first, a busy port named).

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::http::{authenticate_by_default, get, send, send_as_is};
use common::pg::Cluster;
use common::process::{KillOnDrop, Listen, free_port, pgbridge_command};

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pgbridge-logs-{name}-{}.log", std::process::id()))
}

fn spawn(database_url: &str, listen: &Listen, log: &Path, env: &[(&str, &str)]) -> KillOnDrop {
    let mut command = pgbridge_command(listen, log);
    command
        .env("DATABASE_URL", database_url)
        .envs(env.iter().copied());
    KillOnDrop(command.spawn().expect("start pgbridge"))
}

async fn wait_exit(child: &mut KillOnDrop, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("pgbridge did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stop(child: &mut KillOnDrop) -> ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    wait_exit(child, Duration::from_secs(30)).await
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Lines about requests whose path is `path`.
fn request_lines<'a>(logged: &'a str, path: &str) -> Vec<&'a str> {
    let needle = format!("path={path} ");
    logged
        .lines()
        .filter(|line| line.contains(&needle) && line.contains("finished processing request"))
        .collect()
}

/// 4xx answers are not errors; a cancelled query and a second start log no Postgres
/// notices; a request whose client hung up still gets its line.
#[tokio::test]
async fn refusals_cancels_and_restarts_are_quiet_and_abandoned_requests_logged() {
    let url = Cluster::shared().await.create_database().await;
    let listen = Listen::socket();
    let addr: SocketAddr = listen.addr();
    let log = log_path("quiet");

    // The first start creates the migrations table; the second must not log a notice
    // about it existing.
    let mut child = spawn(&url, &listen, &log, &[]);
    child.wait_ready(addr, Duration::from_secs(60), &log).await;
    assert!(stop(&mut child).await.success(), "{}", read(&log));
    let mut child = spawn(&url, &listen, &log, &[]);
    child.wait_ready(addr, Duration::from_secs(60), &log).await;
    authenticate_by_default(addr);

    for path in [
        "/seed/poll-sleep?seconds=99",
        "/notes/abc",
        "/notes/999999",
        "/no-such-route",
    ] {
        let reply = get(addr, path).await;
        assert!(
            (400..500).contains(&reply.status),
            "{path}: {}",
            reply.status
        );
    }
    let unsupported = send(
        addr,
        http::Request::post("/notes")
            .header("content-type", "text/plain")
            .body("x".to_owned())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(unsupported.status, 415);

    // The client hangs up while the query sleeps in Postgres: the query is cancelled.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(500),
        get(addr, "/seed/postgres-async?delay=5"),
    )
    .await;
    assert!(abandoned.is_err(), "the slow request answered early");
    // Its line, and the cancel's aftermath, come shortly after.
    let deadline = Instant::now() + Duration::from_secs(20);
    while request_lines(&read(&log), "/seed/postgres-async").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no line for the abandoned request:\n{}",
            read(&log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection that ran it is settled and back in the pool before we stop.
    assert_eq!(get(addr, "/readyz").await.status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stop(&mut child).await.success(), "{}", read(&log));

    let logged = read(&log);
    for line in logged.lines() {
        assert!(
            !line.contains("ERROR"),
            "an ERROR line for a client's mistake: {line}"
        );
    }
    for noise in ["already exists", "no transaction in progress"] {
        assert!(!logged.contains(noise), "{noise:?} logged:\n{logged}");
    }
    let lines = request_lines(&logged, "/seed/postgres-async");
    assert_eq!(lines.len(), 1, "one line per request:\n{logged}");
    for field in ["status=499", "abandoned=true", "latency=", "request_id="] {
        assert!(lines[0].contains(field), "{field} missing: {}", lines[0]);
    }
    for path in ["/notes/abc", "/seed/poll-sleep", "/no-such-route"] {
        assert_eq!(request_lines(&logged, path).len(), 1, "{path}:\n{logged}");
    }
    // By default (LOG_REQUESTS=errors) a successful request gets no line.
    assert!(
        request_lines(&logged, "/readyz").is_empty(),
        "a line for a 200:\n{logged}"
    );
    let _ = std::fs::remove_file(&log);
}

/// `LOG_FORMAT=json`: every line is one JSON object, and request lines carry the request's
/// fields.
#[tokio::test]
async fn json_lines_parse() {
    let url = Cluster::shared().await.create_database().await;
    let listen = Listen::socket();
    let addr: SocketAddr = listen.addr();
    let log = log_path("json");
    let mut child = spawn(
        &url,
        &listen,
        &log,
        &[("LOG_FORMAT", "json"), ("LOG_REQUESTS", "all")],
    );
    child.wait_ready(addr, Duration::from_secs(60), &log).await;
    assert_eq!(get(addr, "/healthz").await.status, 200);
    assert!(stop(&mut child).await.success(), "{}", read(&log));

    let logged = read(&log);
    let mut requests = 0;
    for line in logged.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["fields"]["message"].is_string(), "{line}");
        if value["span"]["path"] == "/healthz" {
            requests += 1;
            assert_eq!(value["span"]["method"], "GET", "{line}");
            assert!(value["span"]["request_id"].is_string(), "{line}");
        }
    }
    assert!(requests >= 1, "no request line:\n{logged}");
    let _ = std::fs::remove_file(&log);
}

/// A busy port: the address is named and the process exits non-zero at once, without
/// waiting for the database first (here there is none).
#[tokio::test]
async fn a_busy_port_is_named_and_fails_fast() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dead_db = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let log = log_path("busy");
    let listen = Listen::Bind(taken.local_addr().unwrap());
    let mut child = spawn(&dead_db, &listen, &log, &[]);
    let status = wait_exit(&mut child, Duration::from_secs(20)).await;
    assert!(!status.success(), "{status:?}");
    let logged = read(&log);
    assert!(
        logged.contains(&format!("127.0.0.1:{port}")) && logged.contains("in use"),
        "{logged}"
    );
    assert!(!logged.contains("database not ready"), "{logged}");
    drop(taken);
    let _ = std::fs::remove_file(&log);
}

/// `RUST_LOG=trace` over sign-up, log-in, a note written and read, log-out: no password, no
/// password hash, no token, no token hash and no note content in any line — although the
/// driver's own debug lines are there.
#[tokio::test]
async fn no_secret_in_the_log_at_trace() {
    use sha2::Digest;

    let url = Cluster::shared().await.create_database().await;
    let listen = Listen::socket();
    let addr: SocketAddr = listen.addr();
    let log = log_path("trace-secrets");
    let mut child = spawn(&url, &listen, &log, &[("RUST_LOG", "trace")]);
    child.wait_ready(addr, Duration::from_secs(60), &log).await;

    let password = "Pa55-Secret-Horse";
    let title = "Title-Secret-7781";
    let body = "Body-Secret-9923";
    let post = |path: &str, token: Option<&str>, json: serde_json::Value| {
        let mut request = http::Request::post(path).header("Content-Type", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        request.body(json.to_string()).unwrap()
    };
    let credentials = serde_json::json!({"username": "secretive", "password": password});
    let signed_up = send_as_is(addr, post("/accounts", None, credentials.clone()))
        .await
        .unwrap();
    assert_eq!(signed_up.status, 201, "{}", signed_up.text());
    let session = send_as_is(addr, post("/sessions", None, credentials.clone()))
        .await
        .unwrap();
    assert_eq!(session.status, 201, "{}", session.text());
    let token = session.json()["token"].as_str().unwrap().to_owned();
    let wrong = serde_json::json!({"username": "secretive", "password": "Wrong-Secret-Guess"});
    let refused = send_as_is(addr, post("/sessions", None, wrong))
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
    let created = send_as_is(
        addr,
        post(
            "/notes",
            Some(&token),
            serde_json::json!({"title": title, "body": body}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_i64().unwrap();
    let fetched = send_as_is(
        addr,
        http::Request::get(format!("/notes/{id}"))
            .header("Authorization", format!("Bearer {token}"))
            .body(String::new())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(fetched.status, 200);
    let out = send_as_is(
        addr,
        http::Request::delete("/sessions/current")
            .header("Authorization", format!("Bearer {token}"))
            .body(String::new())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 204);
    assert!(stop(&mut child).await.success(), "{}", read_log_tail(&log));

    let admin = common::service::connect(&url).await;
    let hash: String = admin
        .query_one(
            "SELECT password_hash FROM accounts WHERE username = 'secretive'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let token_hash = sha2::Sha256::digest(token.as_bytes());
    let token_hex: String = token_hash.iter().map(|b| format!("{b:02x}")).collect();
    let token_debug = format!("{:?}", &token_hash[..8]);
    let token_debug = token_debug.trim_end_matches(']');
    let hash_tail = hash.rsplit('$').next().unwrap().to_owned();
    let logged = read(&log);
    assert!(
        logged.contains(" TRACE ") && logged.contains("tokio_postgres"),
        "not a trace-level log with the driver's lines:\n{}",
        &logged[..logged.len().min(2000)]
    );
    for (what, secret) in [
        ("password", password),
        ("wrong password", "Wrong-Secret-Guess"),
        ("password hash", hash.as_str()),
        ("password hash's digest", hash_tail.as_str()),
        ("token", token.as_str()),
        ("token hash (hex)", token_hex.as_str()),
        ("token hash (bytes)", token_debug),
        ("note title", title),
        ("note body", body),
    ] {
        if let Some(line) = logged.lines().find(|line| line.contains(secret)) {
            panic!("the {what} is in the log: {line}");
        }
    }
    let _ = std::fs::remove_file(&log);
}

/// A mistyped `DATABASE_URL` (or standby URL) stops the start with a message that names the
/// problem but never the password.
#[tokio::test]
async fn a_malformed_database_url_never_shows_its_password() {
    for (name, value) in [
        (
            "DATABASE_URL",
            "mysql://postgres:S3cret@db.example.com:5432/app",
        ),
        (
            "DATABASE_URL",
            "postgres://postgres:S3cret@db.example.com:port/app",
        ),
        ("DATABASE_URL", "host=db password='S3cret' port=x"),
        ("DATABASE_READ_URL", "mysql://postgres:S3cret@standby/app"),
    ] {
        let listen = Listen::socket();
        let log = log_path("bad-url");
        let mut env = vec![(name, value)];
        let primary = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
        if name != "DATABASE_URL" {
            env.push(("DATABASE_URL", primary.as_str()));
        }
        let mut command = pgbridge_command(&listen, &log);
        command.envs(env.iter().copied());
        let mut child = KillOnDrop(command.spawn().expect("start pgbridge"));
        let status = wait_exit(&mut child, Duration::from_secs(20)).await;
        assert!(!status.success(), "{name}={value}: {status:?}");
        let logged = read(&log);
        assert!(!logged.contains("S3cret"), "{name}={value}:\n{logged}");
        assert!(
            logged.contains("invalid") || logged.contains("scheme"),
            "{name}={value}: no reason given:\n{logged}"
        );
        let _ = std::fs::remove_file(&log);
    }
}

fn read_log_tail(log: &Path) -> String {
    let logged = read(log);
    logged[logged.len().saturating_sub(3000)..].to_owned()
}
