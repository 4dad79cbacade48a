//! Failed-login limits per (account, client address) and per client address, counted in
//! Postgres (`login_failures`) so every replica sees the same counts.
//!
//! - **Never the account alone.** Failures are charged to the pair `login:NAME@ADDRESS` and
//!   to `address:ADDRESS`, never to the account by itself: however many wrong guesses come
//!   from elsewhere, the owner with the right password from another address logs in at
//!   once. (An IPv6 address counts by its /64, which one host usually holds whole.)
//! - **Exact under concurrency.** An attempt first *reserves* its place in both counters
//!   (`INSERT … ON CONFLICT DO UPDATE … WHERE count < limit RETURNING`, one transaction:
//!   the row lock serialises concurrent attempts), and only a granted reservation has its
//!   password checked. So 200 concurrent guesses check at most the limit. A correct
//!   password gives its reservation back; a wrong one keeps it as the failure.
//! - **Progressive delay.** From half a scope's limit on, each failure makes the scope wait
//!   `LOGIN_FAILURE_DELAY_MS`, doubling with each further failure (at most the window)
//!   before its next attempt: 429 with `Retry-After` meanwhile, no password checked. At
//!   the limit, the scope waits until its sliding count (below) falls under it again.
//!
//! - **Cheap refusals.** A refusal is remembered in the process for [`REMEMBER_REFUSAL`]
//!   ([`Recent`]): a client hammering a refused scope meanwhile costs no database work.
//!
//! Counting is by windows of the database's clock, `LOGIN_FAILURE_WINDOW_SECS` long, aligned
//! to the epoch, and slides between them: a scope's count is its current window's failures
//! plus its previous window's, weighted by how much of that window still lies within the
//! last window's length (a delay set in the previous window still holds). A fixed window
//! would start from zero, and guesses on both sides of its start would reach twice a limit;
//! sliding, they get one attempt more than the limit. A refusal comes before any password is
//! checked, whether or not the account exists, so a 429 reveals nothing either.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::db::{Conn, DbError};

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures per account from one client address per window
    /// (`LOGIN_MAX_FAILURES_PER_ACCOUNT`).
    pub per_account: u32,
    /// Failures per client address per window, whatever the accounts.
    pub per_address: u32,
    /// The window.
    pub window: Duration,
    /// The first progressive delay (zero: none), doubled with each further failure.
    pub delay: Duration,
}

/// The counters one login attempt is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes {
    /// `login:NAME@ADDRESS`: this account from this address.
    pub pair: String,
    /// `address:ADDRESS`: every login from this address.
    pub address: String,
}

impl Scopes {
    /// The scopes of an attempt on `username` from `address` (the client's, see
    /// [`TrustedProxies`](super::TrustedProxies)). A name no account can have (not
    /// [`valid_username`](super::valid_username)) is charged as the empty name: it protects
    /// no account, and it never reaches the database (where U+0000 cannot be stored, and a
    /// long name would only grow the table).
    ///
    /// ```
    /// use pgbridge::auth::throttle::Scopes;
    ///
    /// let scopes = Scopes::new("ada", Some("2001:db8::1:2:3:4".parse().unwrap()));
    /// assert_eq!(scopes.pair, "login:ada@2001:db8::/64");
    /// assert_eq!(scopes.address, "address:2001:db8::/64");
    /// assert_eq!(Scopes::new("a\u{0}b", None).pair, "login:@unknown");
    /// ```
    pub fn new(username: &str, address: Option<IpAddr>) -> Self {
        let username = if super::valid_username(username) {
            username
        } else {
            ""
        };
        let address = match address.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(ip)) => ip.to_string(),
            Some(IpAddr::V6(ip)) => match ipnet::Ipv6Net::new(ip, 64) {
                Ok(net) => net.trunc().to_string(),
                Err(_) => ip.to_string(),
            },
            None => "unknown".into(),
        };
        Self {
            pair: format!("login:{username}@{address}"),
            address: format!("address:{address}"),
        }
    }

    /// Both scopes, in the order every statement here locks their rows (their text order,
    /// as the primary key's index returns them), so concurrent attempts cannot deadlock.
    fn both(&self) -> Vec<String> {
        let mut both = vec![self.pair.clone(), self.address.clone()];
        both.sort();
        both
    }
}

/// What [`reserve`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Check the password; then report [`failed`] or [`succeeded`].
    Granted,
    /// Refused: 429, retry after this many seconds.
    Refused {
        /// Seconds until the scope's delay or window ends.
        retry_after: u64,
        /// The scopes that refused.
        scopes: Vec<String>,
    },
}

/// How long this process remembers a refusal and refuses the same scope again without
/// asking the database: a client hammering a refused scope costs no round trip, and no
/// pooled connection waits on its counter's row lock. Short, because a refusal can be
/// lifted early (a correct password from the same pair forgets the pair's failures).
pub const REMEMBER_REFUSAL: Duration = Duration::from_secs(1);

/// Refusals this process remembers for [`REMEMBER_REFUSAL`] (at most [`Recent::CAPACITY`]
/// scopes; past that the oldest are forgotten).
///
/// ```
/// use pgbridge::auth::throttle::{Recent, Scopes};
///
/// let recent = Recent::default();
/// let scopes = Scopes::new("ada", None);
/// assert_eq!(recent.refused(&scopes), None);
/// recent.remember(&[scopes.pair.clone()], 30);
/// assert_eq!(recent.refused(&scopes), Some(30));
/// ```
#[derive(Debug, Default)]
pub struct Recent {
    /// Scope → (remembered until, retry after this instant).
    refused: std::sync::Mutex<std::collections::HashMap<String, (Instant, Instant)>>,
}

impl Recent {
    /// Most scopes remembered.
    pub const CAPACITY: usize = 10_000;

    /// `Some(seconds)` if a scope of `scopes` was refused within [`REMEMBER_REFUSAL`].
    pub fn refused(&self, scopes: &Scopes) -> Option<u64> {
        let now = Instant::now();
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        [&scopes.pair, &scopes.address]
            .into_iter()
            .filter_map(|scope| refused.get(scope))
            .filter(|(until, _)| *until > now)
            .map(|(_, retry)| {
                let left = retry.saturating_duration_since(now);
                (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
            })
            .max()
    }

    /// Remembers that `scopes` refused, with `retry_after` seconds to wait.
    pub fn remember(&self, scopes: &[String], retry_after: u64) {
        let now = Instant::now();
        let retry = now + Duration::from_secs(retry_after);
        let until = now + REMEMBER_REFUSAL.min(Duration::from_secs(retry_after));
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if refused.len() >= Self::CAPACITY {
            refused.retain(|_, (until, _)| *until > now);
            if refused.len() >= Self::CAPACITY {
                refused.clear();
            }
        }
        for scope in scopes {
            refused.insert(scope.clone(), (until, retry));
        }
    }
}

/// The start of the current window, in SQL, for a window of `$n` seconds.
macro_rules! window_start {
    ($n:literal) => {
        concat!(
            "to_timestamp(floor(extract(epoch FROM now())::float8 / $",
            $n,
            "::float8) * $",
            $n,
            "::float8)"
        )
    };
}

/// The limit of the row `f`'s scope, in SQL: `$a` for addresses, `$p` for pairs.
macro_rules! limit_of {
    ($a:literal, $p:literal) => {
        limit_for!("f", $a, $p)
    };
}

/// The limit of the scope in `alias.scope`, in SQL: `$a` for addresses, `$p` for pairs.
macro_rules! limit_for {
    ($alias:literal, $a:literal, $p:literal) => {
        concat!(
            "(CASE WHEN ",
            $alias,
            ".scope LIKE 'address:%' THEN $",
            $a,
            "::int4 ELSE $",
            $p,
            "::int4 END)"
        )
    };
}

/// The start of the previous window, in SQL, for a window of `$n` seconds.
macro_rules! previous_start {
    ($n:literal) => {
        concat!(
            window_start!($n),
            " - make_interval(secs => $",
            $n,
            "::float8)"
        )
    };
}

/// How much of the previous window still lies within the last `$n` seconds, in SQL: 1 as
/// the current window starts, 0 as it ends. The sliding count is the current window's
/// failures plus the previous window's times this.
macro_rules! previous_weight {
    ($n:literal) => {
        concat!(
            "(1 - (extract(epoch FROM now())::float8 - floor(extract(epoch FROM now())::float8 / $",
            $n,
            "::float8) * $",
            $n,
            "::float8) / $",
            $n,
            "::float8)"
        )
    };
}

/// The previous window's failures of the row `f`'s scope (0 if none), in SQL.
macro_rules! previous_failures {
    ($n:literal) => {
        concat!(
            "coalesce((SELECT p.failures FROM login_failures p WHERE p.scope = f.scope \
             AND p.window_start = ",
            previous_start!($n),
            "), 0)"
        )
    };
}

/// The sliding count of the row `f`'s scope, in SQL.
macro_rules! sliding_failures {
    ($n:literal) => {
        concat!(
            "(f.failures + ",
            previous_failures!($n),
            " * ",
            previous_weight!($n),
            ")"
        )
    };
}

fn window_secs(limits: &Limits) -> f64 {
    limits.window.as_secs().max(1) as f64
}

fn limit(n: u32) -> i32 {
    i32::try_from(n.max(1)).unwrap_or(i32::MAX)
}

/// Reserves one attempt in both scopes, atomically: granted only if neither has reached
/// its limit nor is waiting out a delay (then nothing is counted).
pub async fn reserve(
    conn: &mut Conn,
    scopes: &Scopes,
    limits: &Limits,
) -> Result<Reservation, DbError> {
    let names = scopes.both();
    let window = window_secs(limits);
    let (per_address, per_pair) = (limit(limits.per_address), limit(limits.per_account));
    let granted = {
        let tx = conn.transaction().await?;
        // The current window's row is created (or counted up) only while the sliding count
        // — this window's failures plus the overlapping share of the previous window's — is
        // under the limit and no delay holds, the previous window's delay included: a new
        // window does not start from zero.
        let rows = tx
            .query(
                concat!(
                    "INSERT INTO login_failures AS f (scope, window_start, failures, not_before) \
                     SELECT s.scope, ",
                    window_start!(2),
                    ", 1, '-infinity' FROM unnest($1::text[]) AS s (scope) \
                     LEFT JOIN login_failures p ON p.scope = s.scope AND p.window_start = ",
                    previous_start!(2),
                    " WHERE coalesce(p.not_before, '-infinity') <= now() \
                     AND coalesce(p.failures, 0) * ",
                    previous_weight!(2),
                    " < ",
                    limit_for!("s", 3, 4),
                    " ON CONFLICT (scope, window_start) DO UPDATE SET failures = f.failures + 1 \
                     WHERE f.not_before <= now() AND ",
                    sliding_failures!(2),
                    " < ",
                    limit_of!(3, 4),
                    " RETURNING f.scope"
                ),
                &[&names, &window, &per_address, &per_pair],
            )
            .await?;
        // Both or neither: dropping the transaction rolls a lone reservation back.
        let granted: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        if granted.len() == names.len() {
            tx.commit().await?;
            return Ok(Reservation::Granted);
        }
        granted
    };
    let refusing = names
        .iter()
        .filter(|name| !granted.contains(name))
        .cloned()
        .collect();
    // How long until each scope may try again: its delay, or until its sliding count falls
    // under the limit — within this window if this window's own failures are under it
    // (the previous window's share shrinks as time passes), else after this window ends,
    // when its failures become the previous window's, shrinking in turn.
    let row = conn
        .query_one(
            concat!(
                "SELECT ceil(max(greatest(\
                   CASE WHEN greatest(c.not_before, p.not_before) > now() \
                     THEN extract(epoch FROM greatest(c.not_before, p.not_before) - now()) ELSE 0 END, \
                   CASE \
                     WHEN coalesce(c.failures, 0) + coalesce(p.failures, 0) * w.weight < w.lim THEN 0 \
                     WHEN coalesce(c.failures, 0) < w.lim \
                       THEN $2::float8 * (1 - (w.lim - coalesce(c.failures, 0)) / p.failures::float8) - (1 - w.weight) * $2::float8 \
                     ELSE w.weight * $2::float8 + $2::float8 * (1 - w.lim / c.failures::float8) \
                   END)))::int8 \
                 FROM unnest($1::text[]) AS s (scope) \
                 CROSS JOIN LATERAL (SELECT ",
                previous_weight!(2),
                " AS weight, ",
                limit_for!("s", 3, 4),
                "::float8 AS lim) AS w \
                 LEFT JOIN login_failures c ON c.scope = s.scope AND c.window_start = ",
                window_start!(2),
                " LEFT JOIN login_failures p ON p.scope = s.scope AND p.window_start = ",
                previous_start!(2)
            ),
            &[&names, &window, &per_address, &per_pair],
        )
        .await?;
    let left: Option<i64> = row.get(0);
    Ok(Reservation::Refused {
        retry_after: left.unwrap_or(1).max(1) as u64,
        scopes: refusing,
    })
}

/// The reserved attempt failed: it stays counted, and each scope past half its limit
/// waits the progressive delay before its next attempt. Forgets windows long past.
pub async fn failed(conn: &Conn, scopes: &Scopes, limits: &Limits) -> Result<(), DbError> {
    let window = window_secs(limits);
    let delay = limits.delay.as_secs_f64();
    // One statement per scope, each locking one row: nothing here waits while holding
    // another row's lock (a reservation holds the address's and waits for the pair's).
    for scope in scopes.both().into_iter().filter(|_| delay > 0.0) {
        conn.execute(
            concat!(
                "UPDATE login_failures f SET not_before = now() + make_interval(secs => \
                 least($2::float8, $5::float8 * 2 ^ (floor(",
                sliding_failures!(2),
                ") - ceil(",
                limit_of!(3, 4),
                " / 2.0))::float8)) \
                 WHERE f.scope = $1 AND f.window_start = ",
                window_start!(2),
                " AND ",
                sliding_failures!(2),
                " >= ceil(",
                limit_of!(3, 4),
                " / 2.0)"
            ),
            &[
                &scope,
                &window,
                &limit(limits.per_address),
                &limit(limits.per_account),
                &delay,
            ],
        )
        .await?;
    }
    conn.execute(
        "DELETE FROM login_failures WHERE window_start < now() - make_interval(secs => $1::float8 * 2)",
        &[&window],
    )
    .await?;
    Ok(())
}

/// The reserved attempt succeeded: the pair's failures are forgotten (its owner is in),
/// and the address gets its reservation back.
pub async fn succeeded(conn: &Conn, scopes: &Scopes, limits: &Limits) -> Result<(), DbError> {
    // Two statements, one row lock each: nothing here waits while holding another.
    conn.execute(
        concat!(
            "UPDATE login_failures SET failures = greatest(failures - 1, 0) \
             WHERE scope = $1 AND window_start = ",
            window_start!(2)
        ),
        &[&scopes.address, &window_secs(limits)],
    )
    .await?;
    conn.execute(
        "DELETE FROM login_failures WHERE scope = $1",
        &[&scopes.pair],
    )
    .await?;
    Ok(())
}
