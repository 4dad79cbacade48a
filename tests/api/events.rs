//! `GET /notes/events`: LISTEN/NOTIFY fanned out as server-sent events, with nothing lost.

use crate::common;

use std::time::{Duration, Instant};

use common::http::send;
use common::service::{TestService, connect, start_live};
use common::sse::{self, Event};
use pgbridge::config::Config;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

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

async fn rename(service: &TestService, id: i64, title: &str) {
    let req = http::Request::patch(format!("/notes/{id}"))
        .header("Content-Type", "application/json")
        .header("If-Match", "*")
        .body(json!({ "title": title }).to_string())
        .unwrap();
    assert_eq!(send(service.addr, req).await.unwrap().status, 200);
}

/// Every stored event id, in order.
async fn stored_ids(service: &TestService) -> Vec<i64> {
    let client = connect(&service.database_url).await;
    client
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

#[tokio::test]
async fn every_subscriber_gets_every_change_in_order() {
    // Fifty streams of the harness account: past the per-account default (tests/api/bulkheads.rs).
    let service = service(|c| c.events_max_streams_per_account = 64).await;
    let mut streams = Vec::new();
    for _ in 0..50 {
        let stream = sse::open(service.addr, "/notes/events", None).await;
        assert_eq!(stream.status, 200);
        assert_eq!(stream.content_type.as_deref(), Some("text/event-stream"));
        streams.push(stream);
    }
    assert_eq!(service.state.apps.notes.listener.subscribers(), 50);
    let id = create(&service, "one").await;
    rename(&service, id, "two").await;
    let req = http::Request::delete(format!("/notes/{id}"))
        .body(String::new())
        .unwrap();
    assert_eq!(send(service.addr, req).await.unwrap().status, 204);

    let expected = stored_ids(&service).await;
    assert_eq!(expected.len(), 3);
    for stream in &mut streams {
        let events = stream.take(3, WAIT).await;
        assert_eq!(ids(&events), expected);
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e.data["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["created", "updated", "deleted"]);
        assert!(events.iter().all(|e| e.data["note_id"] == id));
        assert_eq!(events[1].data["version"], 2);
    }
    // Still one LISTEN connection for the whole process.
    let client = connect(&service.database_url).await;
    let listeners: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbridge-listener' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(listeners, 1);
}

#[tokio::test]
async fn last_event_id_replays_then_goes_live_with_no_gap_or_duplicate() {
    let service = service(|_| {}).await;
    let id = create(&service, "v1").await;
    for n in 2..=5 {
        rename(&service, id, &format!("v{n}")).await;
    }
    let stored = stored_ids(&service).await;
    assert_eq!(stored.len(), 5);

    // Resume after the second event while writers keep changing the note.
    let mut stream = sse::open(service.addr, "/notes/events", Some(stored[1])).await;
    let writer = {
        let addr = service.addr;
        tokio::spawn(async move {
            for n in 6..=40 {
                let req = http::Request::patch(format!("/notes/{id}"))
                    .header("Content-Type", "application/json")
                    .header("If-Match", "*")
                    .body(json!({ "title": format!("v{n}") }).to_string())
                    .unwrap();
                assert_eq!(send(addr, req).await.unwrap().status, 200);
            }
        })
    };
    writer.await.unwrap();
    let all = stored_ids(&service).await;
    let expected: Vec<i64> = all.iter().copied().filter(|e| *e > stored[1]).collect();
    let events = stream.take(expected.len(), WAIT).await;
    assert_eq!(
        ids(&events),
        expected,
        "exactly the events after Last-Event-ID, in order"
    );
    assert!(
        stream
            .next_event(Duration::from_millis(300))
            .await
            .is_none(),
        "no duplicates"
    );
}

#[tokio::test]
async fn a_dropped_listen_connection_is_caught_up_from_the_table() {
    let service = service(|_| {}).await;
    let mut stream = sse::open(service.addr, "/notes/events", None).await;
    let id = create(&service, "before").await;
    assert_eq!(stream.take(1, WAIT).await[0].data["kind"], "created");

    // Kill the listener's backend, and change the note while it reconnects.
    let admin = connect(&service.database_url).await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'pgbridge-listener' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    for n in 0..10 {
        rename(&service, id, &format!("during outage {n}")).await;
    }
    let expected: Vec<i64> = stored_ids(&service).await[1..].to_vec();
    let events = stream.take(expected.len(), WAIT).await;
    assert_eq!(ids(&events), expected);
    // And live again afterwards.
    rename(&service, id, "after").await;
    let last = *stored_ids(&service).await.last().unwrap();
    assert_eq!(stream.take(1, WAIT).await[0].id, last);
}

#[tokio::test]
async fn a_subscriber_that_lags_is_caught_up_not_skipped() {
    // A buffer of 2 notices, then 30 changes in one statement: every stream lags.
    let service = service(|c| c.events_buffer = 2).await;
    let mut stream = sse::open(service.addr, "/notes/events", None).await;
    let client = connect(&service.database_url).await;
    client
        .batch_execute(
            "INSERT INTO notes (title, owner_id) \
             SELECT 'bulk ' || n, (SELECT id FROM accounts WHERE username = 'harness') \
             FROM generate_series(1, 30) AS n",
        )
        .await
        .unwrap();
    let expected = stored_ids(&service).await;
    assert_eq!(expected.len(), 30);
    let events = stream.take(30, WAIT).await;
    assert_eq!(ids(&events), expected);
}

#[tokio::test]
async fn one_note_only_with_the_filter() {
    let service = service(|_| {}).await;
    let watched = create(&service, "watched").await;
    let other = create(&service, "other").await;
    let mut stream = sse::open(service.addr, &format!("/notes/events?note={watched}"), None).await;
    rename(&service, other, "noise").await;
    rename(&service, watched, "signal").await;
    let event = stream.next_event(WAIT).await.unwrap();
    assert_eq!(
        (event.data["note_id"].as_i64(), event.data["kind"].as_str()),
        (Some(watched), Some("updated"))
    );
    assert!(
        stream
            .next_event(Duration::from_millis(300))
            .await
            .is_none()
    );

    // Replay honours the filter too.
    let mut replay = sse::open(
        service.addr,
        &format!("/notes/events?note={other}"),
        Some(0),
    )
    .await;
    let events = replay.take(2, WAIT).await;
    assert!(events.iter().all(|e| e.data["note_id"] == other));
}

#[tokio::test]
async fn heartbeats_flow_and_a_client_that_leaves_is_freed() {
    let service = service(|c| c.sse_heartbeat_ms = 100).await;
    let mut kept = sse::open(service.addr, "/notes/events", None).await;
    let left: Vec<_> = futures_util::future::join_all(
        (0..3).map(|_| sse::open(service.addr, "/notes/events", None)),
    )
    .await;
    assert_eq!(service.state.apps.notes.listener.subscribers(), 4);

    assert!(kept.next_event(Duration::from_millis(450)).await.is_none());
    assert!(
        kept.comments >= 3,
        "heartbeats arrive: {} comments",
        kept.comments
    );

    drop(left);
    let deadline = Instant::now() + WAIT;
    while service.state.apps.notes.listener.subscribers() != 1 {
        assert!(
            Instant::now() < deadline,
            "{} subscriptions still open",
            service.state.apps.notes.listener.subscribers()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_parameters_are_400_and_shutdown_ends_streams() {
    let service = service(|_| {}).await;
    for (path, last) in [
        ("/notes/events?note=abc", None),
        ("/notes/events", Some(-1)),
    ] {
        let stream = sse::open(service.addr, path, last).await;
        assert_eq!(stream.status, 400, "{path}");
    }
    let mut stream = sse::open(service.addr, "/notes/events", None).await;
    service.state.shutdown();
    assert!(
        stream.ends_within(WAIT).await,
        "a graceful stop ends event streams"
    );
}
