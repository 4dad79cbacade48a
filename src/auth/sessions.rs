//! A login's new session: created under a per-account cap (`SESSION_MAX_PER_ACCOUNT`; the
//! oldest live sessions past it are revoked), with the housekeeping of expired and revoked
//! rows done in the same statement, so a looping client cannot grow the table. And the login
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
    /// Their ids.
    pub revoked_ids: Vec<i64>,
}

/// Creates a session with `token` (from [`token::generate`]) for `account_id` lasting
/// `ttl`, revokes the account's oldest live sessions past `max_sessions`, and deletes rows
/// that can never be used again: the account's expired ones and those revoked over a minute
/// ago, and up to [`PRUNE_BATCH`] expired ones of any account.
///
/// One statement, no transaction and no lock held while waiting: rows another login is
/// revoking or deleting right now are skipped (`FOR UPDATE SKIP LOCKED`), never waited for,
/// so concurrent logins cannot deadlock or hold pooled connections in a queue. Logins of one
/// account committing at the same moment do not see each other's new session, so the cap
/// can be passed by as many as log in at once, until that account's next login.
pub async fn create(
    conn: &Conn,
    token: &str,
    account_id: i64,
    ttl: Duration,
    max_sessions: u32,
) -> Result<NewSession, DbError> {
    // The new row is not visible to the other parts of the statement: keep one fewer.
    let keep_old = i64::from(max_sessions.max(1)) - 1;
    let row = conn
        .query_one(
            concat!(
                "WITH new AS ( \
                     INSERT INTO sessions (account_id, token_hash, expires_at) \
                     VALUES ($1, $2, now() + make_interval(secs => $3::float8)) \
                     RETURNING expires_at), \
                 capped AS ( \
                     UPDATE sessions SET revoked_at = now() WHERE id IN ( \
                         SELECT id FROM sessions \
                         WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > now() \
                         ORDER BY id DESC OFFSET $4 FOR UPDATE SKIP LOCKED) \
                     RETURNING id), \
                 pruned AS ( \
                     DELETE FROM sessions WHERE id IN ( \
                         SELECT id FROM sessions WHERE account_id = $1 \
                           AND (expires_at <= now() OR revoked_at < now() - interval '1 minute') \
                         FOR UPDATE SKIP LOCKED) \
                     RETURNING id), \
                 pruned_elsewhere AS ( \
                     DELETE FROM sessions WHERE id IN ( \
                         SELECT id FROM sessions WHERE expires_at <= now() AND account_id <> $1 \
                         LIMIT $5 FOR UPDATE SKIP LOCKED) \
                     RETURNING id) \
                 SELECT ",
                crate::utc_text!("new.expires_at"),
                ", (SELECT count(*) FROM capped), \
                   (SELECT count(*) FROM pruned) + (SELECT count(*) FROM pruned_elsewhere), \
                   (SELECT coalesce(array_agg(id), '{}') FROM capped) \
                 FROM new"
            ),
            &[
                &account_id,
                &token::hash(token).as_slice(),
                &ttl.as_secs_f64(),
                &keep_old,
                &PRUNE_BATCH,
            ],
        )
        .await?;
    Ok(NewSession {
        expires_at: row.get(0),
        revoked: row.get(1),
        revoked_ids: row.get(3),
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
