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
//!
//! Bounds, so that no client can cost the service much: a replay reads a page at a time,
//! only as the client drains it (`subscriber.rs`), and a limited number of those queries
//! run at once; a stream whose client stops reading is dropped after a stall timeout, and
//! the number of open streams is capped (503 past it) ([`limits`]). Events older than the
//! retention are pruned; a client whose `Last-Event-ID` is older than the kept history gets
//! an `event: reset` telling it to re-read the collection, never a silent gap ([`replay`]).
//!
//! Each stream belongs to one account (bearer token, or the session cookie): it carries
//! that account's events only — live ones are filtered by [`NoteEvent::owner_id`], and
//! every replay page is read in an owner scope, so row-level security applies — and it
//! ends within a heartbeat interval of its session being revoked or expiring.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::auth::{self, Carrier};
use crate::config::Config;
use crate::db::listener::{ListenConfig, Listener};
use crate::db::{Db, Scoped};
use crate::error::ApiError;
use awsgi::{Body, Environ, Error, StartResponse};

use crate::request::db;

mod gauges;
pub mod limits;
pub mod replay;
mod subscriber;

use limits::{StreamLimits, Streams};
use subscriber::Subscriber;

/// The channel the trigger notifies.
pub const CHANNEL: &str = "note_events";

/// One change to a note, as stored in `note_events` and sent to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoteEvent {
    /// Increasing in commit order: the SSE `id:`.
    pub id: i64,
    /// The note that changed.
    pub note_id: i64,
    /// `created`, `updated` or `deleted`.
    #[schema(pattern = "^(created|updated|deleted)$")]
    pub kind: String,
    /// The note's version after the change (before it, for `deleted`).
    pub version: i32,
    /// When, RFC 3339 UTC.
    #[schema(format = DateTime)]
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
    /// Open streams, their cap and counters.
    pub streams: Arc<Streams>,
    /// Events per catch-up query.
    pub replay_page: u32,
}

impl Feed {
    /// The feed of `config`: starts the one `LISTEN` connection on [`CHANNEL`] (it connects
    /// in the background, and reconnects), then [`Feed::start`]. Needs a tokio runtime.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use pgbridge::apps::notes::events::Feed;
    /// use pgbridge::config::Config;
    /// use pgbridge::db::Db;
    ///
    /// let config = Config::new("postgres://postgres@localhost/app");
    /// let feed = Feed::spawn(&Db::connect(&config.db())?, &config);
    /// feed.stop();
    /// # Ok(()) }
    /// ```
    pub fn spawn(db: &Db, config: &Config) -> Self {
        let listener = Listener::spawn(
            ListenConfig {
                url: config.events_url().to_owned(),
                channel: CHANNEL,
                capacity: config.events_buffer,
                connect_timeout: Duration::from_millis(config.db_connect_timeout_ms),
                max_backoff: Duration::from_secs(5),
                ping_interval: Duration::from_millis(config.events_listen_ping_ms),
            },
            Broadcast::parse,
        );
        Self::start(listener, db, config)
    }

    /// Stops the listener: open streams end, and the watchdog and pruner stop.
    pub fn stop(&self) {
        self.listener.stop();
    }

    /// The feed for `listener` with the event settings of `config`; starts the stall
    /// watchdog and the pruner (which stop with the listener). Needs a tokio runtime.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use pgbridge::apps::notes::events::{Broadcast, CHANNEL, Feed};
    /// use pgbridge::config::Config;
    /// use pgbridge::db::Db;
    /// use pgbridge::db::listener::{ListenConfig, Listener};
    ///
    /// let config = Config::new("postgres://postgres@localhost/app");
    /// let db = Db::connect(&config.db())?;
    /// let listener = Listener::spawn(
    ///     ListenConfig {
    ///         url: config.database_url.clone(),
    ///         channel: CHANNEL,
    ///         capacity: config.events_buffer,
    ///         connect_timeout: Duration::from_secs(3),
    ///         max_backoff: Duration::from_secs(5),
    ///         ping_interval: Duration::from_millis(config.events_listen_ping_ms),
    ///     },
    ///     Broadcast::parse,
    /// );
    /// let feed = Feed::start(listener, &db, &config);
    /// # Ok(()) }
    /// ```
    pub fn start(listener: Listener<Broadcast>, db: &Db, config: &Config) -> Self {
        let streams = Arc::new(Streams::new(StreamLimits {
            max_streams: config.events_max_streams,
            max_per_account: config.events_max_streams_per_account,
            max_catch_ups: config.events_max_catchups,
            stall_timeout: Duration::from_millis(config.events_stall_timeout_ms),
        }));
        tokio::spawn(Streams::run_sweeper(
            Arc::downgrade(&streams),
            listener.stopped(),
        ));
        tokio::spawn(replay::run_pruner(
            db.clone(),
            Duration::from_secs(config.events_retention_secs),
            Duration::from_secs(config.events_prune_interval_secs),
            listener.stopped(),
        ));
        Self {
            listener: Arc::new(listener),
            heartbeat: Duration::from_millis(config.sse_heartbeat_ms.max(1)),
            streams,
            replay_page: config.events_replay_page.max(1),
        }
    }
}

/// Seconds a client turned away at the stream cap is asked to wait.
const FULL_RETRY_AFTER_SECS: u32 = 5;

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
    let slot = feed
        .streams
        .open(principal.account_id)
        .map_err(|full| match full {
            limits::Full::Process => {
                tracing::warn!(
                    open = feed.streams.open_streams(),
                    "event stream refused: too many open streams"
                );
                ApiError::Overloaded {
                    message: "too many open event streams; retry later".into(),
                    retry_after_secs: FULL_RETRY_AFTER_SECS,
                }
            }
            limits::Full::Account => {
                tracing::debug!(
                    account = principal.account_id,
                    "event stream refused: the account has its most open"
                );
                ApiError::TooManyOpen {
                    message: format!(
                        "this account has {} event streams open, the most allowed; close one and retry",
                        feed.streams.max_per_account()
                    ),
                    retry_after_secs: FULL_RETRY_AFTER_SECS,
                }
            }
        })?;

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
        page: VecDeque::new(),
        pending: None,
        streams: feed.streams.clone(),
        slot,
        page_size: i64::from(feed.replay_page),
    };
    match last_event_id {
        Some(id) => {
            // The first page is read before the headers, so an unreachable database is a
            // 503, not an empty stream; the rest as the client drains it.
            subscriber.last_id = id;
            subscriber.start_catch_up();
            subscriber.read_page().await?;
        }
        None => subscriber.start_at_latest().await?,
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
