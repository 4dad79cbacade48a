//! [`Conn`]: a pooled connection whose queries are cancelled on the server when the future
//! awaiting them is dropped.
//!
//! Plain axum + deadpool leaves such a query running: the client hung up, the handler's
//! future was dropped, but Postgres goes on working for no one, holding locks and a
//! backend. Here a dropped query future sends Postgres a cancel request with the
//! connection's `CancelToken`, and the connection returns to the pool only after a round
//! trip shows it idle and outside any transaction — so a late cancel can never hit the next
//! borrower's query.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Object;
use tokio::task::JoinHandle;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{CancelToken, NoTls, Row, Statement};

use super::connect::Tls;
use super::pooler::{self, NoShutdown, NoShutdownTls, StatementTypes};
use super::{DbError, Params};

/// Cancels sent for abandoned queries, process-wide, for `/metrics`.
static CANCELS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many queries this process has cancelled on the server because the future awaiting
/// them was dropped.
pub fn cancels_sent() -> u64 {
    CANCELS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts one cancel sent (the shared path's too).
pub(super) fn count_cancel() {
    CANCELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How long the clean-up after a cancel may take before the connection is thrown away.
pub(super) const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection from the [`Db`](super::Db) pool, with cancel-on-drop queries.
///
/// Statements go through `prepare_cached`, so each is parsed once per connection.
/// Independent queries awaited together (e.g. with `tokio::try_join!`) are pipelined
/// by tokio-postgres on this one connection.
///
/// ```no_run
/// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
/// let conn = db.conn().await?;
/// // Two queries in flight at once on one connection: one round trip's wait, not two.
/// let (a, b) = tokio::try_join!(
///     conn.query_one("SELECT 1::int", &[]),
///     conn.query_one("SELECT 2::int", &[]),
/// )?;
/// assert_eq!((a.get::<_, i32>(0), b.get::<_, i32>(0)), (1, 2));
/// # Ok(()) }
/// ```
pub struct Conn {
    client: Option<Object>,
    cancel: Arc<Canceller>,
    /// Set in `DB_POOL_MODE=transaction`: statements run unnamed, timed by the client.
    unnamed: Option<Arc<StatementTypes>>,
    /// Inside a transaction opened on the raw client (a [`Scoped`](super::Scoped)): an
    /// unnamed statement's types are then learnt in that transaction, not in one of their own.
    in_tx: bool,
}

/// Where to send cancel requests: the server the pool connects to, over the same TLS as
/// the pool's connections (a cancel sent in clear text to a TLS-only server is refused).
#[derive(Clone)]
pub(crate) struct ServerAddr {
    addr: Option<Addr>,
    tls: Tls,
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

impl ServerAddr {
    /// The first host of a connection configuration.
    pub(crate) fn of(config: &tokio_postgres::Config, tls: Tls) -> Self {
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
        Self { addr, tls }
    }
}

impl std::fmt::Debug for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAddr")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Conn {
    pub(super) fn new(
        client: Object,
        server: Option<Arc<ServerAddr>>,
        unnamed: Option<Arc<StatementTypes>>,
    ) -> Self {
        let cancel = Arc::new(Canceller {
            token: client.cancel_token(),
            server,
            pending: Mutex::new(None),
        });
        Self {
            client: Some(client),
            cancel,
            unnamed,
            in_tx: false,
        }
    }

    /// Marks the connection as inside (or outside) a transaction its owner opened with
    /// `BEGIN` on the raw client.
    pub(super) fn set_in_transaction(&mut self, in_tx: bool) {
        self.in_tx = in_tx;
    }

    /// Transaction-pooler mode: `sql` unnamed in one round trip, under the client-side
    /// statement timeout. Rows, and the number of rows changed.
    async fn unnamed<T: pooler::Shape>(
        &self,
        types: &StatementTypes,
        sql: &str,
        params: Params<'_>,
    ) -> Result<T, DbError> {
        let client: &tokio_postgres::Client = self.client();
        let work = async {
            let param_types = if self.in_tx {
                types.in_tx(client, sql).await?
            } else {
                types.outside_tx(client, sql).await?
            };
            T::run(client, sql, pooler::typed(params, &param_types)).await
        };
        let guarded = self.guarded(work);
        self.cancel.timed(types.statement_timeout, guarded).await
    }

    /// Runs `sql` (prepared once per connection) and returns its rows.
    pub async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        if let Some(types) = &self.unnamed {
            return self.unnamed(types, sql, params).await;
        }
        let statement = self.prepare(sql).await?;
        self.guarded(self.client().query(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// Runs `sql` and returns its one row; no row, or several, is an error.
    pub async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, DbError> {
        if let Some(types) = &self.unnamed {
            return self.unnamed(types, sql, params).await;
        }
        let statement = self.prepare(sql).await?;
        self.guarded(self.client().query_one(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// Runs `sql` and returns its row, if any.
    pub async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
        if let Some(types) = &self.unnamed {
            return self.unnamed(types, sql, params).await;
        }
        let statement = self.prepare(sql).await?;
        self.guarded(self.client().query_opt(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// Runs `sql` and returns the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        if let Some(types) = &self.unnamed {
            return self.unnamed(types, sql, params).await;
        }
        let statement = self.prepare(sql).await?;
        self.guarded(self.client().execute(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// `sql`, prepared once per connection and cached. The statement is named: with
    /// `DB_POOL_MODE=transaction` it is valid only inside one transaction ([`Tx`]); the
    /// `query*`/`execute` helpers above run unnamed statements in that mode instead.
    pub async fn prepare(&self, sql: &str) -> Result<Statement, DbError> {
        self.guarded(self.client().prepare_cached(sql))
            .await
            .map_err(Into::into)
    }

    /// Starts a transaction. Its queries are cancelled on drop like the connection's; a
    /// transaction dropped before [`Tx::commit`] rolls back.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
    /// let mut conn = db.conn().await?;
    /// let tx = conn.transaction().await?;
    /// tx.execute("UPDATE notes SET title = 'a' WHERE id = $1", &[&1_i64]).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction(&mut self) -> Result<Tx<'_>, DbError> {
        let cancel = self.cancel.clone();
        cancel.settle(self.client()).await;
        let client = self
            .client
            .as_mut()
            .expect("the client is only taken out in Drop");
        let tx = cancel.guarded(client.transaction()).await?;
        Ok(Tx {
            tx,
            cancel,
            unnamed: self.unnamed.clone(),
        })
    }

    /// Runs any future that uses this connection (a `COPY`, a raw client call) with the
    /// same guarantee as [`query`](Self::query): dropped before it completes, it cancels
    /// what it started on the server.
    pub async fn guarded<F: Future>(&self, work: F) -> F::Output {
        self.cancel.settle(self.client()).await;
        self.cancel.guarded(work).await
    }

    /// The underlying client, for what the helpers above do not cover. Queries issued on it
    /// directly are not cancelled on drop unless wrapped in [`guarded`](Self::guarded).
    pub fn client(&self) -> &deadpool_postgres::ClientWrapper {
        self.client
            .as_ref()
            .expect("the client is only taken out in Drop")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let pending = self.cancel.take_pending();
        let (Some(handle), Some(client)) = (pending, self.client.take()) else {
            return; // nothing abandoned: the connection goes straight back to the pool
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(Object::take(client)); // no runtime to settle on: close it instead
            return;
        };
        // Keep the connection out of the pool until the cancel has landed and the
        // connection answers, outside any transaction; if it does not, close it.
        runtime.spawn(async move {
            let _ = handle.await;
            let settled = tokio::time::timeout(SETTLE_TIMEOUT, outside_transaction(&client)).await;
            if !matches!(settled, Ok(Ok(()))) {
                tracing::warn!("connection did not settle after a cancel; closing it");
                drop(Object::take(client));
            }
        });
    }
}

/// Makes sure the connection answers and is outside any transaction, without the
/// `WARNING: there is no transaction in progress` a bare `ROLLBACK` logs when it is (the
/// usual case: a dropped `Tx` has already queued its own `ROLLBACK`). Outside a
/// transaction, `now()` (its start) equals `statement_timestamp()`; inside one it does not,
/// and in an aborted one the `SELECT` fails: either way a `ROLLBACK` then has a transaction
/// to end.
async fn outside_transaction(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    let idle = match client
        .simple_query("SELECT now() = statement_timestamp()")
        .await
    {
        Ok(messages) => messages.iter().any(|message| {
            matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
        }),
        Err(err) if err.is_closed() => return Err(err),
        Err(_) => false,
    };
    if !idle {
        client.simple_query("ROLLBACK").await?;
    }
    Ok(())
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

/// A transaction on a [`Conn`], with cancel-on-drop queries.
pub struct Tx<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    cancel: Arc<Canceller>,
    unnamed: Option<Arc<StatementTypes>>,
}

impl Tx<'_> {
    /// Transaction-pooler mode: `sql` unnamed, under the client-side statement timeout.
    async fn unnamed<T: pooler::Shape>(
        &self,
        types: &StatementTypes,
        sql: &str,
        params: Params<'_>,
    ) -> Result<T, DbError> {
        let tx: &tokio_postgres::Transaction<'_> = &self.tx;
        let work = async {
            let param_types = types.in_tx(tx, sql).await?;
            T::run(tx, sql, pooler::typed(params, &param_types)).await
        };
        let guarded = self.cancel.guarded(work);
        self.cancel.timed(types.statement_timeout, guarded).await
    }

    /// Runs `sql` (prepared once per connection) and returns its rows.
    pub async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        if let Some(types) = &self.unnamed {
            return self.unnamed(types, sql, params).await;
        }
        let statement = self.prepare(sql).await?;
        self.cancel
            .guarded(self.tx.query(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// Runs `sql` and returns its one row.
    pub async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, DbError> {
        if let Some(types) = &self.unnamed {
            return self.unnamed(types, sql, params).await;
        }
        let statement = self.prepare(sql).await?;
        self.cancel
            .guarded(self.tx.query_one(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// Runs `sql` and returns its row, if any.
    pub async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
        if let Some(types) = &self.unnamed {
            return self.unnamed(types, sql, params).await;
        }
        let statement = self.prepare(sql).await?;
        self.cancel
            .guarded(self.tx.query_opt(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// Runs `sql` and returns the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        if let Some(types) = &self.unnamed {
            return self.unnamed(types, sql, params).await;
        }
        let statement = self.prepare(sql).await?;
        self.cancel
            .guarded(self.tx.execute(&statement, params))
            .await
            .map_err(Into::into)
    }

    /// `sql`, prepared once per connection and cached.
    pub async fn prepare(&self, sql: &str) -> Result<Statement, DbError> {
        self.cancel
            .guarded(self.tx.prepare_cached(sql))
            .await
            .map_err(Into::into)
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), DbError> {
        let cancel = self.cancel.clone();
        cancel.guarded(self.tx.commit()).await.map_err(Into::into)
    }
}

/// The connection's cancel token and the cancel in flight for a dropped query, if any.
struct Canceller {
    token: CancelToken,
    server: Option<Arc<ServerAddr>>,
    pending: Mutex<Option<JoinHandle<()>>>,
}

impl Canceller {
    async fn guarded<F: Future>(&self, work: F) -> F::Output {
        let mut guard = CancelOnDrop {
            canceller: self,
            armed: true,
        };
        let output = work.await;
        guard.armed = false;
        output
    }

    /// Waits until a cancel sent for an earlier, dropped query has reached the server, so
    /// it cannot land on the next query; then drains the cancelled query's answer.
    async fn settle(&self, client: &deadpool_postgres::ClientWrapper) {
        if let Some(handle) = self.take_pending() {
            let _ = handle.await;
            let _ = client.simple_query("").await;
        }
    }

    fn cancel_in_background(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut pending = self.lock();
        if pending.is_some() {
            // Pipelined queries dropped together: one cancel per backend is enough, and a
            // second one still in flight when the first is confirmed could hit the next
            // borrower's query.
            return;
        }
        CANCELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = self.token.clone();
        let server = self.server.clone();
        let handle = runtime.spawn(async move {
            match cancel_and_confirm(&token, server.as_deref()).await {
                Ok(()) => tracing::debug!("cancelled an abandoned query"),
                Err(err) => tracing::warn!(error = %err, "could not cancel an abandoned query"),
            }
        });
        *pending = Some(handle);
    }

    /// Client-side statement timeout (transaction-pooler mode): when `work` runs past
    /// `timeout`, a cancel is sent and `work` is awaited for the server's answer —
    /// normally `57014 query_canceled`, the same error a server-side `statement_timeout`
    /// gives. A server that does not answer within [`SETTLE_TIMEOUT`] makes it
    /// [`DbError::Unavailable`].
    async fn timed<T, F>(&self, timeout: Duration, work: F) -> Result<T, DbError>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        tokio::pin!(work);
        if let Ok(result) = tokio::time::timeout(timeout, &mut work).await {
            return result.map_err(Into::into);
        }
        self.cancel_in_background();
        match tokio::time::timeout(SETTLE_TIMEOUT, work).await {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err(DbError::Unavailable(format!(
                "a statement ran past the statement timeout ({timeout:?}) and did not answer its cancel"
            ))),
        }
    }

    fn take_pending(&self) -> Option<JoinHandle<()>> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
pub(super) async fn cancel_and_confirm(
    token: &CancelToken,
    server: Option<&ServerAddr>,
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

    match server.map(|server| (server.addr.as_ref(), server)) {
        Some((Some(Addr::Tcp { host, addr, port }), server)) => {
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
        Some((Some(Addr::Unix(path)), _)) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|err| DbError::Unavailable(format!("cancel: {err}")))?;
            let mut stream = NoShutdown(stream);
            token.cancel_query_raw(&mut stream, NoTls).await?;
            to_eof(&mut stream).await;
        }
        Some((None, server)) => token.cancel_query(server.tls.clone()).await?,
        None => token.cancel_query(NoTls).await?,
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

struct CancelOnDrop<'a> {
    canceller: &'a Canceller,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.canceller.cancel_in_background();
        }
    }
}
