//! [`Pooled`]: how the pool opens a connection — what deadpool-postgres' own connector does,
//! but with the end of a connection logged at most once per
//! [`INTERVAL`](crate::unavailable_log::INTERVAL) with the count left out.
//!
//! deadpool-postgres logs a WARN for every pooled connection that ends with an error. When
//! Postgres restarts, or a transaction pooler in front of it refuses queries for a while,
//! every connection ends that way, and every request that opened one adds a line: hundreds a
//! second under load, for what `/readyz`, `/metrics` and one rate-limited line already say.

use deadpool_postgres::Connect;
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config};

use super::Tls;
use crate::unavailable_log::{INTERVAL, RateLimit};

/// "Pooled Postgres connection closed", at most once per interval.
static CLOSED_LOG: RateLimit = RateLimit::new(INTERVAL);

/// The pool's connector: the pool's TLS, the connection driven by a task of its own.
///
/// ```no_run
/// # fn demo(pg: pgbridge::db::connect::PgConnect) {
/// use deadpool_postgres::{Manager, ManagerConfig};
/// use pgbridge::db::connect::Pooled;
///
/// let manager = Manager::from_connect(
///     pg.config().clone(),
///     Pooled::new(pg.tls()),
///     ManagerConfig::default(),
/// );
/// # }
/// ```
#[derive(Clone)]
pub struct Pooled {
    tls: Tls,
}

impl Pooled {
    /// A connector using `tls` (see [`PgConnect::tls`](super::PgConnect::tls)).
    pub fn new(tls: Tls) -> Self {
        Self { tls }
    }
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled").finish_non_exhaustive()
    }
}

impl Connect for Pooled {
    fn connect(
        &self,
        config: &Config,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        let (tls, config) = (self.tls.clone(), config.clone());
        Box::pin(async move {
            let (client, connection) = config.connect(tls).await?;
            Ok((client, super::drive(connection, &CLOSED_LOG, "pooled")))
        })
    }
}
