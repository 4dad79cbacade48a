//! `GET /notes/events` under hostile or careless clients: paged replay, the catch-up limit,
//! clients that never read, the stream cap, retention; and the `LISTEN` connection's ping.

use crate::common;

use std::time::{Duration, Instant};

use common::accounts::Account;
use common::http::{HARNESS_USER, default_token, send};
use common::service::{TestService, connect, start_live};
use common::sse::{self, Event};
use pgbridge::apps::notes::events::{Broadcast, replay};
use pgbridge::config::Config;
use pgbridge::db::listener::{ListenConfig, Listener};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

async fn service(configure: impl FnOnce(&mut Config)) -> TestService {
    start_live(configure, WAIT).await
}

async fn create(service: &TestService, title: &str) -> i64 {
    let req = http::Request::post("/notes")
        .header("Content-Type", "application/json")
        .body(json!({ "title": title }).to_string())
        .unwrap();
    let reply = send(service.addr, req).await.unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["id"].as_i64().unwrap()
}

/// The harness account's token (signing it up if it is not yet).
async fn harness_token(service: &TestService) -> String {
    default_token(service.addr, "/notes")
        .await
        .expect("the harness authenticates /notes by default")
}

/// Stores `n` of the harness account's events straight into the table (no notification):
/// a long history, fast.
async fn store_history(service: &TestService, n: i64) {
    harness_token(service).await;
    connect(&service.database_url)
        .await
        .execute(
            "INSERT INTO note_events (note_id, kind, version, owner_id) \
             SELECT g, 'created', 1, (SELECT id FROM accounts WHERE username = $2) \
             FROM generate_series(1, $1::bigint) g",
            &[&n, &HARNESS_USER],
        )
        .await
        .expect("store history");
}

async fn stored_ids(service: &TestService) -> Vec<i64> {
    connect(&service.database_url)
        .await
        .query("SELECT id FROM note_events ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn ids(events: &[Event]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `WAIT`.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pooled connections checked out now.
fn in_use(service: &TestService) -> usize {
    let pool = service.state.db.status();
    pool.size - pool.available
}

#[tokio::test]
async fn paged_replay_delivers_every_event_once_in_order_across_pages() {
    let service = service(|c| c.events_replay_page = 7).await;
    let mut notes = Vec::new();
    for i in 0..10 {
        notes.push(create(&service, &format!("n{i}")).await);
    }
    for &id in &notes {
        for v in 0..3 {
            let req = http::Request::patch(format!("/notes/{id}"))
                .header("Content-Type", "application/json")
                .header("If-Match", "*")
                .body(json!({ "title": format!("v{v}") }).to_string())
                .unwrap();
            assert_eq!(send(service.addr, req).await.unwrap().status, 200);
        }
    }
    let stored = stored_ids(&service).await;
    assert_eq!(stored.len(), 40);

    // From the start: 40 events over six pages (the last one short), then live.
    let mut all = sse::open(service.addr, "/notes/events", Some(0)).await;
    assert_eq!(ids(&all.take(40, WAIT).await), stored);
    // From the middle of a page, and from exactly a page boundary.
    for from in [stored[9], stored[13]] {
        let mut part = sse::open(service.addr, "/notes/events", Some(from)).await;
        let expected: Vec<i64> = stored.iter().copied().filter(|id| *id > from).collect();
        assert_eq!(ids(&part.take(expected.len(), WAIT).await), expected);
    }
    eventually("replays to finish", || {
        service.state.apps.notes.streams.catch_ups() == 0
    })
    .await;

    let live = create(&service, "live").await;
    let event = all.next_event(WAIT).await.expect("the live event");
    assert_eq!(event.data["note_id"], live);
    assert_eq!(event.id, *stored_ids(&service).await.last().unwrap());
    assert!(
        all.next_event(Duration::from_millis(300)).await.is_none(),
        "no duplicate after the replay"
    );
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_loses_nothing_on_reconnect() {
    let service = service(|c| {
        c.events_stall_timeout_ms = 500;
        c.events_replay_page = 500;
    })
    .await;
    // Far more than the kernel's socket buffers hold (~120 bytes a frame).
    store_history(&service, 100_000).await;
    let stored = stored_ids(&service).await;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let token = harness_token(&service).await;
    let mut tcp = socket.connect(service.addr).await.unwrap();
    tcp.write_all(
        format!(
            "GET /notes/events HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\
             Authorization: Bearer {token}\r\nLast-Event-ID: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();

    // The client reads nothing: its stream stalls, and is dropped.
    let streams = service.state.apps.notes.streams.clone();
    eventually("the stalled stream to be dropped", || {
        streams.dropped() == 1
    })
    .await;
    assert_eq!(streams.open_streams(), 0, "its place under the cap is free");
    assert_eq!(streams.catch_ups(), 0, "it no longer counts as catching up");
    assert_eq!(in_use(&service), 0, "it holds no pooled connection");
    assert_eq!(service.state.apps.notes.listener.subscribers(), 1);

    // Now it reads what was sent before the drop: a prefix of the history, then the end.
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !seen.ends_with(b"\r\n0\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("the stream ends")
            .unwrap();
        assert!(n > 0, "the server closed without ending the stream");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    let got: Vec<i64> = text
        .lines()
        .filter_map(|line| line.strip_prefix("id: ")?.parse().ok())
        .collect();
    assert!(!got.is_empty() && got.len() < stored.len(), "{}", got.len());
    assert!(got == stored[..got.len()], "a prefix, in order");

    // It reconnects with the last id it saw, as often as it takes (a slow reader may be
    // dropped again), and gets exactly the rest.
    let mut all = got;
    let mut reconnects = 0;
    while all.len() < stored.len() {
        reconnects += 1;
        assert!(reconnects <= 50, "{} of {} events", all.len(), stored.len());
        let last = *all.last().unwrap();
        let mut again = sse::open(service.addr, "/notes/events", Some(last)).await;
        while let Some(event) = again.next_event(Duration::from_secs(2)).await {
            all.push(event.id);
            if all.len() == stored.len() {
                break;
            }
        }
    }
    assert!(all == stored, "every event exactly once, in order");
}

#[tokio::test]
async fn past_the_stream_cap_a_new_stream_is_503_with_retry_after() {
    let service = service(|c| {
        c.events_max_streams = 2;
        c.sse_heartbeat_ms = 100;
    })
    .await;
    let first = sse::open(service.addr, "/notes/events", None).await;
    let _second = sse::open(service.addr, "/notes/events", Some(0)).await;
    assert_eq!((first.status, _second.status), (200, 200));

    let reply = send(
        service.addr,
        http::Request::get("/notes/events")
            .body(String::new())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(reply.json()["error"]["code"], "overloaded");
    assert!(reply.json()["error"]["message"].is_string());
    assert_eq!(service.state.apps.notes.listener.subscribers(), 2);

    // A stream that closes frees its place.
    drop(first);
    let streams = service.state.apps.notes.streams.clone();
    eventually("the closed stream to be freed", || {
        streams.open_streams() == 1
    })
    .await;
    let third = sse::open(service.addr, "/notes/events", None).await;
    assert_eq!(third.status, 200);

    let metrics = common::http::get(service.addr, "/metrics").await.text();
    assert!(
        metrics.contains("pgbridge_events_open_streams 2"),
        "{metrics}"
    );
    assert!(metrics.contains("pgbridge_events_catch_ups 0"), "{metrics}");
    assert!(
        metrics.contains("pgbridge_events_dropped_slow_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_last_event_id_older_than_the_kept_history_gets_a_reset() {
    let service = service(|_| {}).await;
    for i in 0..5 {
        create(&service, &format!("n{i}")).await;
    }
    let stored = stored_ids(&service).await;
    let admin = connect(&service.database_url).await;
    admin
        .execute(
            "UPDATE note_events SET at = now() - interval '1 hour' WHERE id <= $1",
            &[&stored[2]],
        )
        .await
        .unwrap();
    let pruned = replay::prune(&service.state.db, Duration::from_secs(60), 2)
        .await
        .unwrap();
    assert_eq!(pruned, 3, "the three old events, in batches of two");
    let horizon: i64 = admin
        .query_one("SELECT pruned_through FROM note_events_horizon", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(horizon, stored[2]);

    // Older than what is kept: an explicit reset, then the stream goes on live.
    for from in [0, stored[0]] {
        let newest = *stored_ids(&service).await.last().unwrap();
        let mut stream = sse::open(service.addr, "/notes/events", Some(from)).await;
        let reset = stream.next_event(WAIT).await.expect("a reset event");
        assert_eq!(reset.data["reset"], true, "{:?}", reset.data);
        assert_eq!(reset.id, newest, "it resumes at the newest event");
        let live = create(&service, "after the reset").await;
        let event = stream.next_event(WAIT).await.expect("the live event");
        assert_eq!(event.data["note_id"], live);
    }

    // At the horizon: nothing was lost, so a plain replay.
    let stored = stored_ids(&service).await;
    let mut stream = sse::open(service.addr, "/notes/events", Some(horizon)).await;
    let events = stream.take(stored.len(), WAIT).await;
    assert_eq!(ids(&events), stored);
    assert!(events.iter().all(|e| e.data.get("reset").is_none()));
}

/// The horizon is every owner's, a reader's position its own: a reset resumes at the
/// horizon when another owner's pruned events lie beyond the reader's newest, so resuming
/// from the reset's id is a plain replay, not another reset.
#[tokio::test]
async fn a_reset_resumes_past_other_owners_pruned_events() {
    let service = service(|_| {}).await;
    let alice = Account::new(service.addr, "alice").await;
    let bob = Account::new(service.addr, "bob").await;
    alice.create("alice's").await;
    let alice_newest = *stored_ids(&service).await.last().unwrap();
    bob.create("bob's 1").await;
    bob.create("bob's 2").await;
    let admin = connect(&service.database_url).await;
    admin
        .execute(
            "UPDATE note_events SET at = now() - interval '1 hour' WHERE id > $1",
            &[&alice_newest],
        )
        .await
        .unwrap();
    assert_eq!(
        replay::prune(&service.state.db, Duration::from_secs(60), 10)
            .await
            .unwrap(),
        2
    );
    let horizon: i64 = admin
        .query_one("SELECT pruned_through FROM note_events_horizon", &[])
        .await
        .unwrap()
        .get(0);
    assert!(horizon > alice_newest);
    // A new stream starts at the horizon too, so its first catch-up is no reset either.
    let alice_id = account_id(&admin, "alice").await;
    assert_eq!(
        replay::latest(&service.state.db, alice_id).await.unwrap(),
        horizon
    );

    let bearer = format!("Bearer {}", alice.token);
    let headers = [("Authorization", bearer.as_str())];
    let mut stream =
        sse::open_with(service.addr, "/notes/events", Some(alice_newest), &headers).await;
    let reset = stream.next_event(WAIT).await.expect("a reset event");
    assert_eq!(reset.data["reset"], true, "{:?}", reset.data);
    assert_eq!(reset.id, horizon, "it resumes at the horizon, not below it");

    let mut resumed = sse::open_with(service.addr, "/notes/events", Some(reset.id), &headers).await;
    let live = alice.create("after the reset").await;
    let event = resumed.next_event(WAIT).await.expect("the live event");
    assert_eq!(
        event.data["note_id"], live,
        "no second reset: {:?}",
        event.data
    );
}

async fn account_id(admin: &tokio_postgres::Client, username: &str) -> i64 {
    admin
        .query_one("SELECT id FROM accounts WHERE username = $1", &[&username])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_service_prunes_old_events_on_its_own() {
    let service = service(|c| {
        c.events_retention_secs = 1;
        c.events_prune_interval_secs = 1;
    })
    .await;
    create(&service, "soon forgotten").await;
    let admin = connect(&service.database_url).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let row = admin
            .query_one(
                "SELECT (SELECT count(*) FROM note_events), \
                        (SELECT pruned_through FROM note_events_horizon)",
                &[],
            )
            .await
            .unwrap();
        let (left, horizon): (i64, i64) = (row.get(0), row.get(1));
        if left == 0 {
            assert!(horizon > 0);
            break;
        }
        assert!(Instant::now() < deadline, "{left} events still kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_catch_up_limit_holds_and_the_pool_keeps_serving_notes() {
    let service = service(|c| {
        c.db_pool_size = 4;
        c.events_max_catchups = 1;
        c.events_replay_page = 100;
        // No session re-check (a pooled connection each) during the test.
        c.sse_heartbeat_ms = 3_600_000;
    })
    .await;
    create(&service, "listed").await;
    // 20 pages per replay: enough for the 20 replays to overlap.
    store_history(&service, 2_000).await;
    let total = stored_ids(&service).await.len();

    let (opened, mut opens) = tokio::sync::mpsc::unbounded_channel();
    let replays: Vec<_> = (0..20)
        .map(|_| {
            let addr = service.addr;
            let opened = opened.clone();
            tokio::spawn(async move {
                let mut stream = sse::open(addr, "/notes/events", Some(0)).await;
                assert_eq!(stream.status, 200);
                let _ = opened.send(());
                stream.take(total, Duration::from_secs(60)).await.len()
            })
        })
        .collect();
    // Opening a stream looks its session up on a pooled connection of its own, outside the
    // catch-up limit: count connections once every stream is open.
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(60), opens.recv())
            .await
            .expect("every stream opens")
            .expect("a replay task failed to open");
    }

    let mut most_catching_up = 0;
    let mut most_in_use = 0;
    let mut lists = 0;
    while !replays.iter().all(|r| r.is_finished()) {
        most_catching_up = most_catching_up.max(service.state.apps.notes.streams.catch_ups());
        most_in_use = most_in_use.max(in_use(&service));
        let reply = common::http::get(service.addr, "/notes").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        lists += 1;
        most_in_use = most_in_use.max(in_use(&service));
    }
    for replay in replays {
        assert_eq!(replay.await.unwrap(), total);
    }
    assert!(
        most_catching_up > 1,
        "replays ran side by side ({most_catching_up})"
    );
    assert!(lists > 0);
    // One catch-up query at a time, plus the /notes request itself.
    assert!(
        most_in_use <= 2,
        "{most_in_use} pooled connections in use at once"
    );
}

#[tokio::test]
async fn an_idle_listener_keeps_one_connection_past_its_pings() {
    // A database of its own, so that this listener is its only one.
    let url = common::pg::Cluster::shared().await.create_database().await;
    let listener = Listener::spawn(
        ListenConfig {
            url: url.clone(),
            channel: "idle_test",
            capacity: 16,
            connect_timeout: Duration::from_millis(500),
            max_backoff: Duration::from_millis(200),
            ping_interval: Duration::from_millis(300),
        },
        Broadcast::parse,
    );
    eventually("the listener to connect", || listener.is_connected()).await;
    let admin = connect(&url).await;
    let mut seen = Vec::new();
    // Idle for well past two ping intervals (and past a ping's timeout), looking often.
    for _ in 0..8 {
        let pids: Vec<i32> = admin
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE datname = current_database() \
                   AND application_name = 'pgbridge-listener'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(pids.len(), 1, "one listener backend: {pids:?}");
        seen.push(pids[0]);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "the same backend throughout: {seen:?}");
    assert!(listener.is_connected());
    listener.stop();
}
