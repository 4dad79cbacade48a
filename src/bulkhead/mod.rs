//! Bulkheads: each class of route gets its own bounded share of what signed-in short
//! requests need — pooled Postgres connections, and room on the connection cap — so a
//! flood of anonymous or long-running requests fills its own share and nothing else.
//!
//! A route declares its class in the route table ([`crate::routes::Route::class`]);
//! [`routes`](mod@crate::routes) mounts a [`BulkheadLayer`] on every route that is not
//! [`RouteClass::Short`]. What each class is held to:
//!
//! | class | routes | bounded by | when full |
//! | --- | --- | --- | --- |
//! | [`AnonymousDb`](RouteClass::AnonymousDb) | `/seed/postgres-async` | `ANONYMOUS_DB_REQUESTS` at once (a quarter of the pool by default), held until the response head; evicted first at the connection cap | 503 + `Retry-After`, at once |
//! | [`AnonymousLong`](RouteClass::AnonymousLong) | `/seed/poll-sleep` | evicted first at the connection cap | — |
//! | [`Stream`](RouteClass::Stream) | `/notes/events` | `EVENTS_MAX_OPENING` opening at once (its checks and first page); the others queue, up to `REQUEST_TIMEOUT_MS` | 503 + `Retry-After` |
//!
//! Every class but `Short` also counts against `MAX_LONG_REQUESTS_PER_ADDRESS`, the long
//! requests one client address may have running (429 + `Retry-After` past it). The client
//! address is the request's `ConnectInfo` (the peer). The event streams of one account are
//! bounded where they are opened (`EVENTS_MAX_STREAMS_PER_ACCOUNT`, see
//! `apps/notes/events/limits.rs`), and the connections of one address by the server
//! (`MAX_CONNECTIONS_PER_ADDRESS`, `src/server/accept.rs`).

mod layer;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::client_addr::TrustedProxies;
use crate::error::ApiError;
use crate::keyed_limit::{KeyedLimit, KeyedPermit};

pub use layer::{Bulkhead, BulkheadLayer, ResponseFuture};

/// What a route costs while it runs, which decides the share it is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteClass {
    /// A short request (the default): no bulkhead.
    #[default]
    Short,
    /// An anonymous request that holds a pooled connection for long (`pg_sleep`).
    AnonymousDb,
    /// An anonymous long-running request that holds no pooled connection (a sleep).
    AnonymousLong,
    /// A signed-in event stream: short database work to open, then open for long.
    Stream,
}

impl RouteClass {
    /// Whether, at the connection cap, a connection serving this class is closed first.
    pub fn is_evictable(self) -> bool {
        matches!(self, Self::AnonymousDb | Self::AnonymousLong)
    }

    /// The label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Short => "short",
            Self::AnonymousDb => "anonymous_db",
            Self::AnonymousLong => "anonymous_long",
            Self::Stream => "stream",
        }
    }
}

/// The shares, from the configuration.
#[derive(Debug, Clone)]
pub struct BulkheadConfig {
    /// Most [`RouteClass::AnonymousDb`] requests at once.
    pub anonymous_db: usize,
    /// Most [`RouteClass::Stream`] requests opening at once.
    pub stream_opening: usize,
    /// How long a stream waits for a turn to open (the request timeout).
    pub open_wait: Duration,
    /// Most long requests (every class but `Short`) at once per client address; `0`: no
    /// limit.
    pub long_per_address: usize,
}

/// The process's bulkheads, shared by every route's [`BulkheadLayer`] (cheap to clone).
///
/// ```
/// use std::time::Duration;
/// use pgbridge::bulkhead::{BulkheadConfig, Bulkheads, RouteClass};
///
/// let bulkheads = Bulkheads::new(BulkheadConfig {
///     anonymous_db: 4,
///     stream_opening: 4,
///     open_wait: Duration::from_secs(2),
///     long_per_address: 64,
/// });
/// let router: axum::Router = axum::Router::new().route(
///     "/slow",
///     axum::routing::get(|| async { "done" })
///         .route_layer(bulkheads.layer(RouteClass::AnonymousDb)),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Bulkheads(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: BulkheadConfig,
    anonymous_db: Arc<Semaphore>,
    stream_opening: Arc<Semaphore>,
    long_per_address: KeyedLimit<IpAddr>,
    trusted_proxies: TrustedProxies,
    refused_share: AtomicU64,
    refused_address: AtomicU64,
}

/// Why a request was refused at its bulkhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its class's share was full (503).
    ShareFull,
    /// Its client address had too many long requests running (429).
    AddressFull,
}

/// What an admitted request holds: one part until its response head, one until its body
/// ends.
#[derive(Debug, Default)]
pub(crate) struct Admitted {
    pub(crate) until_head: Option<OwnedSemaphorePermit>,
    pub(crate) until_end: Option<KeyedPermit<IpAddr>>,
}

/// Seconds a client refused at a bulkhead is asked to wait.
const RETRY_AFTER_SECS: u32 = 1;

impl Bulkheads {
    /// Bulkheads with nothing running.
    pub fn new(config: BulkheadConfig) -> Self {
        Self::behind(config, TrustedProxies::default())
    }

    /// Bulkheads that count a long request from one of `trusted_proxies` (`TRUSTED_PROXIES`)
    /// against the client its `X-Forwarded-For` names, not against the proxy — so behind
    /// `deploy/nginx.conf` the per-address limit still tells clients apart.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pgbridge::auth::client_addr::TrustedProxies;
    /// use pgbridge::bulkhead::{BulkheadConfig, Bulkheads};
    ///
    /// let config = BulkheadConfig {
    ///     anonymous_db: 4,
    ///     stream_opening: 4,
    ///     open_wait: Duration::from_secs(2),
    ///     long_per_address: 64,
    /// };
    /// let proxies = TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap()]);
    /// let _bulkheads = Bulkheads::behind(config, proxies);
    /// ```
    pub fn behind(config: BulkheadConfig, trusted_proxies: TrustedProxies) -> Self {
        Self(Arc::new(Inner {
            trusted_proxies,
            anonymous_db: Arc::new(Semaphore::new(config.anonymous_db.max(1))),
            stream_opening: Arc::new(Semaphore::new(config.stream_opening.max(1))),
            long_per_address: KeyedLimit::new(config.long_per_address),
            refused_share: AtomicU64::new(0),
            refused_address: AtomicU64::new(0),
            config,
        }))
    }

    /// The layer that holds a route of `class` to its share.
    pub fn layer(&self, class: RouteClass) -> BulkheadLayer {
        BulkheadLayer::new(self.clone(), class)
    }

    /// The configuration.
    pub fn config(&self) -> &BulkheadConfig {
        &self.0.config
    }

    /// Requests refused since start, for `why`.
    pub fn refused(&self, why: Refusal) -> u64 {
        match why {
            Refusal::ShareFull => self.0.refused_share.load(Ordering::Relaxed),
            Refusal::AddressFull => self.0.refused_address.load(Ordering::Relaxed),
        }
    }

    /// The client a request comes from: its peer, or the address a trusted proxy's
    /// `X-Forwarded-For` names.
    pub(crate) fn client_addr(
        &self,
        peer: Option<IpAddr>,
        headers: &http::HeaderMap,
    ) -> Option<IpAddr> {
        self.0.trusted_proxies.client_addr(peer, headers)
    }

    /// Long requests running now for `address`.
    pub fn long_requests_of(&self, address: IpAddr) -> usize {
        self.0.long_per_address.held(&address)
    }

    /// Admits a request of `class` from `address` (unknown when served without the
    /// server), or answers why not.
    pub(crate) async fn admit(
        &self,
        class: RouteClass,
        address: Option<IpAddr>,
    ) -> Result<Admitted, Response> {
        let inner = &self.0;
        let mut admitted = Admitted::default();
        if class == RouteClass::Short {
            return Ok(admitted);
        }
        if let Some(address) = address {
            admitted.until_end = Some(inner.long_per_address.try_acquire(address).ok_or_else(
                || {
                    inner.refused_address.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%address, class = class.label(), "refused: too many long requests from one address");
                    ApiError::TooManyOpen {
                        message: format!(
                            "too many long-running requests from your address (at most {}); retry once one ends",
                            inner.config.long_per_address
                        ),
                        retry_after_secs: RETRY_AFTER_SECS,
                    }
                    .into_response()
                },
            )?);
        }
        let share_full = |what: &str| {
            inner.refused_share.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(class = class.label(), "refused: the class's share is full");
            ApiError::Overloaded {
                message: format!("too many {what} at once; retry later"),
                retry_after_secs: RETRY_AFTER_SECS,
            }
            .into_response()
        };
        match class {
            RouteClass::Short | RouteClass::AnonymousLong => {}
            RouteClass::AnonymousDb => {
                admitted.until_head = Some(
                    inner
                        .anonymous_db
                        .clone()
                        .try_acquire_owned()
                        .map_err(|_| share_full("anonymous database requests"))?,
                );
            }
            RouteClass::Stream => {
                let turn = inner.stream_opening.clone().acquire_owned();
                admitted.until_head = match tokio::time::timeout(inner.config.open_wait, turn).await
                {
                    Ok(Ok(permit)) => Some(permit),
                    _ => return Err(share_full("event streams opening")),
                };
            }
        }
        Ok(admitted)
    }
}

impl prometheus_client::collector::Collector for Bulkheads {
    fn encode(
        &self,
        mut e: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> std::fmt::Result {
        use crate::metrics::{counter, gauge};
        let inner = &self.0;
        counter(
            &mut e,
            "pgbridge_bulkhead_refused_share",
            "Requests refused (503) because their class's share was full (ANONYMOUS_DB_REQUESTS, EVENTS_MAX_OPENING).",
            self.refused(Refusal::ShareFull),
        )?;
        counter(
            &mut e,
            "pgbridge_bulkhead_refused_address",
            "Long requests refused (429) because their address had MAX_LONG_REQUESTS_PER_ADDRESS running.",
            self.refused(Refusal::AddressFull),
        )?;
        gauge(
            &mut e,
            "pgbridge_bulkhead_anonymous_db_requests",
            "Anonymous requests holding a pooled connection now.",
            inner.config.anonymous_db.max(1) - inner.anonymous_db.available_permits(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulkheads(long_per_address: usize) -> Bulkheads {
        Bulkheads::new(BulkheadConfig {
            anonymous_db: 2,
            stream_opening: 1,
            open_wait: Duration::from_millis(20),
            long_per_address,
        })
    }

    #[tokio::test]
    async fn a_full_share_refuses_at_once_with_503_and_retry_after() {
        let bulkheads = bulkheads(0);
        let a = bulkheads
            .admit(RouteClass::AnonymousDb, None)
            .await
            .unwrap();
        let _b = bulkheads
            .admit(RouteClass::AnonymousDb, None)
            .await
            .unwrap();
        let refused = bulkheads
            .admit(RouteClass::AnonymousDb, None)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert!(
            bulkheads.admit(RouteClass::Short, None).await.is_ok(),
            "short requests have no share to fill"
        );
        drop(a);
        assert!(bulkheads.admit(RouteClass::AnonymousDb, None).await.is_ok());
        assert_eq!(bulkheads.refused(Refusal::ShareFull), 1);
    }

    #[tokio::test]
    async fn streams_wait_for_a_turn_to_open_then_give_up() {
        let bulkheads = bulkheads(0);
        let first = bulkheads.admit(RouteClass::Stream, None).await.unwrap();
        let refused = bulkheads.admit(RouteClass::Stream, None).await.unwrap_err();
        assert_eq!(refused.status(), 503);
        drop(first);
        assert!(bulkheads.admit(RouteClass::Stream, None).await.is_ok());
    }

    #[tokio::test]
    async fn one_address_cannot_run_more_than_its_long_requests() {
        let bulkheads = bulkheads(2);
        let here: IpAddr = [127, 0, 0, 2].into();
        let there: IpAddr = [127, 0, 0, 3].into();
        let _a = bulkheads
            .admit(RouteClass::AnonymousLong, Some(here))
            .await
            .unwrap();
        let _b = bulkheads
            .admit(RouteClass::Stream, Some(here))
            .await
            .unwrap();
        let refused = bulkheads
            .admit(RouteClass::AnonymousLong, Some(here))
            .await
            .unwrap_err();
        assert_eq!(refused.status(), 429);
        assert!(
            bulkheads
                .admit(RouteClass::AnonymousLong, Some(there))
                .await
                .is_ok()
        );
        assert_eq!(bulkheads.long_requests_of(here), 2);
        assert_eq!(bulkheads.refused(Refusal::AddressFull), 1);
    }
}
