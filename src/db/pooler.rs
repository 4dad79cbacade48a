//! Working through a transaction pooler (PgBouncer `pool_mode = transaction`).
//!
//! Behind such a pooler, a client connection is lent a server connection only for one
//! transaction (or one statement outside a transaction). Three things the pool does by
//! default then break, and [`PoolMode::Transaction`] changes them:
//!
//! - **Startup `options`.** PgBouncer refuses them ("unsupported startup parameter:
//!   options") unless told to ignore them, and would not forward them anyway. So the pool
//!   sends none, and `statement_timeout` is applied on the client instead: a statement
//!   still running when it expires gets a cancel request (PgBouncer forwards cancels to the
//!   server connection the client is linked to), and fails with the server's own
//!   `57014 query_canceled`, exactly like a server-side timeout.
//! - **Named prepared statements.** tokio-postgres names its statements (`s0`, `s1`, …) and
//!   `prepare_cached` keeps them per client connection; PgBouncer before 1.21 does not track
//!   them, so the next transaction finds "prepared statement … does not exist" (or another
//!   process's `s3` "already exists"). Here every statement runs **unnamed**, with
//!   `query_typed`: Parse, Bind, Describe, Execute and Sync in one round trip, which
//!   PgBouncer keeps on one server connection. Its parameter types are learnt once per
//!   statement text and pool (`StatementTypes`) by preparing it inside a `BEGIN …
//!   COMMIT` (so the Parse and the Close reach the same server connection). An owner
//!   scope's `BEGIN` and scope statement go as one simple query (see `db/unit.rs`), and its
//!   statements with integer parameters run as `EXECUTE` of an SQL-level prepared
//!   statement that lives on PgBouncer's server connections
//!   ([`server_prepared`](super::server_prepared)): no parse and plan per request.
//! - **Session state** (`LISTEN`, session advisory locks, `SET`). The service's own uses
//!   have URLs of their own (`EVENTS_DATABASE_URL`, `MIGRATE_DATABASE_URL`) that must reach
//!   Postgres directly; see [`crate::config::Config::check_pooler`].
//!
//! Limitation: a statement whose parameter or result types are not built in (enums,
//! domains) makes tokio-postgres look the type up with a named statement of its own; keep
//! such statements inside a transaction, or cast to built-in types.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::GenericClient;
use tokio_postgres::types::{ToSql, Type};

use super::server_prepared::{MAX_NAMED, ServerPrepared};

/// How `DATABASE_URL` reaches Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PoolMode {
    /// Directly, or through a session-mode pooler: statements are prepared once per
    /// connection and cached; `statement_timeout` is a startup option.
    #[default]
    Session,
    /// Through a transaction-mode pooler (PgBouncer `pool_mode = transaction`): no startup
    /// options, unnamed statements, statement timeout enforced by the client.
    Transaction,
}

impl PoolMode {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
        }
    }
}

/// Most statement texts whose parameter types are remembered (the service's are a few
/// dozen; a template user building SQL dynamically must not grow this without bound).
const MAX_CACHED: usize = 4096;

/// Parameter types per statement text, shared by a pool's connections, and the statement
/// timeout the client enforces: what a [`Conn`](super::Conn) needs in transaction mode.
#[derive(Debug)]
pub(crate) struct StatementTypes {
    types: Mutex<Learnt>,
    /// The statement timeout, enforced on the client.
    pub(crate) statement_timeout: Duration,
    /// Units run again because a server connection lacked a statement prepared by name.
    pub(crate) server_prepares: std::sync::atomic::AtomicU64,
}

/// What is known of each statement text.
#[derive(Debug, Default)]
struct Learnt {
    texts: HashMap<String, Text>,
    /// Texts given a server-side name so far (never lowered: a name once used may still be
    /// prepared on a server connection).
    named: usize,
}

/// One statement text: its parameter types, and its name on the server connections.
#[derive(Debug, Clone)]
pub(crate) struct Text {
    pub(crate) types: Arc<[Type]>,
    /// Its name on the server connections, when eligible ([`ServerPrepared`]).
    pub(crate) server: Option<Arc<ServerPrepared>>,
}

impl StatementTypes {
    pub(crate) fn new(statement_timeout: Duration) -> Self {
        Self {
            types: Mutex::new(Learnt::default()),
            statement_timeout,
            server_prepares: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn cached(&self, sql: &str) -> Option<Arc<[Type]>> {
        // Only the types: cloning the whole `Text` would count its server name up and down.
        self.lock().texts.get(sql).map(|text| text.types.clone())
    }

    /// What is known of `sql` (its types and its name on the server connections), in one
    /// look-up, if it was learnt.
    pub(crate) fn text(&self, sql: &str) -> Option<Text> {
        self.lock().texts.get(sql).cloned()
    }

    fn remember(&self, sql: &str, types: Arc<[Type]>) {
        let mut learnt = self.lock();
        if learnt.texts.len() >= MAX_CACHED {
            learnt.texts.clear();
        }
        let server = if learnt.named < MAX_NAMED {
            ServerPrepared::new(sql, &types).map(Arc::new)
        } else {
            None
        };
        learnt.named += usize::from(server.is_some());
        learnt.texts.insert(sql.to_owned(), Text { types, server });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Learnt> {
        self.types
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `sql`'s parameter types, learnt on `client` outside any transaction: inside a
    /// `BEGIN … COMMIT` of its own, so that the named statement tokio-postgres prepares,
    /// and the `Close` that dropping it sends, stay on one server connection.
    pub(crate) async fn outside_tx(
        &self,
        client: &(impl GenericClient + Sync),
        sql: &str,
    ) -> Result<Arc<[Type]>, tokio_postgres::Error> {
        if let Some(types) = self.cached(sql) {
            return Ok(types);
        }
        client.batch_execute("BEGIN").await?;
        let prepared = client.prepare(sql).await;
        let types: Result<Arc<[Type]>, _> = prepared.map(|s| s.params().into());
        // Dropping the statement above queued its Close before this COMMIT.
        let end = if types.is_ok() { "COMMIT" } else { "ROLLBACK" };
        client.batch_execute(end).await?;
        let types = types?;
        self.remember(sql, types.clone());
        Ok(types)
    }

    /// `sql`'s parameter types, learnt inside a transaction already open on `client`.
    pub(crate) async fn in_tx(
        &self,
        client: &(impl GenericClient + Sync),
        sql: &str,
    ) -> Result<Arc<[Type]>, tokio_postgres::Error> {
        if let Some(types) = self.cached(sql) {
            return Ok(types);
        }
        let types: Arc<[Type]> = client.prepare(sql).await?.params().into();
        self.remember(sql, types.clone());
        Ok(types)
    }
}

/// `params` paired with `types`, as `query_typed` takes them.
pub(crate) fn typed<'a>(
    params: &'a [&'a (dyn ToSql + Sync)],
    types: &[Type],
) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .zip(types.iter().chain(std::iter::repeat(&Type::UNKNOWN)))
        .map(|(param, ty)| (*param, ty.clone()))
        .collect()
}

/// A stream whose `shutdown` does nothing: for sending a cancel request.
///
/// tokio-postgres' `cancel_query_raw` half-closes the connection after writing the
/// request. Postgres does not mind; PgBouncer 1.18 takes the half-close for a client that
/// went away ("client unexpected eof") and drops the cancel before forwarding it. Kept
/// open, the connection is closed by the server once the cancel has been delivered, which
/// is also the confirmation the caller waits for.
pub(crate) struct NoShutdown<S>(pub(crate) S);

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for NoShutdown<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for NoShutdown<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
}

impl<S: tokio_postgres::tls::TlsStream + Unpin> tokio_postgres::tls::TlsStream for NoShutdown<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        self.0.channel_binding()
    }
}

/// A TLS connector whose streams are [`NoShutdown`]: a cancel request sent over TLS
/// leaves the session open too (no `close_notify`, no half-close) for the same reason.
pub(crate) struct NoShutdownTls<T>(pub(crate) T);

impl<S, T> tokio_postgres::tls::TlsConnect<S> for NoShutdownTls<T>
where
    T: tokio_postgres::tls::TlsConnect<S>,
{
    type Stream = NoShutdown<T::Stream>;
    type Error = T::Error;
    type Future = futures_util::future::MapOk<T::Future, fn(T::Stream) -> NoShutdown<T::Stream>>;

    fn connect(self, stream: S) -> Self::Future {
        use futures_util::TryFutureExt;

        self.0
            .connect(stream)
            .map_ok(NoShutdown as fn(T::Stream) -> NoShutdown<T::Stream>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded() {
        let cache = StatementTypes::new(Duration::from_secs(1));
        for i in 0..MAX_CACHED + 10 {
            cache.remember(&format!("SELECT {i}"), Arc::from(vec![Type::INT8]));
        }
        assert!(cache.lock().texts.len() <= MAX_CACHED);
        assert!(
            cache
                .cached(&format!("SELECT {}", MAX_CACHED + 9))
                .is_some()
        );
        // Only the first texts get a name on the server connections, however many the
        // process sees, and however often the cache is cleared.
        assert_eq!(cache.lock().named, MAX_NAMED);
        assert!(cache.text("SELECT 0").is_none(), "cleared");
        assert!(
            cache
                .text(&format!("SELECT {}", MAX_CACHED + 9))
                .and_then(|text| text.server)
                .is_none()
        );
        let fresh = StatementTypes::new(Duration::from_secs(1));
        fresh.remember("SELECT $1", Arc::from(vec![Type::INT8]));
        fresh.remember("SELECT $1::text", Arc::from(vec![Type::TEXT]));
        assert!(fresh.text("SELECT $1").and_then(|t| t.server).is_some());
        assert!(
            fresh
                .text("SELECT $1::text")
                .is_some_and(|t| t.server.is_none()),
            "not eligible"
        );
    }

    #[test]
    fn params_are_paired_with_their_types() {
        let a = 1_i64;
        let b = "x";
        let params: [&(dyn ToSql + Sync); 2] = [&a, &b];
        let pairs = typed(&params, &[Type::INT8, Type::TEXT]);
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[1].1, Type::TEXT);
    }
}
