//! [`Server`]: accept until a stop signal, then drain within a grace period, then abort.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::Stack;
use super::stats::ConnectionStats;
use super::{Limits, Phase, accept};
use crate::keyed_limit::KeyedLimit;

/// How long aborted connections get to drop their requests (and spawn their cancels).
const ABORT_WAIT: Duration = Duration::from_secs(2);

/// The server: a listener, the stack it serves, the limits, the counters.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    stack: Stack,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    drain_delay: Duration,
    per_address: KeyedLimit<IpAddr>,
    core: Option<usize>,
}

/// How [`Server::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the grace period.
    Drained,
    /// The grace period ended with `open` connections still open; they were dropped, and
    /// their in-flight requests with them.
    Aborted {
        /// Connections dropped.
        open: usize,
    },
}

impl Server {
    /// A server for `stack` (a [`Stack`], or an `axum::Router`) on `listener`.
    pub fn new(
        listener: TcpListener,
        stack: impl Into<Stack>,
        limits: Limits,
        stats: Arc<ConnectionStats>,
    ) -> Self {
        Self {
            per_address: KeyedLimit::new(limits.max_connections_per_address),
            listener,
            stack: stack.into(),
            limits,
            stats,
            drain_delay: Duration::ZERO,
            core: None,
        }
    }

    /// Counts connections per client address (`MAX_CONNECTIONS_PER_ADDRESS`) in `limit`
    /// instead of a count of this server's own, so that servers sharing one listening
    /// socket (`RUNTIME=percore`: one per core) hold an address to one limit in all.
    ///
    /// ```no_run
    /// # async fn demo(a: tokio::net::TcpListener, b: tokio::net::TcpListener, limits: pgbridge::server::Limits) {
    /// use std::sync::Arc;
    /// use pgbridge::keyed_limit::KeyedLimit;
    /// use pgbridge::server::{ConnectionStats, Server};
    ///
    /// let stats = Arc::new(ConnectionStats::default());
    /// let per_address = KeyedLimit::new(limits.max_connections_per_address);
    /// let first = Server::new(a, axum::Router::new(), limits.clone(), stats.clone())
    ///     .per_address(per_address.clone());
    /// let second = Server::new(b, axum::Router::new(), limits, stats).per_address(per_address);
    /// # let _ = (first, second);
    /// # }
    /// ```
    #[must_use]
    pub fn per_address(mut self, limit: KeyedLimit<IpAddr>) -> Self {
        self.per_address = limit;
        self
    }

    /// Counts this server's open connections as `core`'s in the [`ConnectionStats`] it shares
    /// with the other cores' servers (`/metrics`' `pgbridge_http_connections_open_per_core`);
    /// [`PerCore`](super::PerCore) numbers its servers so.
    #[must_use]
    pub(crate) fn on_core(mut self, core: usize) -> Self {
        self.core = Some(core);
        self
    }

    /// Keeps accepting for `delay` after the stop signal before the listener closes
    /// (`DRAIN_DELAY_MS`, see `src/drain.rs`): the signal future sets the application's
    /// draining flag, so during the delay responses carry `Connection: close` and a proxy
    /// stops choosing this replica while nothing it sends is refused at the socket.
    #[must_use]
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// Serves until `signal` resolves; then keeps serving for the [drain
    /// delay](Self::drain_delay), if any; then stops accepting, lets open connections finish
    /// (idle keep-alive connections close at once, in-flight requests run on) for up to
    /// `grace`, and drops whatever is left, which drops the request futures — the
    /// database layer cancels their queries on drop.
    pub async fn run(self, signal: impl Future<Output = ()>, grace: Duration) -> Stopped {
        let Self {
            listener,
            stack,
            limits,
            stats,
            drain_delay,
            per_address,
            core,
        } = self;
        let max = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX >> 3);
        let permits = Arc::new(Semaphore::new(max as usize));
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        let mut accepting = Box::pin(accept::run(
            listener,
            stack,
            limits,
            permits.clone(),
            stats,
            phase_rx,
            per_address,
            core,
        ));
        let signalled = tokio::select! {
            () = &mut accepting => false,
            () = signal => true,
        };
        if signalled && !drain_delay.is_zero() {
            tracing::info!(?drain_delay, "draining before closing the listener");
            tokio::select! {
                () = &mut accepting => {}
                () = tokio::time::sleep(drain_delay) => {}
            }
        }
        // The listener is dropped with `accepting`: new connections are refused from here.
        drop(accepting);
        let _ = phase_tx.send(Phase::Draining);
        if tokio::time::timeout(grace, permits.acquire_many(max))
            .await
            .is_ok()
        {
            return Stopped::Drained;
        }
        let open = max as usize - permits.available_permits();
        tracing::warn!(open, "grace period over; dropping the requests still open");
        let _ = phase_tx.send(Phase::Aborting);
        let _ = tokio::time::timeout(ABORT_WAIT, permits.acquire_many(max)).await;
        Stopped::Aborted { open }
    }
}
