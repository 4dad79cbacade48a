//! `RUNTIME=percore`: the binary with one current-thread runtime per core, on a socket
//! passed in `LISTEN_FDS`: health, notes CRUD, the event feed (one `LISTEN` connection for
//! the process, events reaching streams on every core), `/metrics` summed over the cores
//! (and open connections shown per core),
//! and a drain on SIGTERM that lets a request in flight finish.

use crate::common;

use std::time::{Duration, Instant};

use common::accounts::Account;
use common::http::get;
use common::pg::Cluster;
use common::process::{KillOnDrop, Listen, pgbridge_command};
use common::sse;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn serves_notes_events_metrics_and_drains_with_one_runtime_per_core() {
    let url = Cluster::shared().await.create_database().await;
    let listen = Listen::socket();
    let addr = listen.addr();
    let log = std::env::temp_dir().join(format!("pgbridge-percore-{}.log", std::process::id()));
    let mut command = pgbridge_command(&listen, &log);
    command
        .env("DATABASE_URL", &url)
        .env("RUNTIME", "percore")
        .env("DB_POOL_SIZE", "4");
    let mut child = KillOnDrop(command.spawn().expect("start pgbridge"));
    child.wait_ready(addr, Duration::from_secs(30), &log).await;
    assert_eq!(get(addr, "/healthz").await.status, 200);

    // Streams on several connections: with one runtime per core they land on different
    // cores, and every one gets every event from the one LISTEN connection.
    let account = Account::new(addr, "percore").await;
    let bearer = format!("Bearer {}", account.token);
    let mut streams = Vec::new();
    for _ in 0..8 {
        let stream = sse::open_with(
            addr,
            "/notes/events",
            None,
            &[("Authorization", bearer.as_str())],
        )
        .await;
        assert_eq!(stream.status, 200);
        streams.push(stream);
    }

    // Notes CRUD, each request on a fresh connection (so on any core).
    let id = account.create("first").await;
    let got = account.get(&format!("/notes/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["title"], "first");
    let etag = got
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("an ETag")
        .to_owned();
    let renamed = account
        .send(
            "PATCH",
            &format!("/notes/{id}"),
            Some(json!({ "title": "second" })),
            &[("If-Match", etag.as_str())],
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text());
    let listed = account.get("/notes").await;
    assert_eq!(listed.status, 200);
    assert!(listed.text().contains("second"), "{}", listed.text());
    let deleted = account
        .send("DELETE", &format!("/notes/{id}"), None, &[])
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(account.get(&format!("/notes/{id}")).await.status, 404);

    for stream in &mut streams {
        let kinds: Vec<String> = stream
            .take(3, WAIT)
            .await
            .iter()
            .map(|e| e.data["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(kinds, ["created", "updated", "deleted"]);
    }
    let client = common::service::connect(&url).await;
    let listeners: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbridge-listener' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(listeners, 1, "one LISTEN connection for the process");

    // One registry: the pool gauge adds the process's pool (4) to every core's share.
    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let expected = 4 + cores * (4 / cores).max(1);
    assert!(
        text.lines()
            .any(|l| l == format!("pgbridge_db_pool_max_connections {expected}")),
        "pool gauge not summed over {cores} cores:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("pgbridge_http_connections_open ")),
        "{text}"
    );
    // Each core's open connections: the 8 streams (and this request) are on some core.
    let per_core: Vec<u64> = (0..cores)
        .map(|core| {
            let prefix = format!("pgbridge_http_connections_open_per_core{{core=\"{core}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no gauge for core {core}:\n{text}"))
        })
        .collect();
    assert!(
        per_core.iter().sum::<u64>() >= 8,
        "the 8 open streams are not counted on the cores: {per_core:?}\n{text}"
    );
    drop(streams);

    // A request in flight when SIGTERM arrives still finishes; then the process exits 0.
    let in_flight = tokio::spawn(async move { get(addr, "/seed/poll-sleep?seconds=2").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("slept 2/2"), "{}", reply.text());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "pgbridge did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("one runtime per core"), "{logged}");
    assert!(!logged.contains("panicked"), "{logged}");
    let _ = std::fs::remove_file(log);
}
