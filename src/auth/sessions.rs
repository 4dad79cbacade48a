//! A login's new session: created under a per-account cap (`SESSION_MAX_PER_ACCOUNT`; the
//! oldest live sessions past it are revoked), with the housekeeping of expired and revoked
//! rows done on the way, so a looping client cannot grow the table. And the login
//! counters `/metrics` shows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::db::{Conn, DbError};

use super::token;

/// Expired sessions of any account deleted per login, at most (the rest go at the next).
pub const PRUNE_BATCH: i64 = 100;

/// A new session: its expiry (UTC, RFC 3339).
#[derive(Debug)]
pub struct NewSession {
    /// When it stops working.
    pub expires_at: String,
    /// Older sessions of the account this one revoked (past the cap).
    pub revoked: i64,
}

/// Creates a session with `token` (from [`token::generate`]) for `account_id` lasting `ttl`, revokes the account's oldest live
/// sessions past `max_sessions`, and deletes rows that can never be used again: the
/// account's expired ones and those revoked over a minute ago, and up to [`PRUNE_BATCH`]
/// expired ones of any account. Logins of one account are serialised (a row lock on the
/// account), so the cap holds under concurrent logins.
pub async fn create(
    conn: &mut Conn,
    token: &str,
    account_id: i64,
    ttl: Duration,
    max_sessions: u32,
) -> Result<NewSession, DbError> {
    let tx = conn.transaction().await?;
    tx.execute(
        "SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
        &[&account_id],
    )
    .await?;
    let row = tx
        .query_one(
            concat!(
                "INSERT INTO sessions (account_id, token_hash, expires_at) \
                 VALUES ($1, $2, now() + make_interval(secs => $3::float8)) \
                 RETURNING ",
                crate::utc_text!("expires_at")
            ),
            &[&account_id, &token::hash(token), &ttl.as_secs_f64()],
        )
        .await?;
    let expires_at: String = row.get(0);
    let keep = i64::from(max_sessions.max(1));
    let row = tx
        .query_one(
            "WITH capped AS ( \
                 UPDATE sessions SET revoked_at = now() WHERE id IN ( \
                     SELECT id FROM sessions \
                     WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > now() \
                     ORDER BY id DESC OFFSET $2) \
                 RETURNING id), \
             pruned AS ( \
                 DELETE FROM sessions WHERE id IN ( \
                     SELECT id FROM sessions WHERE account_id = $1 \
                       AND (expires_at <= now() OR revoked_at < now() - interval '1 minute') \
                     UNION ALL \
                     (SELECT id FROM sessions WHERE expires_at <= now() LIMIT $3)) \
                 RETURNING id) \
             SELECT (SELECT count(*) FROM capped), (SELECT count(*) FROM pruned)",
            &[&account_id, &keep, &PRUNE_BATCH],
        )
        .await?;
    tx.commit().await?;
    Ok(NewSession {
        expires_at,
        revoked: row.get(0),
    })
}

/// Login counters, shown on `/metrics`.
#[derive(Debug, Default)]
pub struct LoginStats {
    password_checks: AtomicU64,
    throttled: AtomicU64,
    sessions_revoked: AtomicU64,
}

impl LoginStats {
    /// Counts one password checked against a stored (or dummy) hash.
    pub fn checked(&self) {
        self.password_checks.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one login refused by the throttle, unchecked.
    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts sessions revoked by the per-account cap.
    pub fn revoked(&self, n: i64) {
        self.sessions_revoked
            .fetch_add(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
    }

    /// Passwords checked so far.
    ///
    /// ```
    /// let stats = pgbridge::auth::LoginStats::default();
    /// stats.checked();
    /// assert_eq!(stats.password_checks(), 1);
    /// ```
    pub fn password_checks(&self) -> u64 {
        self.password_checks.load(Ordering::Relaxed)
    }
}

/// [`LoginStats`] on `/metrics`.
#[derive(Debug)]
pub struct LoginGauges(pub std::sync::Arc<LoginStats>);

impl Collector for LoginGauges {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = &self.0;
        crate::metrics::counter(
            &mut e,
            "pgbridge_login_password_checks",
            "Passwords checked by POST /sessions (each an Argon2id hash).",
            stats.password_checks(),
        )?;
        crate::metrics::counter(
            &mut e,
            "pgbridge_login_throttled",
            "Logins refused by the failed-login limits or delays, unchecked.",
            stats.throttled.load(Ordering::Relaxed),
        )?;
        crate::metrics::counter(
            &mut e,
            "pgbridge_sessions_revoked_by_cap",
            "Sessions revoked because their account passed SESSION_MAX_PER_ACCOUNT.",
            stats.sessions_revoked.load(Ordering::Relaxed),
        )
    }
}
