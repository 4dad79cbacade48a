//! TLS to Postgres, against a real server that accepts only `hostssl` on TCP, with a
//! throwaway CA and server certificate made here: the notes flow over `verify-full` (every
//! connection, the listener's included, encrypted), cancel requests over TLS, and start-up
//! failures that name their reason (certificate, TLS, authentication, missing database)
//! without ever printing the password.
//!
//! The whole notes suite runs over verified TLS too: `PGBRIDGE_TEST_TLS=1 cargo test --test
//! notes --test events` (CI does).

use crate::common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::http::{get, send};
use common::pg::Cluster;
use common::service::{active_sleeps, connect, start_on};
use common::tls::TestCa;
use pgbridge::db::Queries;
use pgbridge::db::migrate::Migrator;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OnceCell;

const BIN: &str = env!("CARGO_BIN_EXE_pgbridge");

/// The password of the `app` role (scram-sha-256 over `hostssl`).
const APP_PASSWORD: &str = "right-Pa55word-4417";

/// One TLS-only cluster for this binary, its certificate naming only `localhost`.
async fn tls_cluster() -> &'static Cluster {
    static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();
    CLUSTER
        .get_or_init(|| async {
            let ca = TestCa::new("pgbridge test CA");
            let cluster = Cluster::start_private_tls(ca.server(&["localhost"], false)).await;
            let admin = connect(&cluster.admin_url()).await;
            admin
                .batch_execute(&format!("CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'"))
                .await
                .expect("create the app role");
            admin
                .batch_execute("CREATE DATABASE app OWNER app")
                .await
                .expect("create the app database");
            cluster
        })
        .await
}

/// `url` with `from` replaced by `to`, asserting there was something to replace.
fn swap(url: &str, from: &str, to: &str) -> String {
    assert!(url.contains(from), "{from:?} not in {url}");
    url.replacen(from, to, 1)
}

#[tokio::test]
async fn the_notes_flow_runs_over_verify_full_on_every_connection() {
    let cluster = tls_cluster().await;
    let url = cluster.create_database().await;
    assert!(url.contains("sslmode=verify-full"), "{url}");
    let service = start_on(url.clone(), |_| {}).await;
    Migrator::embedded()
        .unwrap()
        .run_url(&url)
        .await
        .expect("migrate over TLS");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !service.state.apps.notes.listener.is_connected() {
        assert!(
            Instant::now() < deadline,
            "the listener never connected over TLS"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let created = send(
        service.addr,
        http::Request::post("/notes")
            .header("Content-Type", "application/json")
            .body(json!({"title": "Over TLS", "tags": ["tls"]}).to_string())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_i64().unwrap();
    let fetched = get(service.addr, &format!("/notes/{id}")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json()["title"], "Over TLS");
    let patched = send(
        service.addr,
        http::Request::patch(format!("/notes/{id}"))
            .header("Content-Type", "application/merge-patch+json")
            .header("If-Match", "\"v1\"")
            .body(json!({"body": "encrypted"}).to_string())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(patched.status, 200, "{}", patched.text());
    let listed = get(service.addr, "/notes?tag=tls&q=tls").await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["notes"][0]["body"], "encrypted");
    let stale = send(
        service.addr,
        http::Request::patch(format!("/notes/{id}"))
            .header("Content-Type", "application/merge-patch+json")
            .header("If-Match", "\"v1\"")
            .body(json!({"body": "late"}).to_string())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(stale.status, 412);
    let deleted = send(
        service.addr,
        http::Request::delete(format!("/notes/{id}"))
            .body(String::new())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(deleted.status, 204);
    assert_eq!(get(service.addr, "/readyz").await.status, 200);

    // Every backend on this database, the pool's and the listener's, is encrypted.
    let admin = connect(&url).await;
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE NOT s.ssl), \
                    count(*) FILTER (WHERE a.application_name = 'pgbridge-listener' AND s.ssl), \
                    count(*) FILTER (WHERE a.application_name = 'pgbridge' AND s.ssl) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    let (plain, listener, pool): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(plain, 0, "a connection without TLS");
    assert_eq!(listener, 1, "the listener's connection");
    assert!(pool >= 1, "the pool's connections");
}

/// A TCP front that, like a TLS-only managed endpoint, drops any connection that does not
/// start with an `SSLRequest`. Counts both kinds.
async fn tls_only_proxy(upstream: u16) -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = Arc::new(AtomicUsize::new(0));
    let plain = Arc::new(AtomicUsize::new(0));
    let (tls2, plain2) = (tls.clone(), plain.clone());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (tls, plain) = (tls2.clone(), plain2.clone());
            tokio::spawn(async move {
                let mut first = [0u8; 8];
                if client.read_exact(&mut first).await.is_err() {
                    return;
                }
                if first != SSL_REQUEST {
                    plain.fetch_add(1, Ordering::SeqCst);
                    return; // dropped: refused
                }
                tls.fetch_add(1, Ordering::SeqCst);
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                if server.write_all(&first).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, tls, plain)
}

#[tokio::test]
async fn a_hung_up_clients_query_is_cancelled_over_tls_within_a_second() {
    let cluster = tls_cluster().await;
    let url = cluster.create_database().await;
    let port = cluster.port().expect("a private cluster");
    let (proxy, tls, plain) = tls_only_proxy(port).await;
    let service_url = swap(&url, &format!(":{port}/"), &format!(":{proxy}/"));
    let service = start_on(service_url, |_| {}).await;
    let admin = connect(&url).await;

    let mut client = TcpStream::connect(service.addr).await.unwrap();
    client
        .write_all(b"GET /seed/postgres-async?delay=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Some(&pid) = active_sleeps(&admin).await.first() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the query never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let tls_before = tls.load(Ordering::SeqCst);

    drop(client);
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
            "backend {pid} still {state:?} a second after the client left (plain-text attempts: {})",
            plain.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(plain.load(Ordering::SeqCst), 0, "a connection without TLS");
    assert!(
        tls.load(Ordering::SeqCst) > tls_before,
        "the cancel request came over TLS"
    );
    let reply = get(service.addr, "/seed/postgres-async?delay=0").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// The shared, pipelined connections go through the same TLS as the pool: against a
/// TLS-only front they connect, and the cancel for a lone abandoned shared statement goes
/// over TLS too and idles its backend within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_path_connects_and_cancels_over_tls() {
    let cluster = tls_cluster().await;
    let url = cluster.create_database().await;
    let port = cluster.port().expect("a private cluster");
    let (proxy, tls, plain) = tls_only_proxy(port).await;
    let mut config =
        pgbridge::db::DbConfig::new(swap(&url, &format!(":{port}/"), &format!(":{proxy}/")));
    config.shared.connections = 1;
    let db = pgbridge::db::Db::connect(&config).unwrap();
    let admin = connect(&url).await;

    let one: i32 = db.shared().query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let encrypted: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = current_database() AND a.application_name = 'pgbridge-shared' \
               AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(encrypted, 1, "the shared connection, encrypted");

    let tls_before = tls.load(Ordering::SeqCst);
    let work = db.shared().query("SELECT pg_sleep(5)", &[]);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), work)
            .await
            .is_err()
    );
    let dropped = Instant::now();
    while !active_sleeps(&admin).await.is_empty() {
        assert!(
            dropped.elapsed() < Duration::from_secs(1),
            "the abandoned shared statement still runs (plain-text attempts: {})",
            plain.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(plain.load(Ordering::SeqCst), 0, "a connection without TLS");
    assert!(
        tls.load(Ordering::SeqCst) > tls_before,
        "the cancel request came over TLS"
    );
    let two: i32 = db.shared().query_one("SELECT 2", &[]).await.unwrap().get(0);
    assert_eq!(two, 2, "the fence came down");
}

/// Runs the binary against `url`; it must exit within 30 s with a failure status. Returns
/// what it printed.
async fn startup_fails(url: &str) -> String {
    startup_fails_with(url, &[]).await
}

/// [`startup_fails`], with more environment variables.
async fn startup_fails_with(url: &str, env: &[(&str, &str)]) -> String {
    let child = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .env("DATABASE_URL", url)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgbridge");
    let pid = child.id();
    let waited = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let Ok(output) = waited else {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("pgbridge kept retrying a permanent error against {url}");
    };
    let output = output.unwrap().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.status.success(),
        "pgbridge exited 0 against {url}:\n{printed}"
    );
    assert!(printed.contains("pgbridge stopped"), "{printed}");
    printed
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_host_at_startup() {
    let cluster = tls_cluster().await;
    let url = cluster.create_database().await;
    // The certificate names localhost; connect by address instead.
    let url = swap(&url, "@localhost:", "@127.0.0.1:");
    let printed = startup_fails(&url).await;
    assert!(
        printed.contains("certificate does not match the host name"),
        "{printed}"
    );
    assert!(printed.contains("127.0.0.1:"), "names the host: {printed}");
}

#[tokio::test]
async fn verify_ca_accepts_that_certificate_without_the_name() {
    let cluster = tls_cluster().await;
    let url = cluster.create_database().await;
    let url = swap(&url, "@localhost:", "@127.0.0.1:");
    let url = swap(&url, "sslmode=verify-full", "sslmode=verify-ca");
    let client = connect(&url).await;
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
}

#[tokio::test]
async fn verify_full_refuses_an_unknown_ca_at_startup() {
    let cluster = tls_cluster().await;
    let url = cluster.create_database().await;
    let other = std::env::temp_dir().join(format!("pgbridge-other-ca-{}.pem", std::process::id()));
    std::fs::write(&other, TestCa::new("some other CA").pem()).unwrap();
    let ca = cluster.directory().unwrap().join("ca.pem");
    let url = swap(
        &url,
        &format!("sslrootcert={}", ca.display()),
        &format!("sslrootcert={}", other.display()),
    );
    let printed = startup_fails(&url).await;
    let _ = std::fs::remove_file(&other);
    assert!(printed.contains("signed by an unknown CA"), "{printed}");
}

#[tokio::test]
async fn verify_full_refuses_an_expired_certificate_at_startup() {
    let ca = TestCa::new("pgbridge expiry CA");
    let cluster = Cluster::start_private_tls(ca.server(&["localhost"], true)).await;
    let printed = startup_fails(&cluster.admin_url()).await;
    assert!(printed.contains("certificate has expired"), "{printed}");
}

#[tokio::test]
async fn sslmode_disable_against_a_tls_only_server_says_so() {
    let cluster = tls_cluster().await;
    let url = cluster.create_database().await;
    let url = swap(&url, "sslmode=verify-full", "sslmode=disable");
    let printed = startup_fails(&url).await;
    assert!(printed.contains("authentication failed"), "{printed}");
    assert!(
        printed.contains("accepts only TLS connections: use sslmode=require"),
        "{printed}"
    );
}

#[tokio::test]
async fn login_failures_stop_startup_and_never_show_the_password() {
    let cluster = tls_cluster().await;
    let app_url = swap(
        &cluster.url("app"),
        "postgres@",
        &format!("app:{APP_PASSWORD}@"),
    );
    // The right password works (the role and its database exist)...
    connect(&app_url).await;

    // ...a wrong one is an authentication failure, named with host, port, database, user.
    let wrong = "wrong-Pa55word-9902";
    let printed = startup_fails(&swap(&app_url, APP_PASSWORD, wrong)).await;
    assert!(printed.contains("authentication failed"), "{printed}");
    assert!(
        printed.contains("database \"app\", user \"app\""),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(":{}", cluster.port().unwrap())),
        "{printed}"
    );
    assert!(
        !printed.contains(wrong),
        "the password was printed:\n{printed}"
    );

    // A database that does not exist, with the right password: named, password hidden.
    let printed = startup_fails(&swap(&app_url, "/app?", "/no_such_db?")).await;
    assert!(printed.contains("the database does not exist"), "{printed}");
    assert!(printed.contains("no_such_db"), "{printed}");
    assert!(
        !printed.contains(APP_PASSWORD),
        "the password was printed:\n{printed}"
    );
}

#[tokio::test]
async fn prefer_and_require_encrypt_without_a_root_certificate() {
    let cluster = tls_cluster().await;
    let url = cluster.create_database().await;
    let port = cluster.port().unwrap();
    let database = url
        .split_once('?')
        .and_then(|(base, _)| base.rsplit_once('/'))
        .map(|(_, db)| db.to_owned())
        .unwrap();
    // No sslmode at all is prefer, libpq's default: the server offers TLS, so it is used.
    for query in ["", "?sslmode=prefer", "?sslmode=require"] {
        let url = format!("postgres://postgres@127.0.0.1:{port}/{database}{query}");
        let client = connect(&url).await;
        let ssl: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(ssl, "{url}");
    }
}

#[tokio::test]
async fn pgsslmode_and_pgsslrootcert_apply_where_the_url_says_nothing() {
    let cluster = tls_cluster().await;
    let port = cluster.port().unwrap();
    let ca = cluster.directory().unwrap().join("ca.pem");
    let ca = ca.to_str().unwrap();
    // By address, with no TLS parameters in the URL: prefer would connect. The environment
    // asks for verify-full, which refuses the name.
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let printed =
        startup_fails_with(&url, &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca)]).await;
    assert!(
        printed.contains("certificate does not match the host name"),
        "{printed}"
    );
    assert!(printed.contains("sslmode=verify-full"), "{printed}");
    // The URL's own sslmode wins over the environment's.
    let printed = startup_fails_with(
        &format!("{url}?sslmode=disable"),
        &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca)],
    )
    .await;
    assert!(printed.contains("sslmode=disable"), "{printed}");
}
