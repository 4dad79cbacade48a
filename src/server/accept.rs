//! The accept loop: takes a permit under the connection cap before each accept, survives
//! running out of file descriptors, and hands each connection to its own task.
//!
//! When the cap is reached, it raises *pressure*, which every connection watches: idle
//! connections and request heads get a second at most (see `conn.rs`), so slots free
//! quickly for clients that send requests. Pressure drops once a tenth of the slots are free.
//! And while at the cap, each client that connects makes one connection serving a long
//! anonymous request close (`evict.rs`), oldest first (its own address's first): those are
//! the first to go, not only idle ones.
//!
//! A client address with `max_connections_per_address` connections open gets its next
//! one answered 429 and closed at once, so one address cannot fill the cap.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::evict::{Connection, Evictions};
use super::stats::ConnectionStats;
use super::{Limits, Phase, Stack, conn, reject};
use crate::backoff::Backoff;
use crate::keyed_limit::KeyedLimit;

/// Pauses between accepts while descriptors are exhausted: from 10 ms, doubling, up to 1 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));

/// Accepts until the future is dropped (that is how the server stops accepting).
// Each argument is one of `Server`'s parts, handed over whole (shutdown.rs destructures it).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    listener: TcpListener,
    stack: Stack,
    limits: Limits,
    permits: Arc<Semaphore>,
    stats: Arc<ConnectionStats>,
    phase: watch::Receiver<Phase>,
    per_address: KeyedLimit<IpAddr>,
    core: Option<usize>,
) {
    // True while at (or near) the cap: connections shed idleness and slow heads sooner.
    let (pressure, pressure_rx) = watch::channel(false);
    let relieved = |pressure: &watch::Sender<bool>| {
        if *pressure.borrow() && permits.available_permits() >= (limits.max_connections / 10).max(1)
        {
            pressure.send_replace(false);
        }
    };
    let mut backoff = BACKOFF;
    let mut starved = false;
    let mut cap_log = RateLimitedLog::default();
    let evictions = Arc::new(Evictions::default());
    let mut address_log = RateLimitedLog::default();
    let refusals = Arc::new(Semaphore::new(REFUSALS_LINGERING));
    loop {
        let (permit, waiting) = match permits.clone().try_acquire_owned() {
            Ok(permit) => (Some(permit), None),
            Err(_) => {
                stats.on_cap_reached();
                // Wake the watchdogs only when pressure begins, not on every hit of the cap.
                pressure.send_if_modified(|pressed| !std::mem::replace(pressed, true));
                let loud = cap_log.should_log();
                if loud {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        times_since_last_log = cap_log.take_count(),
                        "connection cap reached; new connections wait until one closes \
                         (long anonymous requests are closed first)"
                    );
                }
                // Wait for a slot; or for a client, which is taken (one descriptor of the
                // reserve) and makes the oldest long anonymous request go, if there is one.
                let (permit, waiting) = tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => (Some(permit), None),
                        Err(_) => return,
                    },
                    accepted = listener.accept() => {
                        // A client its address's limit refuses gets no slot and evicts
                        // nothing: it is refused below, at once.
                        let admissible = accepted.as_ref().is_ok_and(|(_, remote)| {
                            per_address.max() == 0
                                || per_address.held(&remote.ip()) < per_address.max()
                        });
                        if !admissible {
                            (None, Some(accepted))
                        } else {
                            if let Ok((_, remote)) = &accepted
                                && evictions.evict_for(remote.ip())
                            {
                                stats.on_evicted();
                            }
                            match permits.clone().acquire_owned().await {
                                Ok(permit) => (Some(permit), Some(accepted)),
                                Err(_) => return,
                            }
                        }
                    }
                };
                if loud {
                    tracing::info!("below the connection cap; accepting again");
                }
                (permit, waiting)
            }
        };
        let accepted = match waiting {
            Some(accepted) => accepted,
            None => loop {
                // Look at the pressure once a second even when no one connects.
                match tokio::time::timeout(Duration::from_secs(1), listener.accept()).await {
                    Ok(accepted) => break accepted,
                    Err(_) => relieved(&pressure),
                }
            },
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_out_of_descriptors(&err) => {
                stats.on_refused();
                if !starved {
                    starved = true;
                    tracing::warn!(
                        error = %err,
                        open = stats.open(),
                        "out of file descriptors; pausing accepts (open connections keep being served)"
                    );
                }
                drop(permit);
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
            Err(err) => {
                // The client went away between SYN and accept, or similar: its problem only.
                tracing::debug!(error = %err, "accept failed");
                continue;
            }
        };
        if starved {
            starved = false;
            tracing::info!("file descriptors available again; accepting");
        }
        backoff.reset();
        relieved(&pressure);
        // Streamed chunks (event streams, poll-sleep lines) go out as written, not held
        // back by Nagle's algorithm.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        let Some(address_permit) = per_address.try_acquire(remote.ip()) else {
            stats.on_address_refused();
            if address_log.should_log() {
                tracing::warn!(
                    %remote,
                    max_connections_per_address = limits.max_connections_per_address,
                    times_since_last_log = address_log.take_count(),
                    "connection refused: too many open from its address"
                );
            }
            // A refused connection takes no slot under the cap.
            drop(permit);
            refuse(stream, &refusals);
            continue;
        };
        let permit = match permit {
            Some(permit) => permit,
            // Accepted at the cap while its address was full; it has room now.
            None => match permits.clone().acquire_owned().await {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        stats.on_open(core);
        let task = conn::serve(
            stream,
            remote,
            Connection::new(evictions.clone(), remote.ip()),
            stack.clone(),
            limits.clone(),
            stats.clone(),
            phase.clone(),
            pressure_rx.clone(),
        );
        let stats = stats.clone();
        tokio::spawn(then(task, move || {
            stats.on_close(core);
            drop(address_permit);
            drop(permit);
        }));
    }
}

/// `task`, then `after`: the connection's task. Not an `async` block awaiting `task`: that
/// keeps the captured future and the awaited one in two slots, and a connection's task (an
/// open event stream lives for hours) would hold its future twice — 2.4 KB of the 4.9 KB.
fn then<F: Future<Output = ()>>(task: F, after: impl FnOnce()) -> impl Future<Output = ()> {
    futures_util::FutureExt::map(task, move |()| after())
}

/// Refused connections that may linger at once to deliver their 429 (each holds a
/// descriptor for at most [`REFUSE_WRITE_TIMEOUT`] + [`REFUSE_LINGER`]); past that, refused
/// connections get their 429 only if the socket takes it at once, then close.
const REFUSALS_LINGERING: usize = 32;
/// How long a refused connection gets to take its 429.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long it then waits for the client to close, reading what it sent.
const REFUSE_LINGER: Duration = Duration::from_millis(250);

/// Answers a connection over its address's limit with 429 and closes it. The request is
/// not read: the answer says why, and `Connection: close` that this connection is done.
fn refuse(stream: TcpStream, refusals: &Arc<Semaphore>) {
    let (bytes, _id) = reject::response(
        http::StatusCode::TOO_MANY_REQUESTS,
        "too_many_connections",
        "too many connections from your address; close some and retry",
        &[("retry-after", "1")],
    );
    let Ok(turn) = refusals.clone().try_acquire_owned() else {
        // A new socket's send buffer takes a few hundred bytes at once.
        let _ = stream.try_write(&bytes);
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let write = async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        };
        if let Ok(Ok(())) = tokio::time::timeout(REFUSE_WRITE_TIMEOUT, write).await {
            // Read what the client sent until it closes: closing with unread data would send
            // a reset, which can destroy the answer before the client reads it.
            let drain = async {
                let mut sink = [0u8; 1024];
                while tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? > 0 {}
                Ok::<(), io::Error>(())
            };
            let _ = tokio::time::timeout(REFUSE_LINGER, drain).await;
        }
        drop(turn);
    });
}

/// `EMFILE`/`ENFILE` (and the kernel's out-of-memory answers): retrying at once would spin.
fn is_out_of_descriptors(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// At most one log line a minute for an event that can repeat many times a second (a server
/// hovering at its connection cap), with the count since the last line.
#[derive(Debug, Default)]
struct RateLimitedLog {
    last: Option<tokio::time::Instant>,
    count: u64,
}

impl RateLimitedLog {
    const EVERY: Duration = Duration::from_secs(60);

    fn should_log(&mut self) -> bool {
        self.count += 1;
        let now = tokio::time::Instant::now();
        match self.last {
            Some(last) if now < last + Self::EVERY => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    fn take_count(&mut self) -> u64 {
        std::mem::take(&mut self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_task_holds_its_future_once_and_runs_the_rest_after_it() {
        let state = [7u8; 1024];
        let (tx, rx) = std::sync::mpsc::channel();
        let served = tx.clone();
        let task = async move {
            tokio::task::yield_now().await;
            served.send(std::hint::black_box(state)[0]).unwrap();
        };
        let alone = std::mem::size_of_val(&task);
        let spawned = then(task, move || tx.send(0).unwrap());
        assert!(
            std::mem::size_of_val(&spawned) < alone + 64,
            "{} bytes for a future of {alone}",
            std::mem::size_of_val(&spawned)
        );
        spawned.await;
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [7, 0]);
    }
}
