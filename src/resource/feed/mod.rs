//! `GET /{name}/events` — a resource's changes as server-sent events, live, with nothing
//! lost.
//!
//! Streaming is what the 2008 asynchronous WSGI was for ("comet"): a request that waits a
//! long time on a socket without a thread. Here the socket is Postgres's. A trigger records
//! every change of the resource's table in its `{noun}_events` table and `pg_notify`s it on
//! the channel `{noun}_events` in the same transaction; one [`Listener`] connection per
//! process listens on every resource's channel and fans each notice out to every
//! subscriber, which keeps its own resource's ([`Feeds`]).
//!
//! Nothing is lost: a client that reconnects with `Last-Event-ID` (browsers' `EventSource`
//! does so by itself) first gets every later event from the table, then live ones, with no
//! gap and no duplicate — event ids are in commit order (the trigger holds a lock from the
//! id's assignment to the commit), so "after id N" is exact. A subscriber that falls behind
//! the broadcast buffer, or that was listening while the `LISTEN` connection was down, is
//! caught up from the table the same way. `?{noun}=ID` narrows the stream to one item. A
//! comment every heartbeat interval keeps proxies from closing an idle stream and reveals a
//! client that left, which frees its subscription.
//!
//! Bounds, so that no client can cost the service much: a replay reads a page at a time,
//! only as the client drains it (`subscriber.rs`), and a limited number of those queries
//! run at once; a stream whose client stops reading is dropped after a stall timeout, and
//! the number of open streams (every resource's together) is capped (503 past it)
//! ([`limits`]). Events older than the retention are pruned; a client whose
//! `Last-Event-ID` is older than the kept history gets an `event: reset` telling it to
//! re-read the collection, never a silent gap ([`replay`]).
//!
//! Each stream belongs to one account (bearer token, or the session cookie): it carries
//! that account's events only — live ones are filtered by [`Event::owner_id`], and every
//! replay page is read in an owner scope, so row-level security applies — and it ends
//! within a heartbeat interval of its session being revoked or expiring.
//!
//! A resource's migration makes its feed: the `{noun}_events` table, its horizon, their
//! policies and grants, and the kit's trigger function `pgbridge_record_event(events
//! table, channel, item column)` attached to the resource's table (see
//! `migrations/…_resource_kit.sql`; `scripts/new-resource` writes it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::auth::{self, Carrier};
use crate::config::Config;
use crate::db::listener::{ListenConfig, Listener, Tap};
use crate::db::{Db, Scoped};
use crate::error::ApiError;
use crate::request::db;
use awsgi::{Body, Environ, Error, StartResponse};

mod gauges;
pub mod limits;
pub mod replay;
mod subscriber;

use limits::{StreamLimits, Streams};
use subscriber::Subscriber;

/// A feed's names and statements, all derived from the resource's plural `name` and
/// singular `noun` by [`feed_spec!`](crate::feed_spec) (part of a resource's
/// [`Spec`](super::Spec)).
#[derive(Debug, Clone, Copy)]
pub struct FeedSpec {
    /// The item, singular: the SSE event name, the query parameter, the `{noun}_id` field.
    pub noun: &'static str,
    /// The channel the trigger notifies: `{noun}_events`.
    pub channel: &'static str,
    /// A replay page ([`replay::page`]): `$1` the reader's last id, `$2` the item or NULL,
    /// `$3` the page size. In the owner's scope, an index scan on `(owner_id, id)`.
    pub page: &'static str,
    /// Where a new stream begins ([`replay::latest`]), in the owner's scope.
    pub latest: &'static str,
    /// Whether item `$1` is or was the owner's (`?{noun}=ID`).
    pub exists: &'static str,
    /// One pruning batch: `$1` the retention in seconds, `$2` the batch size.
    pub prune: &'static str,
}

/// The [`FeedSpec`] of the resource `name` (plural) whose items are each a `noun`.
///
/// ```
/// const FEED: pgbridge::resource::feed::FeedSpec = pgbridge::feed_spec!("tasks", "task");
/// assert!(FEED.page.contains("FROM task_events_horizon h"));
/// ```
#[macro_export]
macro_rules! feed_spec {
    ($name:literal, $noun:literal) => {
        $crate::resource::feed::FeedSpec {
            noun: $noun,
            channel: concat!($noun, "_events"),
            page: concat!(
                "SELECT h.pruned_through, greatest(h.pruned_through, \
                 (SELECT coalesce(max(id), 0) FROM ",
                $noun,
                "_events)), e.id, e.",
                $noun,
                "_id, e.kind, e.version, ",
                $crate::utc_text!("e.at"),
                " FROM ",
                $noun,
                "_events_horizon h LEFT JOIN LATERAL ( SELECT * FROM ",
                $noun,
                "_events WHERE id > $1 AND ($2::bigint IS NULL OR ",
                $noun,
                "_id = $2) ORDER BY id LIMIT $3 ) e ON true ORDER BY e.id"
            ),
            latest: concat!(
                "SELECT greatest(pruned_through, (SELECT coalesce(max(id), 0) FROM ",
                $noun,
                "_events)) FROM ",
                $noun,
                "_events_horizon"
            ),
            exists: concat!(
                "SELECT EXISTS (SELECT 1 FROM ",
                $name,
                " WHERE id = $1) OR EXISTS (SELECT 1 FROM ",
                $noun,
                "_events WHERE ",
                $noun,
                "_id = $1)"
            ),
            prune: concat!(
                "WITH doomed AS ( SELECT id FROM ",
                $noun,
                "_events WHERE at < now() - make_interval(secs => $1) \
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED \
                 ), gone AS ( DELETE FROM ",
                $noun,
                "_events e USING doomed d WHERE e.id = d.id RETURNING e.id \
                 ), raised AS ( UPDATE ",
                $noun,
                "_events_horizon SET pruned_through = greatest(pruned_through, \
                 (SELECT max(id) FROM gone)) WHERE EXISTS (SELECT 1 FROM gone) RETURNING 1 \
                 ) SELECT count(*) FROM gone"
            ),
        }
    };
}

/// One change to an item, as stored in `{noun}_events` and sent to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Increasing in commit order: the SSE `id:`.
    pub id: i64,
    /// The resource's item noun: the SSE `event:`, and the field `{noun}_id`.
    pub noun: String,
    /// The item that changed.
    pub item_id: i64,
    /// `created`, `updated` or `deleted`.
    pub kind: String,
    /// The item's version after the change (before it, for `deleted`).
    pub version: i32,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The item's owner: only streams of that account see the event (not sent to clients).
    pub owner_id: i64,
}

impl Event {
    /// Parses a notification payload: `id`, `{noun}_id`, `kind`, `version`, `at` and
    /// `owner_id` (the noun is read from the one `…_id` field that is not `owner_id`).
    ///
    /// ```
    /// use pgbridge::resource::feed::Event;
    ///
    /// let event = Event::parse(r#"{"id":5,"task_id":2,"kind":"created","version":1,"at":"t","owner_id":3}"#).unwrap();
    /// assert_eq!((event.noun.as_str(), event.item_id, event.owner_id), ("task", 2, 3));
    /// ```
    pub fn parse(payload: &str) -> Option<Self> {
        let serde_json::Value::Object(object) = serde_json::from_str(payload).ok()? else {
            return None;
        };
        let (noun, item_id) = object.iter().find_map(|(key, value)| {
            let noun = key.strip_suffix("_id").filter(|noun| *noun != "owner")?;
            Some((noun.to_owned(), value.as_i64()?))
        })?;
        Some(Self {
            id: object.get("id")?.as_i64()?,
            noun,
            item_id,
            kind: object.get("kind")?.as_str()?.to_owned(),
            version: i32::try_from(object.get("version")?.as_i64()?).ok()?,
            at: object.get("at")?.as_str()?.to_owned(),
            owner_id: object.get("owner_id").and_then(|v| v.as_i64()).unwrap_or(0),
        })
    }

    /// The event as one SSE frame: `event: {noun}`, and as data `id`, `{noun}_id`, `kind`,
    /// `version` and `at`, in that order.
    pub fn frame(&self) -> Bytes {
        let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
        Bytes::from(format!(
            "id: {id}\nevent: {noun}\ndata: {{\"id\":{id},\"{noun}_id\":{item},\"kind\":{kind},\
             \"version\":{version},\"at\":{at}}}\n\n",
            id = self.id,
            noun = self.noun,
            item = self.item_id,
            kind = text(&self.kind),
            version = self.version,
            at = text(&self.at),
        ))
    }
}

/// What the listener broadcasts: the event, and its SSE frame rendered once for every
/// subscriber (with 10,000 streams, rendering per subscriber is most of the fan-out's work).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The event.
    pub event: Event,
    /// [`Event::frame`], shared.
    pub frame: Bytes,
}

impl Broadcast {
    /// Parses a notification payload and renders its frame.
    ///
    /// ```
    /// let payload = r#"{"id":5,"note_id":2,"kind":"updated","version":3,"at":"t","owner_id":1}"#;
    /// let broadcast = pgbridge::resource::feed::Broadcast::parse(payload).unwrap();
    /// assert!(broadcast.frame.starts_with(b"id: 5\nevent: note\n"));
    /// ```
    pub fn parse(payload: &str) -> Option<Self> {
        let event = Event::parse(payload)?;
        let frame = event.frame();
        Some(Self { event, frame })
    }
}

/// The process's change feeds: the one `LISTEN` connection, the open streams of every
/// resource under one cap, and the settings; [`feed`](Self::feed) gives one resource's.
#[derive(Clone, Debug)]
pub struct Feeds {
    listener: Arc<Listener<Broadcast>>,
    streams: Arc<Streams>,
    heartbeat: Duration,
    replay_page: u32,
    db: Db,
    retention: Duration,
    prune_interval: Duration,
    /// The feeds whose channel is listened to and whose pruner runs.
    started: Arc<Mutex<Vec<&'static str>>>,
}

impl Feeds {
    /// The feeds of `config`: starts the one `LISTEN` connection (it connects in the
    /// background, and reconnects), then [`Feeds::start`]. Needs a tokio runtime.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use pgbridge::resource::feed::Feeds;
    /// use pgbridge::config::Config;
    /// use pgbridge::db::Db;
    ///
    /// let config = Config::new("postgres://postgres@localhost/app");
    /// let feeds = Feeds::spawn(&Db::connect(&config.db())?, &config);
    /// let notes = feeds.feed(&pgbridge::resource_spec!("notes", "note").feed);
    /// feeds.stop();
    /// # let _ = notes; Ok(()) }
    /// ```
    pub fn spawn(db: &Db, config: &Config) -> Self {
        Self::spawn_with(db, config, Vec::new())
    }

    /// [`spawn`](Self::spawn), the `LISTEN` connection also hearing `taps`: other channels
    /// of the process, each with its own callback ([`Tap`]).
    pub fn spawn_with(db: &Db, config: &Config, taps: Vec<Tap>) -> Self {
        let listener = Listener::spawn_with(
            ListenConfig {
                url: config.events_url().to_owned(),
                channel: "",
                capacity: config.events_buffer,
                connect_timeout: Duration::from_millis(config.db_connect_timeout_ms),
                max_backoff: Duration::from_secs(5),
                ping_interval: Duration::from_millis(config.events_listen_ping_ms),
            },
            Broadcast::parse,
            taps,
        );
        Self::start(listener, db, config)
    }

    /// The feeds on `listener` with the event settings of `config`; starts the stall
    /// watchdog (which stops with the listener). Needs a tokio runtime.
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
        Self {
            listener: Arc::new(listener),
            streams,
            heartbeat: Duration::from_millis(config.sse_heartbeat_ms.max(1)),
            replay_page: config.events_replay_page.max(1),
            db: db.clone(),
            retention: Duration::from_secs(config.events_retention_secs),
            prune_interval: Duration::from_secs(config.events_prune_interval_secs),
            started: Arc::default(),
        }
    }

    /// The feed of one resource: the first call for a `spec` adds its channel to the
    /// `LISTEN` connection and starts its pruner; later ones share them. Needs a tokio
    /// runtime.
    pub fn feed(&self, spec: &'static FeedSpec) -> Feed {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        if !started.contains(&spec.channel) {
            started.push(spec.channel);
            self.listener.listen(spec.channel);
            tokio::spawn(replay::run_pruner(
                self.db.clone(),
                spec,
                self.retention,
                self.prune_interval,
                self.listener.stopped(),
            ));
        }
        Feed {
            listener: self.listener.clone(),
            heartbeat: self.heartbeat,
            streams: self.streams.clone(),
            replay_page: self.replay_page,
            spec,
        }
    }

    /// The `LISTEN` connection.
    pub fn listener(&self) -> &Arc<Listener<Broadcast>> {
        &self.listener
    }

    /// Stops the listener: open streams end, and the watchdog and pruners stop.
    pub fn stop(&self) {
        self.listener.stop();
    }
}

/// One resource's feed: the process's listener and stream limits, and the resource's
/// [`FeedSpec`].
#[derive(Clone, Debug)]
pub struct Feed {
    /// The one `LISTEN` connection (every resource's).
    pub listener: Arc<Listener<Broadcast>>,
    /// Interval between heartbeat comments.
    pub heartbeat: Duration,
    /// Open streams (every resource's), their cap and counters.
    pub streams: Arc<Streams>,
    /// Events per catch-up query.
    pub replay_page: u32,
    /// Which resource's.
    pub spec: &'static FeedSpec,
}

impl Feed {
    /// Stops the process's listener (every feed's streams end).
    pub fn stop(&self) {
        self.listener.stop();
    }
}

/// A timer for work done every `interval` (a stream's heartbeat, a feed's pruning): the
/// first tick one `interval` from now. A tick that falls due while the timer is not polled
/// (a stream whose client is not reading, its socket full; a prune that ran long) comes once
/// when it is polled again, and the next a whole interval later: not one tick per interval
/// missed, back to back.
fn every(interval: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Seconds a client turned away at the stream cap is asked to wait.
const FULL_RETRY_AFTER_SECS: u32 = 5;

/// The application of one resource's feed.
pub async fn app(
    feed: Feed,
    environ: Environ,
    start_response: StartResponse,
) -> Result<Body, Error> {
    let spec = feed.spec;
    let noun = spec.noun;
    // The bearer header, or the session cookie (EventSource cannot send headers).
    let principal = auth::authenticate(&environ, Carrier::HeaderOrCookie).await?;
    let db = db(&environ)?;
    let item = match environ.query(noun) {
        None => None,
        Some(raw) => Some(
            raw.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("{noun} must be a {noun} id")))?,
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
    if let Some(item) = item {
        // Another owner's item is as unknown as one that never was.
        let scope = Scoped::begin(db.conn().await?, principal.account_id).await?;
        let known = scope
            .query_one(spec.exists, &[&item])
            .await?
            .get::<_, bool>(0);
        scope.commit().await?;
        if !known {
            return Err(ApiError::not_found(format!("no {noun} with id {item}")).into());
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
    let rx = feed.listener.subscribe();
    let mut stopped = feed.listener.stopped();
    if *stopped.borrow() {
        // Stopped before this subscription: it will not get the broadcast's notice.
        stopped.mark_changed();
    }
    let mut subscriber = Subscriber {
        rx,
        stopped,
        heartbeat: every(feed.heartbeat),
        db,
        spec,
        principal,
        item,
        last_id: 0,
        page: VecDeque::new(),
        pending: None,
        streams: feed.streams.clone(),
        slot,
        page_size: i64::from(feed.replay_page),
        failed_checks: 0,
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
    fn parses_the_trigger_payload_and_frames_it_as_before() {
        let payload = r#"{"id":5,"note_id":2,"kind":"updated","version":3,"at":"2026-11-25T02:00:00.000000Z","owner_id":4}"#;
        let event = Event::parse(payload).unwrap();
        assert_eq!(
            (event.id, event.item_id, event.kind.as_str(), event.version),
            (5, 2, "updated", 3)
        );
        assert!(Event::parse("not json").is_none());
        let broadcast = Broadcast::parse(payload).unwrap();
        assert_eq!(broadcast.frame, event.frame());
        assert_eq!(
            std::str::from_utf8(&broadcast.frame).unwrap(),
            "id: 5\nevent: note\ndata: {\"id\":5,\"note_id\":2,\"kind\":\"updated\",\
             \"version\":3,\"at\":\"2026-11-25T02:00:00.000000Z\"}\n\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_ticks_an_interval_in_then_once_after_a_stall() {
        use tokio::time::Instant;
        // Tokio's timer counts whole milliseconds.
        let near = |a: Duration, b: Duration| a.abs_diff(b) <= Duration::from_millis(1);
        let interval = Duration::from_millis(1_000);
        let started = Instant::now();
        let mut tick = every(interval);
        tick.tick().await;
        assert!(
            near(started.elapsed(), interval),
            "the first tick one interval in"
        );
        let first = Instant::now();
        tick.tick().await;
        assert!(near(first.elapsed(), interval));
        // Not polled for 2.5 intervals: one tick at once, the next a whole interval later.
        tokio::time::sleep(interval.mul_f64(2.5)).await;
        let late = Instant::now();
        tick.tick().await;
        assert!(near(late.elapsed(), Duration::ZERO));
        tick.tick().await;
        assert!(
            near(late.elapsed(), interval),
            "no burst of the missed ticks"
        );
    }
}
