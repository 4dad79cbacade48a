//! One runtime per core (`RUNTIME=percore`): a thread per core, each with a current-thread
//! tokio runtime serving its own [`Server`] — its own [`Stack`] over its own [`Db`] (one shared
//! connection, its share of the pool) — so that a request, its statements and its response
//! stay on one core, with no cross-thread wake-up between them.
//!
//! Every core accepts on the one listening socket (bound by the process, or passed in
//! `LISTEN_FDS`): the kernel hands each connection to whichever core's `accept` comes
//! first, which favours the core that is free. What stays the process's: the connection
//! counters (one [`ConnectionStats`]), the connection cap (each core gets its share of
//! `MAX_CONNECTIONS`), the stop signal (every core drains on it, within the one grace
//! period), and everything the caller's states share (settings, `/metrics`, the event feed).
//!
//! ```no_run
//! # async fn run(stacks: Vec<(pgbridge::server::Stack, pgbridge::db::Db)>) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use pgbridge::server::{ConnectionStats, Limits, PerCore};
//!
//! let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
//! let limits = Limits {
//!     header_read_timeout: Duration::from_secs(10),
//!     idle_timeout: Duration::from_secs(60),
//!     max_connections: 10_000,
//!     max_connections_per_address: 256,
//! };
//! let per_core = PerCore::new(listener, stacks, limits, Arc::new(ConnectionStats::default()));
//! let stopped = per_core
//!     .run(async { let _ = tokio::signal::ctrl_c().await; }, Duration::from_secs(30))
//!     .await?;
//! println!("{stopped:?}");
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{ConnectionStats, Limits, Server, Stack, Stopped};
use crate::db::Db;
use crate::keyed_limit::KeyedLimit;

/// How long, after the grace period, cancels of dropped queries get to land.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// The service's thread layout, from `RUNTIME`: `multi` (the default: one multi-threaded
/// runtime) or `percore` (one current-thread runtime per core).
///
/// ```
/// use pgbridge::server::Runtime;
///
/// assert_eq!(Runtime::parse(None), Ok(Runtime::Multi));
/// assert_eq!(Runtime::parse(Some("percore")), Ok(Runtime::PerCore));
/// assert!(Runtime::parse(Some("fast")).unwrap_err().contains("RUNTIME"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// One multi-threaded tokio runtime for everything.
    Multi,
    /// One current-thread runtime per core, each serving its own connections.
    PerCore,
}

impl Runtime {
    /// Reads the `RUNTIME` value (unset or empty: [`Runtime::Multi`]); the error names the
    /// setting and the values it takes.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("" | "multi") => Ok(Self::Multi),
            Some("percore") => Ok(Self::PerCore),
            Some(other) => Err(format!(
                "RUNTIME={other:?} is not a runtime: use \"multi\" (the default) or \"percore\""
            )),
        }
    }

    /// The number of cores to serve on: the available parallelism.
    ///
    /// ```
    /// assert!(pgbridge::server::Runtime::cores() >= 1);
    /// ```
    pub fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// The servers of [`Runtime::PerCore`]: one per router, each on its own thread.
#[derive(Debug)]
pub struct PerCore {
    listener: std::net::TcpListener,
    cores: Vec<(Stack, Db)>,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    drain_delay: Duration,
}

impl PerCore {
    /// A server per `(stack, db)` pair, all accepting on `listener`. `db` is the one the
    /// stack's requests use: after an aborted drain, its cancels get time to land.
    pub fn new(
        listener: std::net::TcpListener,
        cores: Vec<(Stack, Db)>,
        limits: Limits,
        stats: Arc<ConnectionStats>,
    ) -> Self {
        Self {
            listener,
            cores,
            limits,
            stats,
            drain_delay: Duration::ZERO,
        }
    }

    /// As [`Server::drain_delay`], on every core.
    #[must_use]
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// Serves until `signal` resolves (or a core stops on its own, which stops the rest),
    /// then drains every core as [`Server::run`] does, within `grace`. `Drained` when every
    /// core drained; else `Aborted` with the connections dropped on all cores. Fails if a
    /// core's thread or runtime cannot start, or a core ended before the signal.
    pub async fn run(
        self,
        signal: impl Future<Output = ()>,
        grace: Duration,
    ) -> io::Result<Stopped> {
        let Self {
            listener,
            cores,
            mut limits,
            stats,
            drain_delay,
        } = self;
        let n = cores.len().max(1);
        stats.count_by_core(n);
        limits.max_connections = limits.max_connections.div_ceil(n).max(1);
        // One count per client address for the process, not one per core.
        let per_address = KeyedLimit::new(limits.max_connections_per_address);
        listener.set_nonblocking(true)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (exit_tx, mut exit_rx) = mpsc::unbounded_channel::<usize>();
        let mut threads = Vec::with_capacity(n);
        for (core, (stack, db)) in cores.into_iter().enumerate() {
            let listener = listener.try_clone()?;
            let server = CoreServer {
                core,
                per_address: per_address.clone(),
                limits: limits.clone(),
                stats: stats.clone(),
                drain_delay,
                grace,
                stop: stop_rx.clone(),
            };
            let exited = Exited(exit_tx.clone(), core);
            let thread = std::thread::Builder::new()
                .name(format!("pgbridge-core-{core}"))
                .spawn(move || {
                    let _exited = exited;
                    server.serve(listener, stack, db)
                });
            match thread {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    let _ = stop_tx.send(true);
                    join(threads).await;
                    return Err(err);
                }
            }
        }
        drop(exit_tx);
        drop(listener);
        tracing::info!(
            cores = n,
            max_connections_per_core = limits.max_connections,
            "serving with one runtime per core"
        );
        let early = tokio::select! {
            () = signal => None,
            core = exit_rx.recv() => core,
        };
        let _ = stop_tx.send(true);
        let results = join(threads).await;
        if let Some(core) = early {
            return Err(io::Error::other(format!(
                "core {core}'s server stopped on its own; the others were stopped too"
            )));
        }
        let mut open = 0;
        let mut aborted = false;
        for result in results {
            match result? {
                Stopped::Drained => {}
                Stopped::Aborted { open: n } => {
                    aborted = true;
                    open += n;
                }
            }
        }
        Ok(if aborted {
            Stopped::Aborted { open }
        } else {
            Stopped::Drained
        })
    }
}

/// What one core's thread needs besides its socket, stack and database.
struct CoreServer {
    core: usize,
    per_address: KeyedLimit<IpAddr>,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    drain_delay: Duration,
    grace: Duration,
    stop: watch::Receiver<bool>,
}

impl CoreServer {
    /// Runs on the core's own thread until the stop signal and the drain are over.
    fn serve(self, listener: std::net::TcpListener, stack: Stack, db: Db) -> io::Result<Stopped> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let mut stop = self.stop;
            let signal = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            let stopped = Server::new(listener, stack, self.limits, self.stats)
                .per_address(self.per_address)
                .on_core(self.core)
                .drain_delay(self.drain_delay)
                .run(signal, self.grace)
                .await;
            if let Stopped::Aborted { .. } = stopped {
                // The dropped requests spawned cancels on this runtime: let them land first.
                settle(&db, CANCEL_WAIT).await;
            }
            Ok(stopped)
        })
    }
}

/// Tells the process that a core's thread ended, however it ended (a panic included).
struct Exited(mpsc::UnboundedSender<usize>, usize);

impl Drop for Exited {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

/// Waits for the threads without blocking the caller's runtime; a panicked core is an error.
async fn join(
    threads: Vec<std::thread::JoinHandle<io::Result<Stopped>>>,
) -> Vec<io::Result<Stopped>> {
    let mut results = Vec::with_capacity(threads.len());
    for thread in threads {
        let result = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(io::Error::other)
            .and_then(|joined| {
                joined.unwrap_or_else(|_| Err(io::Error::other("a core's thread panicked")))
            });
        results.push(result);
    }
    results
}

/// Waits (at most `within`) until every pooled connection of `db` is back and idle: a
/// connection whose query was cancelled on drop returns only once the cancel has landed.
///
/// ```no_run
/// # async fn demo(db: pgbridge::db::Db) {
/// pgbridge::server::settle(&db, std::time::Duration::from_secs(2)).await;
/// # }
/// ```
pub async fn settle(db: &Db, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status = db.status();
        if status.available >= status.size {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                busy = status.size - status.available,
                "queries may still be running in Postgres"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
