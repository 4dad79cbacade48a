//! Sending a cancel request, and knowing it has landed: [`cancel_and_confirm`] to the
//! [`CancelTarget`] of a [`Db`](crate::db::Db), which also counts the cancels sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{CancelToken, NoTls};

use super::SETTLE_TIMEOUT;
use crate::db::DbError;
use crate::db::connect::Tls;
use crate::db::pooler::{NoShutdown, NoShutdownTls};

/// The cancels a [`Db`](crate::db::Db) sent (with its standbys' pools), for `/metrics`.
/// Cheap to clone; clones count together.
#[derive(Debug, Clone, Default)]
pub(crate) struct CancelCount(Arc<AtomicU64>);

impl CancelCount {
    /// Counts one cancel sent.
    pub(crate) fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Cancels sent so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where to send cancel requests: the server the pool connects to, over the same TLS as
/// the pool's connections (a cancel sent in clear text to a TLS-only server is refused).
#[derive(Clone)]
pub(crate) struct CancelTarget {
    addr: Option<Addr>,
    tls: Tls,
    /// Every cancel sent to this server is counted here.
    pub(crate) sent: CancelCount,
    /// The failover signs seen on this pool's connections (its statements and shared
    /// connections report here; see [`crate::db::failover`]).
    pub(crate) failover: std::sync::Arc<crate::db::failover::Marks>,
}

#[derive(Debug, Clone)]
enum Addr {
    /// Connect to `addr` (the `hostaddr`, or else the host), check the certificate for `host`.
    Tcp {
        host: String,
        addr: String,
        port: u16,
    },
    Unix(std::path::PathBuf),
}

impl CancelTarget {
    /// The first host of a connection configuration; cancels counted in `sent`.
    pub(crate) fn of(config: &tokio_postgres::Config, tls: Tls, sent: CancelCount) -> Self {
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let addr = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => Some(Addr::Tcp {
                host: host.clone(),
                addr: config
                    .get_hostaddrs()
                    .first()
                    .map_or_else(|| host.clone(), ToString::to_string),
                port,
            }),
            Some(tokio_postgres::config::Host::Unix(dir)) => {
                Some(Addr::Unix(dir.join(format!(".s.PGSQL.{port}"))))
            }
            None => None,
        };
        Self {
            addr,
            tls,
            sent,
            failover: Default::default(),
        }
    }
}

impl std::fmt::Debug for CancelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelTarget")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Sends a cancel request and waits until Postgres has acted on it.
///
/// `CancelToken::cancel_query` returns once the request is *written*; the server signals
/// the backend a moment later. A connection reused in that moment would have its *next*
/// query cancelled. Postgres closes the cancel connection only after signalling the
/// backend, so reading to end-of-stream on a connection of our own closes that window.
/// The request goes over TLS when the pool's connections do (the token carries their
/// `sslmode`); the socket is [lent](Lent) to the TLS stream and handed back for that read.
pub(crate) async fn cancel_and_confirm(
    token: &CancelToken,
    server: &CancelTarget,
) -> Result<(), DbError> {
    use tokio::io::AsyncReadExt;

    async fn to_eof(stream: &mut (impl tokio::io::AsyncRead + Unpin)) {
        let mut buf = [0u8; 64];
        let drain = async {
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(SETTLE_TIMEOUT, drain).await;
    }

    match &server.addr {
        Some(Addr::Tcp { host, addr, port }) => {
            let stream = tokio::net::TcpStream::connect((addr.as_str(), *port))
                .await
                .map_err(|err| DbError::Unavailable(format!("cancel: {err}")))?;
            let mut tls = server.tls.clone();
            let connector =
                <Tls as MakeTlsConnect<Lent<NoShutdown<tokio::net::TcpStream>>>>::make_tls_connect(
                    &mut tls, host,
                )
                .map_err(|err| DbError::Unavailable(format!("cancel: {err}")))?;
            // Neither the TLS session nor the socket is shut down after the request (see
            // `NoShutdown`: PgBouncer would drop the cancel); the server closes.
            let (lent, back) = Lent::new(NoShutdown(stream));
            token
                .cancel_query_raw(lent, NoShutdownTls(connector))
                .await?;
            if let Ok(mut stream) = back.await {
                to_eof(&mut stream).await;
            }
        }
        // Postgres offers no TLS on Unix sockets.
        Some(Addr::Unix(path)) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|err| DbError::Unavailable(format!("cancel: {err}")))?;
            let mut stream = NoShutdown(stream);
            token.cancel_query_raw(&mut stream, NoTls).await?;
            to_eof(&mut stream).await;
        }
        None => token.cancel_query(server.tls.clone()).await?,
    }
    Ok(())
}

/// A stream lent to a call that takes it by value (a TLS connector needs `'static`) and
/// handed back when that call drops it, so the caller can read on after.
struct Lent<S> {
    stream: Option<S>,
    back: Option<tokio::sync::oneshot::Sender<S>>,
}

impl<S> Lent<S> {
    fn new(stream: S) -> (Self, tokio::sync::oneshot::Receiver<S>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lent = Self {
            stream: Some(stream),
            back: Some(tx),
        };
        (lent, rx)
    }

    fn get(&mut self) -> std::pin::Pin<&mut S>
    where
        S: Unpin,
    {
        std::pin::Pin::new(self.stream.as_mut().expect("taken only in Drop"))
    }
}

impl<S> Drop for Lent<S> {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            let _ = back.send(stream);
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Lent<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.get().poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Lent<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.get().poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.get().poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.get().poll_shutdown(cx)
    }
}
