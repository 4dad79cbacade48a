//! One client connection: hyper's HTTP/1.1 server around the router, with the header-read
//! and idle timeouts enforced by a watchdog, and the drain/abort signals obeyed.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for its
//! next request, so it cannot give a short header timeout and a longer idle one. Here the
//! socket records when the first byte of a request head arrives, the service records when a
//! request starts and when its response is done, and the connection task closes the
//! connection when either bound is passed with no request in flight.
//!
//! Nothing wakes the watchdog per request: its timer is armed no later than any bound can
//! fall (a head that starts later ends later), fires early at worst, and is armed again
//! from what it then finds. A request costs the watchdog no wake-up, no new timer and
//! no second poll of the connection's task.
//!
//! The connection also ends when the accept loop evicts it ([`Connection`], at the cap),
//! and hyper's own bodiless answer to a request it cannot parse (400, 414, 431) is
//! replaced, as it is written, by the service's JSON error with an `X-Request-Id`
//! (`reject.rs`): hyper offers no hook for that answer, but it is the only response written
//! with no request in flight that lacks the router's `X-Request-Id`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Stack;
use super::evict::Connection;
use super::reject;
use super::stats::{ConnectionStats, TimedOut};
use super::woken::PolledWhenWoken;
use super::{Limits, Phase};

/// Serves one connection until it ends, times out, or the server aborts it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    connection: Connection,
    stack: Stack,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    mut phase: watch::Receiver<Phase>,
    mut pressure: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        remote,
        stats: stats.clone(),
        replacement: None,
    });
    let service = {
        let activity = activity.clone();
        let connection = connection.clone();
        // One stack per connection, called in place: hyper serves a connection's requests
        // one at a time, so the lock is never contended, and a request costs no clone of
        // the stack (a boxed copy of every layer).
        let stack = Mutex::new(stack);
        hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            let in_flight = InFlight::begin(activity.clone());
            let from_hyper = std::mem::take(request.extensions_mut());
            *request.extensions_mut() = request_extensions(remote, &connection, from_hyper);
            let response = stack
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .call_now(request.map(axum::body::Body::new));
            // The stack's future is boxed already (freed once the response head is
            // ready), so the slot hyper keeps for the service's future for the whole
            // connection holds a pointer, not the layers' futures.
            async move {
                let response = match response.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    inner: body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The watchdog below does what hyper's header timer would; hyper's runs only with a timer.
    builder.keep_alive(true).header_read_timeout(None);
    // Unpin, so polled in place: pinning it on the task (`tokio::pin!`) moved it into a
    // second slot of this future, and the task kept both (about 740 bytes a connection).
    let mut conn = builder.serve_connection(io, service);

    let mut draining = false;
    let mut phase_open = true;
    let mut pressure_open = true;
    if *phase.borrow_and_update() != Phase::Serving {
        return;
    }
    loop {
        let pressed = *pressure.borrow_and_update();
        let deadline = activity.deadline(&limits, pressed);
        // The signals are polled only when one of them has woken the task, not on every
        // wake-up of the connection (`woken.rs`); the connection goes first.
        let signal = PolledWhenWoken::new(next_signal(
            &mut phase,
            phase_open,
            &connection,
            &mut pressure,
            pressure_open,
            deadline,
        ));
        let signal = tokio::select! {
            biased;
            result = &mut conn => {
                if let Err(err) = result {
                    tracing::debug!(%remote, error = %err, "connection ended with an error");
                }
                return;
            }
            signal = signal => signal,
        };
        match signal {
            Signal::Phase { open: false } => phase_open = false,
            Signal::Phase { open: true } => match *phase.borrow_and_update() {
                Phase::Serving => {}
                Phase::Draining => {
                    if !draining {
                        draining = true;
                        Pin::new(&mut conn).graceful_shutdown();
                    }
                }
                // Dropping `conn` drops the request futures: queries are cancelled.
                Phase::Aborting => return,
            },
            // At the cap, this connection's long anonymous request was chosen to make room.
            Signal::Evicted => {
                tracing::debug!(%remote, "closing a long anonymous request at the connection cap");
                return;
            }
            // At the cap, the deadlines shorten: look again.
            Signal::Pressure { open } => pressure_open = open,
            Signal::Deadline => {
                if let Some(reason) = activity.expired(&limits, Instant::now(), pressed) {
                    stats.on_timeout(reason);
                    tracing::debug!(%remote, ?reason, "closing a connection that timed out");
                    return;
                }
            }
        }
    }
}

/// What woke a connection's watchdog, besides the connection itself.
enum Signal {
    /// The server's phase changed (`open: false`: its sender is gone, no more changes).
    Phase { open: bool },
    /// The accept loop chose this connection to make room at the cap.
    Evicted,
    /// The cap's pressure changed (`open: false`: no more changes).
    Pressure { open: bool },
    /// The watchdog's timer: look at the bounds again.
    Deadline,
}

/// The next [`Signal`]; a closed channel is not waited on again.
async fn next_signal(
    phase: &mut watch::Receiver<Phase>,
    phase_open: bool,
    connection: &Connection,
    pressure: &mut watch::Receiver<bool>,
    pressure_open: bool,
    deadline: Instant,
) -> Signal {
    tokio::select! {
        changed = phase.changed(), if phase_open => Signal::Phase { open: changed.is_ok() },
        () = connection.evicted() => Signal::Evicted,
        changed = pressure.changed(), if pressure_open => Signal::Pressure { open: changed.is_ok() },
        () = tokio::time::sleep_until(deadline) => Signal::Deadline,
    }
}

/// A request's extensions: the client's address ([`ConnectInfo`]) and the [`Connection`]
/// (for the bulkheads), then hyper's, in a map with room for all a request collects on its
/// way (hyper's, the router's, the route's), so that it is allocated once at its final size
/// instead of growing from hyper's small map, twice, with every entry hashed again. The
/// room comes from cloning an empty map of that size shared by every connection: a map per
/// connection to clone from would stay allocated for the connection's whole life (640 bytes
/// with its two boxed values, for every open event stream).
fn request_extensions(
    remote: SocketAddr,
    connection: &Connection,
    from_hyper: http::Extensions,
) -> http::Extensions {
    /// Stand-ins that grow the map to its final size; removed again (a map keeps its size).
    #[derive(Clone, Copy)]
    struct Room<const N: usize>;
    static ROOMY: std::sync::LazyLock<http::Extensions> = std::sync::LazyLock::new(|| {
        let mut extensions = http::Extensions::new();
        // Eight entries make a map of sixteen slots (fourteen usable).
        extensions.insert(Room::<0>);
        extensions.insert(Room::<1>);
        extensions.insert(Room::<2>);
        extensions.insert(Room::<3>);
        extensions.insert(Room::<4>);
        extensions.insert(Room::<5>);
        extensions.insert(Room::<6>);
        extensions.insert(Room::<7>);
        extensions.remove::<Room<0>>();
        extensions.remove::<Room<1>>();
        extensions.remove::<Room<2>>();
        extensions.remove::<Room<3>>();
        extensions.remove::<Room<4>>();
        extensions.remove::<Room<5>>();
        extensions.remove::<Room<6>>();
        extensions.remove::<Room<7>>();
        extensions
    });
    let mut extensions = ROOMY.clone();
    extensions.insert(ConnectInfo(remote));
    extensions.insert(connection.clone());
    extensions.extend(from_hyper);
    extensions
}

/// The header and idle timeouts while the server is at its connection cap: a client that
/// is not trickling sends its head in one packet, well within this.
pub(crate) const PRESSED_TIMEOUT: Duration = Duration::from_secs(1);

/// What the watchdog knows about a connection.
#[derive(Debug)]
struct Activity {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Requests whose responses are not finished.
    in_flight: usize,
    /// When the connection last became free of requests (or was opened).
    idle_since: Instant,
    /// When the first byte arrived since then: a request head is being read.
    head_started: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                head_started: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether no request is in flight: a response head written now is hyper's own.
    fn is_between_requests(&self) -> bool {
        self.lock().in_flight == 0
    }

    fn on_read(&self) {
        let mut state = self.lock();
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
        }
    }

    /// The two bounds, shortened while the server is at its connection cap (`pressed`):
    /// both become at most [`PRESSED_TIMEOUT`] (HTTP/1.1 allows closing an idle keep-alive
    /// connection at any time; a second spares a client sending its next request at once).
    fn bounds(limits: &Limits, pressed: bool) -> (Duration, Duration) {
        if pressed {
            (
                limits.header_read_timeout.min(PRESSED_TIMEOUT),
                limits.idle_timeout.min(PRESSED_TIMEOUT),
            )
        } else {
            (limits.header_read_timeout, limits.idle_timeout)
        }
    }

    /// When to look again: no later than any bound that can fall before then. A head that
    /// starts from now on is bounded no sooner than `header` from now, and a connection
    /// that goes idle no sooner than `idle` from now, so the watchdog looks again at the
    /// soonest of those and of the bounds already running — early at worst, never late —
    /// and nothing has to wake it when a head starts.
    fn deadline(&self, limits: &Limits, pressed: bool) -> Instant {
        let (header, idle) = Self::bounds(limits, pressed);
        let now = Instant::now();
        let state = self.lock();
        if state.in_flight > 0 {
            // Requests are bounded by the request timeout, not here; once this one ends,
            // neither bound can fall sooner than this.
            return now + header.min(idle);
        }
        match state.head_started {
            Some(started) => started + header,
            None => (state.idle_since + idle).min(now + header),
        }
    }

    /// Whether the connection has passed one of its bounds at `now`.
    fn expired(&self, limits: &Limits, now: Instant, pressed: bool) -> Option<TimedOut> {
        let (header, idle) = Self::bounds(limits, pressed);
        let state = self.lock();
        if state.in_flight > 0 {
            return None;
        }
        match state.head_started {
            Some(started) if now >= started + header => Some(TimedOut::Header),
            Some(_) => None,
            None if now >= state.idle_since + idle => Some(TimedOut::Idle),
            None => None,
        }
    }
}

/// A request in flight on its connection, from its head to the end of its response.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
        {
            let mut state = activity.lock();
            state.in_flight += 1;
            state.head_started = None;
        }
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
            state.head_started = None;
        }
    }
}

pin_project! {
    /// The response body, holding its request's [`InFlight`] until hyper is done with it.
    struct Tracked<B> {
        #[pin]
        inner: B,
        _in_flight: InFlight,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The socket, noting when bytes arrive, and replacing hyper's own error answer.
    struct Watched {
        #[pin]
        inner: TcpStream,
        activity: Arc<Activity>,
        remote: SocketAddr,
        stats: Arc<ConnectionStats>,
        // Set once hyper wrote its bare 400/414/431: our answer and how much of it is
        // written. From then on, whatever hyper writes is dropped (it closes next).
        replacement: Option<Replacement>,
    }
}

/// The service's answer in place of hyper's, being written.
#[derive(Debug)]
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
}

impl Watched {
    /// Looks at what hyper writes: its own error answer starts a [`Replacement`].
    fn intercept(self: Pin<&mut Self>, written: &[u8]) {
        let this = self.project();
        if this.replacement.is_some() {
            return;
        }
        // The byte compares first: most writes fail them, and need no lock.
        if let Some(status) = reject::hyper_error_status(written)
            && this.activity.is_between_requests()
        {
            let (bytes, request_id) = reject::parse_error(status);
            this.stats.on_malformed();
            tracing::info!(
                remote = %this.remote,
                status = status.as_u16(),
                %request_id,
                "refused a request that could not be parsed"
            );
            *this.replacement = Some(Replacement { bytes, written: 0 });
        }
    }

    /// Writes the rest of the replacement, if any: `Ready(Ok(true))` once it is all
    /// written (hyper's bytes are then dropped), `Ready(Ok(false))` when there is none.
    fn poll_replacement(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut this = self.project();
        let Some(replacement) = this.replacement.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        while replacement.written < replacement.bytes.len() {
            let rest = &replacement.bytes[replacement.written..];
            match this.inner.as_mut().poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => replacement.written += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(true))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.on_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.as_mut().intercept(buf);
        match self.as_mut().poll_replacement(cx) {
            Poll::Ready(Ok(false)) => self.project().inner.poll_write(cx, buf),
            Poll::Ready(Ok(true)) => Poll::Ready(Ok(buf.len())),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut written = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(first), None) = (written.next(), written.next()) {
            self.as_mut().intercept(first);
        }
        match self.as_mut().poll_replacement(cx) {
            Poll::Ready(Ok(false)) => self.project().inner.poll_write_vectored(cx, bufs),
            Poll::Ready(Ok(true)) => Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum())),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(err) = std::task::ready!(self.as_mut().poll_replacement(cx)) {
            return Poll::Ready(Err(err));
        }
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(err) = std::task::ready!(self.as_mut().poll_replacement(cx)) {
            return Poll::Ready(Err(err));
        }
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            max_connections: 10,
            max_connections_per_address: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_idle_connections_and_heads_get_a_second() {
        let long = Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10,
            max_connections_per_address: 0,
        };
        let activity = Arc::new(Activity::new());
        let now = Instant::now();
        let later = now + PRESSED_TIMEOUT;
        assert_eq!(activity.expired(&long, later, false), None);
        assert_eq!(activity.expired(&long, later, true), Some(TimedOut::Idle));
        activity.on_read();
        assert_eq!(activity.deadline(&long, true), now + PRESSED_TIMEOUT);
        assert_eq!(
            activity.expired(&long, now + PRESSED_TIMEOUT, true),
            Some(TimedOut::Header)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_head_is_bounded_by_the_header_timeout() {
        let activity = Arc::new(Activity::new());
        let start = Instant::now();
        // Idle for 5 s at most, but a head starting now would be bounded at 1 s: the
        // watchdog looks then (nothing wakes it when a head starts).
        assert_eq!(
            activity.deadline(&limits(), false),
            start + Duration::from_secs(1)
        );
        assert_eq!(
            activity.expired(&limits(), start + Duration::from_secs(1), false),
            None
        );
        activity.on_read();
        assert_eq!(
            activity.deadline(&limits(), false),
            start + Duration::from_secs(1)
        );
        assert_eq!(
            activity.expired(&limits(), start + Duration::from_secs(1), false),
            Some(TimedOut::Header)
        );
        let request = InFlight::begin(activity.clone());
        assert_eq!(
            activity.expired(&limits(), start + Duration::from_secs(60), true),
            None,
            "a request in flight is never cut"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(request);
        let done = Instant::now();
        assert_eq!(
            activity.deadline(&limits(), false),
            done + Duration::from_secs(1)
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            activity.deadline(&limits(), false),
            done + Duration::from_secs(5),
            "never later than the idle bound"
        );
        assert_eq!(
            activity.expired(&limits(), done + Duration::from_secs(5), false),
            Some(TimedOut::Idle)
        );
    }
}
