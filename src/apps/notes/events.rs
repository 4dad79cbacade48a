//! `GET /notes/events` — note changes as server-sent events, live, with nothing lost.
//!
//! Streaming is what the 2008 asynchronous WSGI was for ("comet"): a request that waits a
//! long time on a socket without a thread. Here the socket is Postgres's. A trigger records
//! every change in `note_events` and `pg_notify`s it in the same transaction; one
//! [`Listener`] connection per process hears it and fans it out to every subscriber.
//!
//! Nothing is lost: a client that reconnects with `Last-Event-ID` (browsers' `EventSource`
//! does so by itself) first gets every later event from `note_events`, then live ones, with
//! no gap and no duplicate — event ids are in commit order (see the migration), so "after
//! id N" is exact. A subscriber that falls behind the broadcast buffer, or that was
//! listening while the `LISTEN` connection was down, is caught up from the table the same
//! way. `?note=ID` narrows the stream to one note. A comment every heartbeat interval
//! keeps proxies from closing an idle stream and reveals a client that left, which frees
//! its subscription.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::auth::{self, Carrier, Principal};
use crate::awsgi::{Body, Environ, Error, StartResponse};
use crate::db::listener::{Listener, Notice};
use crate::db::{Db, DbError, Scoped};
use crate::error::ApiError;

use super::super::db;

/// The channel the trigger notifies.
pub const CHANNEL: &str = "note_events";
/// Events read from the table per catch-up query.
const CATCH_UP_BATCH: i64 = 1000;

/// One change to a note, as stored in `note_events` and sent to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteEvent {
    /// Increasing in commit order: the SSE `id:`.
    pub id: i64,
    /// The note that changed.
    pub note_id: i64,
    /// `created`, `updated` or `deleted`.
    pub kind: String,
    /// The note's version after the change (before it, for `deleted`).
    pub version: i32,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The note's owner: only streams of that account see the event (not sent to clients).
    #[serde(default, skip_serializing)]
    pub owner_id: i64,
}

impl NoteEvent {
    /// Parses a notification payload.
    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }

    /// The event as one SSE frame.
    pub fn frame(&self) -> Bytes {
        let data = serde_json::to_string(self).unwrap_or_default();
        Bytes::from(format!("id: {}\nevent: note\ndata: {data}\n\n", self.id))
    }
}

/// What the listener broadcasts: the event, and its SSE frame rendered once for every
/// subscriber (with 10,000 streams, rendering per subscriber is most of the fan-out's work).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The event.
    pub event: NoteEvent,
    /// [`NoteEvent::frame`], shared.
    pub frame: Bytes,
}

impl Broadcast {
    /// Parses a notification payload and renders its frame.
    pub fn parse(payload: &str) -> Option<Self> {
        let event = NoteEvent::parse(payload)?;
        let frame = event.frame();
        Some(Self { event, frame })
    }
}

/// The process's note-event feed and the stream settings, shared by every subscriber.
#[derive(Clone, Debug)]
pub struct Feed {
    /// The one `LISTEN` connection.
    pub listener: Arc<Listener<Broadcast>>,
    /// Interval between heartbeat comments.
    pub heartbeat: Duration,
}

/// The application.
pub async fn app(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let feed = environ.extensions().get::<Feed>().cloned().ok_or_else(|| {
        tracing::error!("no Feed in the environ");
        ApiError::Internal
    })?;
    // The bearer header, or the session cookie (EventSource cannot send headers).
    let principal = auth::authenticate(&environ, Carrier::HeaderOrCookie).await?;
    let db = db(&environ)?;
    let note = match environ.query("note") {
        None => None,
        Some(raw) => Some(
            raw.parse::<i64>()
                .map_err(|_| ApiError::bad_request("note must be a note id"))?,
        ),
    };
    let last_event_id = environ
        .headers()
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event id"))
        })
        .transpose()?;
    if let Some(note) = note {
        // Another owner's note is as unknown as one that never was.
        let scope = Scoped::begin(db.conn().await?, principal.account_id).await?;
        let known = scope
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM notes WHERE id = $1) \
                     OR EXISTS (SELECT 1 FROM note_events WHERE note_id = $1)",
                &[&note],
            )
            .await?
            .get::<_, bool>(0);
        scope.commit().await?;
        if !known {
            return Err(ApiError::not_found(format!("no note with id {note}")).into());
        }
    }

    // Subscribe before reading the table: whatever commits after the read is then sure to
    // arrive live, and what arrives twice is dropped by id.
    let mut subscriber = Subscriber {
        rx: feed.listener.subscribe(),
        stopped: feed.listener.stopped(),
        heartbeat: tokio::time::interval_at(
            tokio::time::Instant::now() + feed.heartbeat,
            feed.heartbeat,
        ),
        db,
        principal,
        note,
        last_id: 0,
        backlog: VecDeque::new(),
    };
    match last_event_id {
        Some(id) => {
            subscriber.last_id = id;
            subscriber.catch_up().await?;
        }
        None => subscriber.last_id = subscriber.latest_id().await?,
    }

    start_response.start(
        "200 OK",
        [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),
        ],
    )?;
    // The first chunk commits the headers at once, and tells clients how soon to reconnect.
    let hello = futures_util::stream::once(async {
        Ok::<_, Error>(Bytes::from_static(b"retry: 2000\n: connected\n\n"))
    });
    let events = futures_util::stream::unfold(subscriber, |mut subscriber| async move {
        let frame = subscriber.next_frame().await?;
        Some((Ok::<_, Error>(frame), subscriber))
    });
    Ok(Body::from_stream(futures_util::StreamExt::chain(
        hello, events,
    )))
}

enum Woke {
    Notice(Result<Notice<Broadcast>, broadcast::error::RecvError>),
    Heartbeat,
}

/// One client's subscription. Dropped with the response body, which frees it.
struct Subscriber {
    rx: broadcast::Receiver<Notice<Broadcast>>,
    stopped: watch::Receiver<bool>,
    heartbeat: tokio::time::Interval,
    db: Db,
    /// Whose events this stream carries; its session is re-checked on every heartbeat.
    principal: Principal,
    note: Option<i64>,
    /// The id of the last event sent (or skipped as before the stream began).
    last_id: i64,
    backlog: VecDeque<NoteEvent>,
}

impl Subscriber {
    /// The next SSE frame, or `None` to end the stream (shutdown, or the database is
    /// unreachable for a catch-up: the client reconnects with `Last-Event-ID`).
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                self.last_id = event.id;
                return Some(event.frame());
            }
            let woke = tokio::select! {
                biased;
                _ = self.stopped.wait_for(|stop| *stop) => return None,
                notice = self.rx.recv() => Woke::Notice(notice),
                _ = self.heartbeat.tick() => Woke::Heartbeat,
            };
            match woke {
                Woke::Heartbeat => {
                    // A token revoked (or expired) while its stream is open ends the
                    // stream within one heartbeat interval.
                    if !Box::pin(self.session_live()).await {
                        return None;
                    }
                    return Some(Bytes::from_static(b": heartbeat\n\n"));
                }
                Woke::Notice(Ok(Notice::Event(live))) => {
                    if live.event.id > self.last_id && self.wanted(&live.event) {
                        self.last_id = live.event.id;
                        return Some(live.frame.clone());
                    }
                }
                Woke::Notice(Ok(Notice::Resync) | Err(broadcast::error::RecvError::Lagged(_))) => {
                    // Boxed: an idle stream then carries no room for a query's state.
                    if let Err(err) = Box::pin(self.catch_up()).await {
                        tracing::warn!(error = %err, "event stream could not catch up; closing it");
                        return None;
                    }
                }
                Woke::Notice(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    }

    fn wanted(&self, event: &NoteEvent) -> bool {
        event.owner_id == self.principal.account_id
            && self.note.is_none_or(|note| note == event.note_id)
    }

    /// Whether the stream's session still stands (a database error counts as no: the
    /// client reconnects and is asked again).
    async fn session_live(&self) -> bool {
        match self.db.conn().await {
            Ok(conn) => auth::still_valid(&conn, &self.principal)
                .await
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// A transaction in which the policies show this subscriber's events only.
    async fn scope(&self) -> Result<Scoped, DbError> {
        Scoped::begin(self.db.conn().await?, self.principal.account_id).await
    }

    /// Queues every stored event after `last_id` (for this note, if filtered).
    async fn catch_up(&mut self) -> Result<(), DbError> {
        let conn = self.scope().await?;
        let mut after = self.backlog.back().map_or(self.last_id, |e| e.id);
        loop {
            let rows = conn
                .query(
                    "SELECT id, note_id, kind, version, \
                            to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
                     FROM note_events \
                     WHERE id > $1 AND ($2::bigint IS NULL OR note_id = $2) \
                     ORDER BY id LIMIT $3",
                    &[&after, &self.note, &CATCH_UP_BATCH],
                )
                .await?;
            let full = rows.len() as i64 == CATCH_UP_BATCH;
            for row in rows {
                let event = NoteEvent {
                    id: row.get(0),
                    note_id: row.get(1),
                    kind: row.get(2),
                    version: row.get(3),
                    at: row.get(4),
                    owner_id: self.principal.account_id,
                };
                after = event.id;
                self.backlog.push_back(event);
            }
            if !full {
                return conn.commit().await;
            }
        }
    }

    /// The newest stored event id: where a stream with no `Last-Event-ID` begins.
    async fn latest_id(&self) -> Result<i64, DbError> {
        let conn = self.scope().await?;
        let row = conn
            .query_one("SELECT coalesce(max(id), 0) FROM note_events", &[])
            .await?;
        conn.commit().await?;
        Ok(row.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_trigger_payload() {
        let payload = r#"{"id":5,"note_id":2,"kind":"updated","version":3,"at":"2026-11-25T02:00:00.000000Z"}"#;
        let event = NoteEvent::parse(payload).unwrap();
        assert_eq!(
            (event.id, event.note_id, event.kind.as_str(), event.version),
            (5, 2, "updated", 3)
        );
        assert!(NoteEvent::parse("not json").is_none());
        let broadcast = Broadcast::parse(payload).unwrap();
        assert_eq!(broadcast.frame, event.frame());
        assert!(broadcast.frame.starts_with(b"id: 5\nevent: note\ndata: {"));
    }
}
