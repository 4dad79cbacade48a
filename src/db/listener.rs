//! [`Listener`]: one dedicated Postgres connection that `LISTEN`s for the whole process, on
//! one channel or several ([`Listener::listen`] adds one, live), and fans each notification
//! out to any number of subscribers.
//!
//! Subscribers cost memory (a broadcast receiver), not database connections. When the
//! connection drops (Postgres restarted, backend terminated), the listener reconnects with a
//! bounded backoff and then sends [`Notice::Resync`]: notifications sent during the outage
//! are lost to `LISTEN`, so subscribers must catch up from wherever the events are stored.
//! A subscriber that falls behind the broadcast buffer gets `RecvError::Lagged` and must do
//! the same.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio_postgres::AsyncMessage;

use super::connect::PgConnect;
use crate::backoff::Backoff;

/// What subscribers receive.
#[derive(Debug)]
pub enum Notice<T> {
    /// A notification's payload, parsed once for every subscriber.
    Event(Arc<T>),
    /// The connection was lost and is back: anything may have been missed; catch up.
    Resync,
}

impl<T> Clone for Notice<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Event(event) => Self::Event(event.clone()),
            Self::Resync => Self::Resync,
        }
    }
}

/// How to listen.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// The database URL.
    pub url: String,
    /// The channel to `LISTEN` on: an identifier, not user input (empty: none yet; see
    /// [`Listener::listen`]).
    pub channel: &'static str,
    /// How many notices the broadcast buffer holds before a slow subscriber lags.
    pub capacity: usize,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// The longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// How often an idle connection is checked with a round trip (it must answer within
    /// `connect_timeout`, or the connection is dropped and reopened).
    pub ping_interval: Duration,
}

/// The process's one `LISTEN` connection, shared by every subscriber.
///
/// ```no_run
/// use std::time::Duration;
/// use pgbridge::db::listener::{ListenConfig, Listener, Notice};
///
/// # async fn demo() {
/// let listener = Listener::spawn(
///     ListenConfig {
///         url: "postgres://postgres@localhost/app".into(),
///         channel: "jobs",
///         capacity: 1024,
///         connect_timeout: Duration::from_secs(3),
///         max_backoff: Duration::from_secs(5),
///         ping_interval: Duration::from_secs(30),
///     },
///     |payload: &str| Some(payload.to_owned()),
/// );
/// let mut rx = listener.subscribe();
/// while let Ok(Notice::Event(job)) = rx.recv().await {
///     println!("job {job}");
/// }
/// # }
/// ```
pub struct Listener<T> {
    tx: broadcast::Sender<Notice<T>>,
    connected: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    channels: watch::Sender<Vec<String>>,
}

impl<T: Send + Sync + 'static> Listener<T> {
    /// Starts listening in a background task (it needs a tokio runtime). `parse` turns a
    /// payload into an event; payloads it refuses are logged and treated as a resync.
    pub fn spawn(config: ListenConfig, parse: fn(&str) -> Option<T>) -> Self {
        let (tx, _) = broadcast::channel(config.capacity.max(1));
        let connected = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = watch::channel(false);
        let first: Vec<String> = Some(config.channel)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .into_iter()
            .collect();
        let (channels, wanted) = watch::channel(first);
        tokio::spawn(run(
            config,
            parse,
            tx.clone(),
            connected.clone(),
            stopped,
            wanted,
        ));
        Self {
            tx,
            connected,
            stop,
            channels,
        }
    }

    /// Listens on `channel` too (an identifier, not user input), from now on and after
    /// every reconnection. Once its `LISTEN` is done, subscribers get a [`Notice::Resync`]:
    /// what was notified on it before is theirs to catch up on.
    pub fn listen(&self, channel: &str) {
        self.channels.send_if_modified(|channels| {
            let new = !channels.iter().any(|c| c == channel);
            if new {
                channels.push(channel.to_owned());
            }
            new
        });
    }

    /// A new subscription: every notice sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice<T>> {
        self.tx.subscribe()
    }

    /// How many subscriptions are open.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Whether the `LISTEN` connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// A receiver that turns `true` when [`stop`](Self::stop) is called.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops listening and tells subscribers to finish (for a graceful shutdown).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl<T> std::fmt::Debug for Listener<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("subscribers", &self.tx.receiver_count())
            .field("connected", &self.connected.load(Ordering::Relaxed))
            .finish()
    }
}

async fn run<T: Send + Sync + 'static>(
    config: ListenConfig,
    parse: fn(&str) -> Option<T>,
    tx: broadcast::Sender<Notice<T>>,
    connected: Arc<AtomicBool>,
    mut stopped: watch::Receiver<bool>,
    wanted: watch::Receiver<Vec<String>>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), config.max_backoff);
    loop {
        let result = tokio::select! {
            result = listen_once(&config, parse, &tx, &connected, wanted.clone()) => result,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        connected.store(false, Ordering::Relaxed);
        match result {
            Ok(()) => {
                backoff.reset();
                tracing::warn!("LISTEN connection lost; reconnecting");
            }
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %err, retry_in = ?delay, "LISTEN connection failed");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

/// One connection's life: connect, `LISTEN`, forward notifications until it ends.
/// `Ok` means it was up and then lost; `Err` means it never came up.
async fn listen_once<T: Send + Sync + 'static>(
    config: &ListenConfig,
    parse: fn(&str) -> Option<T>,
    tx: &broadcast::Sender<Notice<T>>,
    connected: &AtomicBool,
    mut wanted: watch::Receiver<Vec<String>>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut pg = PgConnect::parse(&config.url)?;
    pg.config_mut().connect_timeout(config.connect_timeout);
    pg.config_mut().application_name("pgbridge-listener");
    let (client, mut connection) = pg.connect().await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));

    // Drive the connection while LISTEN is sent on it.
    let mut listening = wanted.borrow_and_update().clone();
    let statement = listen_statement(&listening);
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    loop {
        tokio::select! {
            result = &mut listen => { result?; break; }
            message = messages.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => return Ok(()),
            },
        }
    }
    connected.store(true, Ordering::Relaxed);
    tracing::info!(channels = ?listening, "listening");
    // Whatever was notified before this connection listened (an outage, or the time before
    // the first connect) is lost to LISTEN: subscribers catch up.
    let _ = tx.send(Notice::Resync);

    // A periodic round trip notices a connection that died without closing. The round trip
    // is polled beside the connection's messages, never awaited on its own: its answer only
    // arrives while the connection is being driven.
    let mut ping = tokio::time::interval(config.ping_interval.max(Duration::from_millis(1)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut pong: Option<RoundTrip<'_>> = None;
    // A channel added while connected: its LISTEN, polled beside the messages too.
    let mut adding: Option<(Vec<String>, RoundTrip<'_>)> = None;
    let mut more_may_come = true;
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let notice = match parse(n.payload()) {
                        Some(event) => Notice::Event(Arc::new(event)),
                        None => {
                            tracing::error!(payload = n.payload(), "unreadable notification; resyncing subscribers");
                            Notice::Resync
                        }
                    };
                    // No subscribers is not an error.
                    let _ = tx.send(notice);
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    let error = super::error::describe(&err);
                    tracing::warn!(%error, "LISTEN connection error");
                    return Ok(());
                }
                None => return Ok(()),
            },
            alive = async {
                match pong.as_mut() {
                    Some(round_trip) => round_trip.await,
                    None => std::future::pending().await,
                }
            }, if pong.is_some() => {
                pong = None;
                if !alive {
                    tracing::warn!("LISTEN connection did not answer a ping");
                    return Ok(());
                }
            }
            changed = wanted.changed(), if adding.is_none() && more_may_come => {
                if changed.is_err() {
                    more_may_come = false; // the Listener is gone; `stop` ends this soon
                    continue;
                }
                let new: Vec<String> = wanted
                    .borrow_and_update()
                    .iter()
                    .filter(|c| !listening.contains(c))
                    .cloned()
                    .collect();
                if !new.is_empty() {
                    let statement = listen_statement(&new);
                    let client = &client;
                    adding = Some((new, Box::pin(async move {
                        client.batch_execute(&statement).await.is_ok()
                    })));
                }
            }
            done = async {
                match adding.as_mut() {
                    Some((_, listen)) => listen.await,
                    None => std::future::pending().await,
                }
            }, if adding.is_some() => {
                let Some((new, _)) = adding.take() else { continue };
                if !done {
                    tracing::warn!(channels = ?new, "LISTEN on a new channel failed; reconnecting");
                    return Ok(());
                }
                tracing::info!(channels = ?new, "listening");
                listening.extend(new);
                // Whatever was notified on the new channels before is lost to LISTEN.
                let _ = tx.send(Notice::Resync);
            }
            _ = ping.tick(), if pong.is_none() => {
                let timeout = config.connect_timeout;
                let round_trip = client.simple_query("");
                pong = Some(Box::pin(async move {
                    matches!(tokio::time::timeout(timeout, round_trip).await, Ok(Ok(_)))
                }));
            }
        }
    }
}

/// A statement on the listening connection, polled beside its messages: whether it worked.
type RoundTrip<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// `LISTEN` on each of `channels`, quoted as identifiers (nothing for none).
fn listen_statement(channels: &[String]) -> String {
    channels
        .iter()
        .map(|c| format!("LISTEN \"{}\";", c.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn listen_statements_quote_each_channel() {
        let channels = ["note_events".to_owned(), "task_events".to_owned()];
        assert_eq!(
            super::listen_statement(&channels),
            "LISTEN \"note_events\"; LISTEN \"task_events\";"
        );
        assert_eq!(super::listen_statement(&[]), "");
    }
}
