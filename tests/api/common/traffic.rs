//! Traffic for the tests that disrupt a running service (a failover, Postgres restarted, a
//! soak run): writers that retry each write with the same `Idempotency-Key` until a 2xx, a
//! reader, a live `/notes/events` stream kept open as a browser keeps one, and the check
//! that no acknowledged write was lost or applied twice and every event arrived once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::send;

/// A `GET` of `path` with no body.
pub fn get_request(path: &str) -> http::Request<String> {
    http::Request::get(path)
        .body(String::new())
        .expect("request")
}

/// `POST /notes` of a note titled `key`, with `key` as its `Idempotency-Key`: sent again
/// after a failure, it is applied once.
pub fn create_note(key: &str) -> http::Request<String> {
    http::Request::post("/notes")
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key)
        .body(format!(r#"{{"title":"{key}"}}"#))
        .expect("request")
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Keys (= titles) answered 2xx.
    pub acknowledged: Vec<String>,
    /// Write responses by status (every attempt, retries included).
    pub writes: BTreeMap<u16, usize>,
    /// Write attempts that got no response at all.
    pub write_errors: usize,
    /// Reads (`GET /notes`) by status.
    pub reads: BTreeMap<u16, usize>,
    /// When each acknowledgement came: the longest gap between two is the time writes
    /// were unavailable.
    pub successes: Vec<Instant>,
    /// Each read: when it began, how long it took, its status and detail.
    pub read_log: Vec<(Instant, Duration, u16, String)>,
}

impl Seen {
    /// Adds what `other` saw (another load run over the same service) to this.
    pub fn absorb(&mut self, other: Seen) {
        self.acknowledged.extend(other.acknowledged);
        for (status, n) in other.writes {
            *self.writes.entry(status).or_default() += n;
        }
        self.write_errors += other.write_errors;
        for (status, n) in other.reads {
            *self.reads.entry(status).or_default() += n;
        }
        self.successes.extend(other.successes);
        self.read_log.extend(other.read_log);
    }
}

/// Writers that each create notes one after another, retrying each with the same
/// `Idempotency-Key` (and title) until a 2xx, and one reader.
pub struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, phase: &'static str, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (stop, seen) = (stop.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{phase}-w{w}-{n}");
                    n += 1;
                    // Until acknowledged, even past `stop`: a write answered 503 is retried.
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        let request = create_note(&key);
                        let reply =
                            tokio::time::timeout(Duration::from_secs(10), send(addr, request))
                                .await;
                        let status = match reply {
                            Ok(Ok(reply)) => Some(reply.status),
                            _ => None,
                        };
                        let acknowledged = {
                            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                            match status {
                                Some(status) => *seen.writes.entry(status).or_default() += 1,
                                None => seen.write_errors += 1,
                            }
                            if matches!(status, Some(200..=299)) {
                                seen.successes.push(Instant::now());
                                seen.acknowledged.push(key.clone());
                                true
                            } else {
                                false
                            }
                        };
                        if acknowledged {
                            break;
                        }
                        if Instant::now() > deadline {
                            break; // not acknowledged: never counted as written
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        let (stop_reads, seen_reads) = (stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            while !stop_reads.load(Ordering::Relaxed) {
                let began = Instant::now();
                let (status, detail) = match tokio::time::timeout(
                    Duration::from_secs(10),
                    send(addr, get_request("/notes?limit=5")),
                )
                .await
                {
                    Ok(Ok(reply)) => (
                        reply.status,
                        format!(
                            "{} {}",
                            reply.header("pgbridge-served-by").unwrap_or("-"),
                            if reply.status == 200 {
                                String::new()
                            } else {
                                reply.text()
                            }
                        ),
                    ),
                    Ok(Err(err)) => (0, err),
                    Err(_) => (0, "timed out".into()),
                };
                {
                    let mut seen = seen_reads.lock().unwrap_or_else(|p| p.into_inner());
                    *seen.reads.entry(status).or_default() += 1;
                    seen.read_log.push((began, began.elapsed(), status, detail));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
        Load { stop, seen, tasks }
    }

    /// How many writes were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acknowledged
            .len()
    }

    /// Waits until `more` writes beyond now are acknowledged (bounded); fails with `logs()`.
    pub async fn wait_for_more(&self, more: usize, within: Duration, logs: impl Fn() -> String) {
        let target = self.acknowledged() + more;
        let deadline = Instant::now() + within;
        while self.acknowledged() < target {
            assert!(
                Instant::now() < deadline,
                "writes did not resume within {within:?}: {:?}\n{}",
                self.seen.lock().unwrap_or_else(|p| p.into_inner()),
                logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        Arc::try_unwrap(self.seen)
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .unwrap_or_default()
    }
}

/// A live `/notes/events` stream over a phase, as a browser's `EventSource` keeps one:
/// opened again with `Last-Event-ID` whenever the server ends it.
pub struct Feed {
    until: tokio::sync::watch::Sender<Option<(i64, Instant)>>,
    task: tokio::task::JoinHandle<Delivered>,
}

/// What a [`Feed`] received.
#[derive(Debug, Default)]
pub struct Delivered {
    /// `(event id, note id)` in the order received.
    pub events: Vec<(i64, i64)>,
    /// Times the stream was opened again after it ended.
    pub reconnects: usize,
}

impl Feed {
    /// Opens the stream on the service at `addr` after event `newest` (the newest in
    /// `note_events` now: nothing written from now on can be missed, whenever the server
    /// starts listening).
    pub async fn open(addr: SocketAddr, newest: i64) -> Feed {
        let first = loop {
            if let Some(stream) = Feed::try_open(addr, Some(newest)).await {
                break stream;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (until, rx) = tokio::sync::watch::channel(None);
        let task = tokio::spawn(async move {
            let mut delivered = Delivered::default();
            let mut stream = Some(first);
            let mut last = newest;
            loop {
                let until = *rx.borrow();
                if let Some((target, deadline)) = until
                    && (last >= target || Instant::now() >= deadline)
                {
                    return delivered;
                }
                let Some(open) = stream.as_mut() else {
                    match Feed::try_open(addr, Some(last)).await {
                        Some(again) => {
                            stream = Some(again);
                            delivered.reconnects += 1;
                        }
                        None => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                    continue;
                };
                match open.next_event(Duration::from_millis(500)).await {
                    Some(event) => {
                        last = last.max(event.id);
                        let note = event.data["note_id"].as_i64().unwrap_or_default();
                        delivered.events.push((event.id, note));
                    }
                    None if open.ended => stream = None,
                    None => {}
                }
            }
        });
        Feed { until, task }
    }

    /// The stream, if the service answered 200 within 5 s.
    pub async fn try_open(addr: SocketAddr, last: Option<i64>) -> Option<super::sse::Stream> {
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            super::sse::open(addr, "/notes/events", last),
        )
        .await
        .ok()?;
        (stream.status == 200).then_some(stream)
    }

    /// Waits (at most `within`) until the stream has received event `target`; what it got.
    pub async fn finish(self, target: i64, within: Duration) -> Delivered {
        let _ = self.until.send(Some((target, Instant::now() + within)));
        self.task.await.unwrap_or_default()
    }
}

/// The newest event id in `note_events` (0: none), read by `client` (a superuser's: the
/// events are owner-scoped).
pub async fn newest_event(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT coalesce(max(id), 0) FROM note_events", &[])
        .await
        .expect("newest event")
        .get(0)
}

/// Every acknowledged write of `phase` is in the database `client` reads (a superuser's)
/// exactly once, and no note was written twice; no response was a 500; every event of the
/// phase's notes reached the live `feed` exactly once, and some were written after
/// `disrupted_at` (the failover, the restart). Prints the figures; fails with `logs()`.
pub async fn check(
    client: &tokio_postgres::Client,
    phase: &str,
    seen: &Seen,
    feed: Feed,
    disrupted_at: Instant,
    logs: impl Fn() -> String,
) {
    // The events of the phase's notes (one `created` each), and those of notes first
    // acknowledged after the disruption began.
    let written: Vec<(i64, String)> = client
        .query(
            "SELECT e.id, n.title FROM note_events e JOIN notes n ON n.id = e.note_id \
             WHERE n.title LIKE $1 ORDER BY e.id",
            &[&format!("{phase}-%")],
        )
        .await
        .expect("events written")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let acknowledged_after: std::collections::HashSet<&String> = seen
        .acknowledged
        .iter()
        .zip(&seen.successes)
        .filter(|(_, at)| **at >= disrupted_at)
        .map(|(key, _)| key)
        .collect();
    let target = written.last().map_or(0, |(id, _)| *id);
    let delivered = feed.finish(target, Duration::from_secs(30)).await;
    let mut received: BTreeMap<i64, usize> = BTreeMap::new();
    for (id, _) in &delivered.events {
        *received.entry(*id).or_default() += 1;
    }
    let written_after = written
        .iter()
        .filter(|(_, title)| acknowledged_after.contains(title))
        .count();
    let missing: Vec<i64> = written
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !received.contains_key(id))
        .collect();
    let repeated: Vec<i64> = received
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    let delivered_of_written = written.len() - missing.len();
    let rows = client
        .query(
            "SELECT title, count(*) FROM notes WHERE title LIKE $1 GROUP BY title",
            &[&format!("{phase}-%")],
        )
        .await
        .expect("count notes");
    let stored: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let lost: Vec<&String> = seen
        .acknowledged
        .iter()
        .filter(|key| !stored.contains_key(*key))
        .collect();
    let duplicated: Vec<(&String, &i64)> = stored.iter().filter(|(_, n)| **n > 1).collect();
    let unavailable = seen
        .successes
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).as_secs_f64())
        .fold(0.0, f64::max);
    let unavailable = format!("{unavailable:.1}");
    eprintln!(
        "{phase}: acknowledged {}, lost {}, duplicated {}, writes unavailable {unavailable} s, \
         write statuses {:?}, no answer {}, read statuses {:?}, events written {} \
         (after the disruption {written_after}), delivered {delivered_of_written}, \
         delivered twice {}, stream reopened {}",
        seen.acknowledged.len(),
        lost.len(),
        duplicated.len(),
        seen.writes,
        seen.write_errors,
        seen.reads,
        written.len(),
        repeated.len(),
        delivered.reconnects,
    );
    assert!(
        missing.is_empty(),
        "{phase}: events written but not delivered to the live stream: {missing:?}\n{}",
        logs()
    );
    assert!(
        repeated.is_empty(),
        "{phase}: events delivered twice: {repeated:?}"
    );
    assert!(
        written_after > 0,
        "{phase}: no event written after the disruption"
    );
    assert!(
        lost.is_empty(),
        "{phase}: acknowledged writes lost: {lost:?}"
    );
    assert!(
        duplicated.is_empty(),
        "{phase}: keys applied twice: {duplicated:?}"
    );
    assert!(!seen.writes.contains_key(&500), "{phase}: a write got 500");
    assert!(!seen.reads.contains_key(&500), "{phase}: a read got 500");
    assert!(!seen.acknowledged.is_empty());
}
