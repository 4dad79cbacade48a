//! Who is asking: accounts' passwords, bearer tokens, sessions, and the owner scope each
//! request's note statements run in.
//!
//! - [`password`]: Argon2id, off the async threads; a dummy hash for missing accounts.
//! - [`token`]: 256-bit bearer tokens, stored as SHA-256.
//! - [`throttle`]: failed-login limits per (account, address) and per address, kept in
//!   Postgres; [`client_addr`]: who the address is, behind `TRUSTED_PROXIES`.
//! - [`sessions`]: a login's new session, the per-account cap and the pruning.
//! - [`cache`]: live sessions remembered in the process (bounded, revoked on every replica
//!   through `NOTIFY`), so that most requests skip the session lookup.
//! - [`authenticate`] / [`scoped`]: the [`Principal`] from `Authorization: Bearer` (or, for
//!   event streams only, the session cookie), and a [`Scoped`] transaction in which
//!   row-level security shows that principal's rows and no others.
//!
//! Applications call it first thing:
//!
//! ```no_run
//! use awsgi::{Body, Environ, Error, StartResponse};
//!
//! async fn count(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
//!     let (_principal, conn) = pgbridge::auth::scoped(&environ).await?;
//!     // No owner filter: the policies count this account's notes only.
//!     let n: i64 = conn.query_one("SELECT count(*) FROM notes", &[]).await?.get(0);
//!     conn.commit().await?;
//!     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
//!     Ok(Body::from(format!("{n}\n")))
//! }
//! ```

pub mod cache;
pub mod client_addr;
mod metrics_token;
pub mod password;
pub mod sessions;
pub mod throttle;
pub mod token;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use crate::request::Principal;
pub use cache::SessionCache;
pub use client_addr::TrustedProxies;
pub use metrics_token::require_metrics_token;
pub use sessions::LoginStats;

use crate::config::Config;
use awsgi::Environ;
use tokio_postgres::types::Type;

use crate::db::replica::{ReadFrom, ScopedRead};
use crate::db::{ACCOUNT_SETTING, Conn, Db, DbError, Owner, Queries, Scoped, Shared, Step, Unit};
use crate::error::ApiError;

/// The session cookie `POST /sessions` sets, accepted on `GET /notes/events` only.
pub const SESSION_COOKIE: &str = "pgbridge_session";
/// The path the cookie is sent to: the event stream, and nothing that changes state.
pub const COOKIE_PATH: &str = "/notes/events";

/// The settings of accounts and sessions, from [`Config`]; an environ extension.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// Mark the cookie `Secure` even over plain HTTP.
    pub cookie_secure: bool,
    /// Failed-login limits.
    pub limits: throttle::Limits,
    /// `METRICS_TOKEN`.
    pub metrics_token: Option<Arc<str>>,
    /// `SESSION_MAX_PER_ACCOUNT`.
    pub max_sessions: u32,
    /// `TRUSTED_PROXIES`: where the client's address comes from.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// Login counters for `/metrics`.
    pub stats: Arc<LoginStats>,
    /// Log-in refusals this process remembers for a moment.
    pub recent_refusals: Arc<throttle::Recent>,
}

impl AuthSettings {
    /// The settings of `config`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            session_ttl: Duration::from_secs(config.session_ttl_secs.max(1)),
            cookie_secure: config.session_cookie_secure,
            limits: throttle::Limits {
                per_account: config.login_max_failures_per_account,
                per_address: config.login_max_failures_per_address,
                window: Duration::from_secs(config.login_failure_window_secs.max(1)),
                delay: Duration::from_millis(config.login_failure_delay_ms),
            },
            metrics_token: config
                .metrics_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(Arc::from),
            max_sessions: config.session_max_per_account.max(1),
            trusted_proxies: Arc::new(TrustedProxies::new(config.trusted_proxies.clone())),
            stats: Arc::default(),
            recent_refusals: Arc::default(),
        }
    }

    /// The client's address: the peer's, or behind a trusted proxy its `X-Forwarded-For`'s.
    pub fn client_addr(&self, environ: &Environ) -> Option<std::net::IpAddr> {
        self.trusted_proxies
            .client_addr(environ.remote_addr().map(|a| a.ip()), environ.headers())
    }
}

/// Where a request may carry its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// `Authorization: Bearer` only.
    Header,
    /// The header, or the session cookie: for `EventSource`, which cannot send headers.
    /// Only for requests that change nothing (a cookie rides along on cross-site
    /// requests; `SameSite=Lax` and this rule together keep CSRF out).
    HeaderOrCookie,
}

/// Usernames' length bounds, in characters.
pub const USERNAME_LEN: std::ops::RangeInclusive<usize> = 3..=32;

/// Whether `name` (already lower-cased) can be a username: 3 to 32 of `a-z 0-9 . _ -`.
/// Sign-up refuses any other name, so no account has one.
///
/// ```
/// assert!(pgbridge::auth::valid_username("ada.l"));
/// assert!(!pgbridge::auth::valid_username("Ada"));
/// assert!(!pgbridge::auth::valid_username("a\u{0}b"));
/// ```
pub fn valid_username(name: &str) -> bool {
    USERNAME_LEN.contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// The token of `Authorization: Bearer <token>`, if the value has that form.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn unauthorized(message: &str, invalid_token: bool) -> ApiError {
    ApiError::Unauthorized {
        message: message.into(),
        invalid_token,
    }
}

/// The token the request presents: 401 if none, or if it cannot be a token.
pub fn presented_token(environ: &Environ, carrier: Carrier) -> Result<&str, ApiError> {
    let token = match environ.headers().get(http::header::AUTHORIZATION) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(bearer)
            .ok_or_else(|| unauthorized("Authorization must be \"Bearer <token>\"", true))?,
        None => match carrier {
            Carrier::HeaderOrCookie => {
                crate::http::cookie::first(environ.headers(), SESSION_COOKIE)
            }
            Carrier::Header => None,
        }
        .ok_or_else(|| {
            unauthorized(
                "this needs Authorization: Bearer <token>; get one with POST /sessions",
                false,
            )
        })?,
    };
    if !token::well_formed(token) {
        return Err(unauthorized("the token is malformed", true));
    }
    Ok(token)
}

/// The principal whose live session `token` is: 401 if it is unknown, expired or revoked.
/// Always asks Postgres (no cache).
pub async fn session(conn: &Conn, token: &str) -> Result<Principal, ApiError> {
    Ok(session_by_hash(conn, &token::hash(token)).await?.0)
}

/// [`session`] by the token's hash (prepared once per connection), with how long the
/// session has left (see the scope statement in `db/unit.rs` for why `clock_timestamp()`).
async fn session_by_hash(conn: &Conn, hash: &[u8]) -> Result<(Principal, Duration), ApiError> {
    let row = conn
        .query_opt(
            "SELECT id, account_id, \
                    extract(epoch FROM expires_at - clock_timestamp())::float8 \
             FROM sessions \
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
            &[&hash],
        )
        .await?;
    let row = row.ok_or_else(|| unauthorized("the token is unknown, expired or revoked", true))?;
    let principal = Principal {
        session_id: row.get(0),
        account_id: row.get(1),
    };
    let left = Duration::try_from_secs_f64(row.get(2)).unwrap_or_default();
    Ok((principal, left))
}

/// The session cache attached to `db` ([`Db::attach`]), if the service runs one.
fn cache_of(db: &Db) -> Option<Arc<SessionCache>> {
    db.extension::<Arc<SessionCache>>().cloned()
}

/// [`session_by_hash`] through the cache of `db`: the cache's answer, or a lookup on a
/// pooled connection of `db` (kept in the cache).
async fn lookup(db: &Db, cache: Option<&SessionCache>, hash: &[u8]) -> Result<Principal, ApiError> {
    if let Some(principal) = cache.and_then(|cache| cache.get(hash)) {
        return Ok(principal);
    }
    let ticket = cache.map(SessionCache::ticket);
    let conn = db.conn().await?;
    let (principal, left) = session_by_hash(&conn, hash).await?;
    if let (Some(cache), Some(ticket)) = (cache, ticket) {
        cache.keep(&ticket, hash, principal, left);
    }
    Ok(principal)
}

/// Tells this process's session cache that `session_ids` were revoked, before the request
/// that revoked them answers (the trigger's notice tells the other processes, and this
/// one again). Call it after the revocation committed.
///
/// ```no_run
/// # async fn demo(db: pgbridge::db::Db) {
/// pgbridge::auth::forget_sessions(&db, &[42]);
/// # }
/// ```
pub fn forget_sessions(db: &Db, session_ids: &[i64]) {
    if let Some(cache) = cache_of(db) {
        for id in session_ids {
            cache.forget(*id);
        }
    }
}

/// Whether the session is still live (not revoked, not expired): open streams ask again
/// on every heartbeat. The session cache answers when it knows the session (no query:
/// a revocation anywhere reaches it within moments); else one pipelined, prepared
/// statement on the shared connections (no pooled connection per check), whose answer
/// the cache keeps.
pub async fn still_valid(conn: &Shared, principal: &Principal) -> Result<bool, DbError> {
    let cache = conn.extension::<Arc<SessionCache>>();
    if cache.is_some_and(|cache| cache.is_live(principal.session_id)) {
        return Ok(true);
    }
    let ticket = cache.map(|cache| cache.ticket());
    let row = conn
        .query_opt(
            "SELECT token_hash, extract(epoch FROM expires_at - clock_timestamp())::float8 \
             FROM sessions WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()",
            &[&principal.session_id],
        )
        .await?;
    if let (Some(cache), Some(ticket), Some(row)) = (cache, ticket, &row) {
        let hash: Vec<u8> = row.get(0);
        let left = Duration::try_from_secs_f64(row.get(1)).unwrap_or_default();
        cache.keep(&ticket, &hash, *principal, left);
    }
    Ok(row.is_some())
}

/// Authenticates the request on a connection of the pool.
///
/// Reads what it needs from the environ before it first waits, so the future is `Send`
/// (the environ is not `Sync`).
pub fn authenticate(
    environ: &Environ,
    carrier: Carrier,
) -> impl Future<Output = Result<Principal, ApiError>> + Send + 'static {
    let ready = presented_token(environ, carrier)
        .map(str::to_owned)
        .and_then(|token| Ok((token, crate::request::db(environ)?)));
    async move {
        let (token, db) = ready?;
        let cache = cache_of(&db);
        lookup(&db, cache.as_deref(), &token::hash(&token)).await
    }
}

/// Authenticates the request (bearer header only) and opens its owner-scoped transaction,
/// on one pooled connection. Commit the [`Scoped`] before answering.
pub fn scoped(
    environ: &Environ,
) -> impl Future<Output = Result<(Principal, Scoped), ApiError>> + Send + 'static {
    scoped_via(environ, Carrier::Header)
}

/// [`scoped`], accepting the token from `carrier`.
pub fn scoped_via(
    environ: &Environ,
    carrier: Carrier,
) -> impl Future<Output = Result<(Principal, Scoped), ApiError>> + Send + 'static {
    let ready = presented_token(environ, carrier)
        .map(str::to_owned)
        .and_then(|token| Ok((token, crate::request::db(environ)?)));
    async move {
        let (token, db) = ready?;
        let cached = cache_of(&db).and_then(|cache| cache.get(&token::hash(&token)));
        match cached {
            Some(principal) => {
                let scoped = Scoped::begin(db.conn().await?, principal.account_id).await?;
                Ok((principal, scoped))
            }
            None => resolve_scope(db.conn().await?, &token).await,
        }
    }
}

/// The session lookup, `BEGIN`, the owner and the role in one round trip on `conn`.
async fn resolve_scope(conn: Conn, token: &str) -> Result<(Principal, Scoped), ApiError> {
    let hash = token::hash(token);
    let resolved = Scoped::begin_resolved(
        conn,
        "SELECT id, account_id, set_config($2, account_id::text, true) FROM sessions \
         WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
        &[
            (&hash.as_slice(), Type::BYTEA),
            (&ACCOUNT_SETTING, Type::TEXT),
        ],
    )
    .await?;
    let (scoped, row) =
        resolved.ok_or_else(|| unauthorized("the token is unknown, expired or revoked", true))?;
    let principal = Principal {
        session_id: row.get(0),
        account_id: row.get(1),
    };
    Ok((principal, scoped))
}

/// A request's bearer token, taken from the environ at once (it does not cross an
/// `.await`), for owner scopes in one round trip: [`once`](Self::once),
/// [`open`](Self::open), [`read_once`](Self::read_once).
///
/// ```no_run
/// use awsgi::{Body, Environ, Error, StartResponse};
/// use pgbridge::db::Step;
///
/// async fn count(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     let bearer = pgbridge::auth::Bearer::from_environ(&environ)?;
///     // The session, the owner, the role, the statement and COMMIT: one round trip.
///     let (_principal, unit) = bearer.once(&[Step::new("SELECT count(*) FROM notes", &[])], false).await?;
///     let n: i64 = unit.rows[0][0].get(0);
///     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
///     Ok(Body::from(format!("{n}\n")))
/// }
/// ```
#[derive(Debug)]
pub struct Bearer {
    hash: [u8; 32],
    db: Db,
    route: Option<crate::request::consistency::ReadRoute>,
    cache: Option<Arc<SessionCache>>,
}

/// How a [`Bearer`] scope finds its owner.
enum Resolve {
    /// The session cache knew the token: the scope is opened for its account.
    Cached(Principal),
    /// Looked up in the scope's own round trip; what was found is kept with this ticket.
    Lookup(Option<cache::Ticket>),
}

impl Bearer {
    /// The `Authorization: Bearer` token (401 if none or malformed) and the `Db`.
    pub fn from_environ(environ: &Environ) -> Result<Self, ApiError> {
        let token = presented_token(environ, Carrier::Header)?;
        let db = crate::request::db(environ)?;
        Ok(Self {
            hash: token::hash(token),
            cache: cache_of(&db),
            db,
            route: None,
        })
    }

    /// The session cache's answer for this token, or a ticket for the lookup.
    fn resolve(&self) -> Resolve {
        match &self.cache {
            None => Resolve::Lookup(None),
            Some(cache) => match cache.get(&self.hash) {
                Some(principal) => Resolve::Cached(principal),
                None => Resolve::Lookup(Some(cache.ticket())),
            },
        }
    }

    /// The owner a scope opens with: the cached account (the scope statement then sets
    /// the owner and the role without reading `sessions`), or the token's hash.
    fn owner(&self, resolve: &Resolve) -> Owner<'_> {
        match resolve {
            Resolve::Cached(principal) => Owner::Account(principal.account_id),
            Resolve::Lookup(_) => Owner::TokenHash(&self.hash),
        }
    }

    /// The principal of a unit opened with [`owner`](Self::owner); a session its scope
    /// statement found is kept in the cache. 401 if there was none.
    fn principal(&self, resolve: &Resolve, unit: &Unit) -> Result<Principal, ApiError> {
        match resolve {
            Resolve::Cached(principal) => Ok(*principal),
            Resolve::Lookup(ticket) => {
                let principal = principal_of(unit)?;
                if let (Some(cache), Some(ticket), Some(left)) =
                    (&self.cache, ticket, unit.session_expires_in)
                {
                    cache.keep(ticket, &self.hash, principal, left);
                }
                Ok(principal)
            }
        }
    }

    /// As [`from_environ`](Self::from_environ), with the read route
    /// ([`read_route`](crate::request::consistency::read_route)) for [`read_once`](Self::read_once).
    pub fn for_read(environ: &Environ) -> Result<Self, ApiError> {
        let mut bearer = Self::from_environ(environ)?;
        bearer.route = Some(crate::request::consistency::read_route(environ)?);
        Ok(bearer)
    }

    /// The session lookup, the owner, the role, `steps` and `COMMIT` in one round trip, as
    /// one unit on a shared connection of the primary ([`Shared::scope`](crate::db::Shared::scope));
    /// 401 if the token has no live session. With the session cache knowing the token, the
    /// unit skips the lookup (it still sets the owner and the role).
    pub async fn once(
        &self,
        steps: &[Step<'_>],
        with_lsn: bool,
    ) -> Result<(Principal, Unit), ApiError> {
        let resolve = self.resolve();
        let unit = self
            .db
            .shared()
            .scope(self.owner(&resolve), steps, with_lsn)
            .await?;
        Ok((self.principal(&resolve, &unit)?, unit))
    }

    /// The session lookup, the owner, the role and `steps` in one round trip, the
    /// transaction left open ([`Scoped::open`]); 401 if the token has no live session.
    /// The lookup is skipped when the session cache knows the token.
    pub async fn open(&self, steps: &[Step<'_>]) -> Result<(Principal, Scoped, Unit), ApiError> {
        let resolve = self.resolve();
        let (scoped, unit) =
            Scoped::open(self.db.conn().await?, self.owner(&resolve), steps).await?;
        Ok((self.principal(&resolve, &unit)?, scoped, unit))
    }

    /// A read that tolerates replication lag ([`for_read`](Self::for_read)). Without
    /// standbys: [`once`](Self::once), on the shared connections. With standbys, on the
    /// connection the router picks: on the primary one round trip; on a standby the
    /// session is looked up on the primary first (a standby may not have replayed a logout
    /// yet), then one round trip there — or, when the primary cannot be reached (a
    /// failover), looked up on the standby itself, in its one round trip.
    ///
    /// A read is idempotent, and nothing has been answered yet when its statements fail:
    /// a try that meets a failover (the connection lost, the server shutting down,
    /// unreachable or read-only) runs again elsewhere — after a standby on the primary,
    /// after the primary on a standby that answers (with none, on the primary again, but
    /// only after a failover sign: the mark sends it on a new connection) — for up to
    /// [`READ_RETRY_WINDOW`] after the first failure. A primary that cannot be reached,
    /// with no standby answering, fails fast. Writes are never retried here: their clients retry with
    /// an `Idempotency-Key`.
    pub async fn read_once(
        &mut self,
        steps: &[Step<'_>],
    ) -> Result<(Principal, Unit, ReadFrom), ApiError> {
        let route = self.route.take();
        let mut deadline = None;
        let Some(route) = route.filter(|route| route.has_standbys()) else {
            loop {
                let resolve = self.resolve();
                let tried = self
                    .db
                    .shared()
                    .scope(self.owner(&resolve), steps, false)
                    .await;
                // Only the primary: again only on a failover sign (the next try opens a new
                // connection); a server that cannot be reached fails fast.
                match tried {
                    // Boxed (only after a failure): its pause is not carried in every read.
                    Err(err)
                        if err.failover_sign().is_some()
                            && Box::pin(may_retry(&err, &mut deadline)).await =>
                    {
                        note_retry(&err, ReadFrom::Primary);
                    }
                    other => {
                        let unit = other?;
                        let principal = self.principal(&resolve, &unit)?;
                        return Ok((principal, unit, ReadFrom::Primary));
                    }
                }
            }
        };
        // Boxed: the routed reads' state (the standby, the primary's lookup, retries
        // between them) is not carried in every read's future, which stays small.
        Box::pin(self.read_routed(route, steps)).await
    }

    /// [`read_once`](Self::read_once) with standbys: on the reader the router picks, tried
    /// again elsewhere after a failover sign.
    async fn read_routed(
        &self,
        route: crate::request::consistency::ReadRoute,
        steps: &[Step<'_>],
    ) -> Result<(Principal, Unit, ReadFrom), ApiError> {
        let mut deadline = None;
        let primary = route.primary().clone();
        let mut failed: Option<(ReadFrom, DbError)> = None;
        loop {
            let reader = match failed.take() {
                None => route.reader().await,
                Some((from, err)) => match route.retry_reader(from).await {
                    Ok(Some(reader)) => Ok(reader),
                    // Nowhere else to go: the primary again only after a failover sign
                    // (a new connection may lead to the new primary); else fail fast.
                    Ok(None) if err.failover_sign().is_some() => route.reader().await,
                    Ok(None) => return Err(err.into()),
                    Err(err) => Err(err),
                },
            };
            // A reader not had is the primary's pool failing (a standby that fails is
            // skipped by the router).
            let (tried, from) = match reader {
                Ok(reader) => {
                    let from = reader.from();
                    (self.read_on(&primary, reader, steps).await, from)
                }
                Err(err) => (Err(Attempt::Db(err)), ReadFrom::Primary),
            };
            match tried {
                Ok(out) => return Ok(out),
                Err(Attempt::Api(err)) => return Err(err),
                Err(Attempt::Db(err)) if may_retry(&err, &mut deadline).await => {
                    note_retry(&err, from);
                    failed = Some((from, err));
                }
                Err(Attempt::Db(err)) => return Err(err.into()),
            }
        }
    }

    /// One try of [`read_once`](Self::read_once) on `reader`.
    async fn read_on(
        &self,
        primary: &Db,
        reader: crate::db::replica::Reader,
        steps: &[Step<'_>],
    ) -> Result<(Principal, Unit, ReadFrom), Attempt> {
        let from = reader.from();
        let resolve = self.resolve();
        let looked_up = match (&resolve, from) {
            (Resolve::Cached(principal), _) => Some(*principal),
            (Resolve::Lookup(_), ReadFrom::Primary) => None,
            (Resolve::Lookup(ticket), ReadFrom::Standby) => match primary.conn().await {
                Ok(conn) => match session_by_hash(&conn, &self.hash).await {
                    Ok((principal, left)) => {
                        if let (Some(cache), Some(ticket)) = (&self.cache, ticket) {
                            cache.keep(ticket, &self.hash, principal, left);
                        }
                        Some(principal)
                    }
                    // The primary is going away: the standby's copy of the session.
                    Err(ApiError::Unavailable) => None,
                    Err(err) => return Err(Attempt::Api(err)),
                },
                Err(err) if err.is_unavailable() => None,
                Err(err) => return Err(Attempt::Db(err)),
            },
        };
        let owner = match &looked_up {
            Some(principal) => Owner::Account(principal.account_id),
            None => Owner::TokenHash(&self.hash),
        };
        let unit = Scoped::once(reader.into_conn(), owner, steps, false)
            .await
            .map_err(Attempt::Db)?;
        let principal = match looked_up {
            Some(principal) => principal,
            // Resolved on the scope's own server: a standby's answer (the primary was
            // unreachable) is not kept: it may lag behind a revocation.
            None if from == ReadFrom::Primary => {
                self.principal(&resolve, &unit).map_err(Attempt::Api)?
            }
            None => principal_of(&unit).map_err(Attempt::Api)?,
        };
        Ok((principal, unit, from))
    }
}

/// How one try of a read failed: in the database (maybe worth a retry elsewhere), or with
/// an answer already decided (401, or unavailable after the error was logged).
enum Attempt {
    Db(DbError),
    Api(ApiError),
}

/// How long after its first failure a read that meets a failover is tried again: longer
/// than a proxy takes to follow a promotion (with `deploy/ha/haproxy.cfg`'s `inter 1s
/// rise 2 fall 3`, up to 3 s for the read-write port to lead to the new primary, and as long
/// for the read-only port to stop leading there), with room for a loaded machine.
///
/// ```
/// assert!(pgbridge::auth::READ_RETRY_WINDOW >= std::time::Duration::from_secs(3));
/// ```
pub const READ_RETRY_WINDOW: Duration = Duration::from_secs(5);

/// Pause between two retries of a read.
const READ_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Whether a read that failed with `err` runs again: a sign of a failover or an
/// unreachable server (not a statement timeout or a bug), within [`READ_RETRY_WINDOW`]
/// of the first failure (`deadline`, set by the first call). Pauses before every retry
/// but the first.
async fn may_retry(err: &DbError, deadline: &mut Option<tokio::time::Instant>) -> bool {
    if !err.is_unavailable() || matches!(err, DbError::Timeout(_)) {
        return false;
    }
    let now = tokio::time::Instant::now();
    match deadline {
        None => {
            *deadline = Some(now + READ_RETRY_WINDOW);
            true
        }
        Some(until) if now + READ_RETRY_PAUSE < *until => {
            tokio::time::sleep(READ_RETRY_PAUSE).await;
            true
        }
        Some(_) => false,
    }
}

fn note_retry(err: &DbError, failed: ReadFrom) {
    crate::db::replica::count_retry();
    tracing::info!(error = %err, failed_on = failed.as_str(), "read met a failover; retrying");
}

/// The principal of a unit's scope; 401 if its token had no live session.
fn principal_of(unit: &Unit) -> Result<Principal, ApiError> {
    let (session_id, account_id) = unit
        .session
        .ok_or_else(|| unauthorized("the token is unknown, expired or revoked", true))?;
    Ok(Principal {
        account_id,
        session_id,
    })
}

/// [`scoped`] for a read that tolerates replication lag: the owner-scoped transaction runs
/// on the connection [`read_route`](crate::request::consistency::read_route) picks — a
/// caught-up standby (`DATABASE_READ_URL`, honouring `Pgbridge-Min-Lsn`), else the primary.
///
/// The session is always resolved on the **primary**: a standby may not have replayed a
/// login (or a logout) yet, and a token must work, and stop working, at once on every
/// replica. On the primary that is the same single round trip as [`scoped`]; for a standby
/// it is one lookup on a primary connection (released at once), then
/// [`ScopedRead::begin`] on the standby with the account id found.
pub fn scoped_read(
    environ: &Environ,
) -> impl Future<Output = Result<(Principal, ScopedRead), ApiError>> + Send + 'static {
    let ready = presented_token(environ, Carrier::Header)
        .map(str::to_owned)
        .and_then(|token| Ok((token, crate::request::consistency::read_route(environ)?)));
    async move {
        let (token, route) = ready?;
        let primary = route.primary().clone();
        let reader = route.reader().await?;
        match reader.from() {
            ReadFrom::Primary => {
                let (principal, scoped) = resolve_scope(reader.into_conn(), &token).await?;
                Ok((principal, ScopedRead::new(scoped, ReadFrom::Primary)))
            }
            ReadFrom::Standby => {
                let cache = cache_of(&primary);
                let principal = lookup(&primary, cache.as_deref(), &token::hash(&token)).await?;
                let read = ScopedRead::begin(reader, principal.account_id).await?;
                Ok((principal, read))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environ(headers: &[(&str, &str)]) -> Environ {
        let mut request = http::Request::get("/notes");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Environ::builder(request.body(()).unwrap()).build()
    }

    #[test]
    fn tokens_come_from_the_header_or_for_streams_the_cookie() {
        let token = token::generate().unwrap();
        let header = format!("Bearer {token}");
        let env = environ(&[("authorization", &header)]);
        assert_eq!(presented_token(&env, Carrier::Header).unwrap(), token);

        let cookie = format!("a=b; {SESSION_COOKIE}={token}");
        let env = environ(&[("cookie", &cookie)]);
        assert_eq!(
            presented_token(&env, Carrier::HeaderOrCookie).unwrap(),
            token
        );
        let err = presented_token(&env, Carrier::Header).unwrap_err();
        assert_eq!(err.status(), 401);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_is_retried_only_after_a_failover_sign_and_within_the_window() {
        let mut deadline = None;
        let lost = DbError::ConnectionLost("terminating connection".into());
        assert!(may_retry(&lost, &mut deadline).await, "the first retry");
        assert!(deadline.is_some());
        assert!(may_retry(&DbError::Unavailable("pool".into()), &mut deadline).await);
        tokio::time::advance(READ_RETRY_WINDOW).await;
        assert!(!may_retry(&lost, &mut deadline).await, "past the window");

        let mut fresh = None;
        let config = DbError::Config("bad url".into());
        assert!(!may_retry(&config, &mut fresh).await, "not a failover");
        assert!(fresh.is_none());
    }

    #[test]
    fn missing_and_malformed_are_401() {
        for headers in [
            vec![],
            vec![("authorization", "Basic dXNlcjpwYXNz")],
            vec![("authorization", "Bearer")],
            vec![("authorization", "Bearer not-a-token")],
        ] {
            let err = presented_token(&environ(&headers), Carrier::HeaderOrCookie).unwrap_err();
            assert_eq!(err.status(), 401, "{headers:?}");
            assert_eq!(err.code(), "unauthorized");
        }
    }
}
