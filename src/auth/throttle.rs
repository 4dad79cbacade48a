//! Failed-login limits per account and per client address, counted in Postgres
//! (`login_failures`) so every replica sees the same counts.
//!
//! Counting is by fixed windows of the database's clock: `LOGIN_FAILURE_WINDOW_SECS`
//! long, aligned to the epoch. A scope whose failures in the current window reached its
//! limit answers 429 with `Retry-After` up to the window's end, before any password is
//! checked — whether or not the account exists, so the 429 reveals nothing either.

use std::time::Duration;

use crate::db::{Conn, DbError};

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures per account per window.
    pub per_account: u32,
    /// Failures per client address per window.
    pub per_address: u32,
    /// The window.
    pub window: Duration,
}

/// The counters one login attempt is charged to.
#[derive(Debug, Clone)]
pub struct Scopes {
    /// `account:NAME`.
    pub account: String,
    /// `address:IP`.
    pub address: String,
}

impl Scopes {
    /// The scopes of an attempt on `username` from `address`. A name no account can have
    /// (not [`valid_username`](super::valid_username)) is charged to the one scope
    /// `account:`: it protects no account, and it never reaches the database (where U+0000
    /// cannot be stored, and a long name would only grow the table).
    pub fn new(username: &str, address: Option<std::net::IpAddr>) -> Self {
        let username = if super::valid_username(username) {
            username
        } else {
            ""
        };
        Self {
            account: format!("account:{username}"),
            address: match address {
                Some(ip) => format!("address:{ip}"),
                None => "address:unknown".into(),
            },
        }
    }
}

/// `Some(seconds until the window ends)` when either scope has reached its limit.
pub async fn blocked(
    conn: &Conn,
    scopes: &Scopes,
    limits: &Limits,
) -> Result<Option<u64>, DbError> {
    let window = limits.window.as_secs().max(1) as f64;
    let rows = conn
        .query(
            "WITH w AS (SELECT to_timestamp(floor(extract(epoch FROM now())::float8 / $3::float8) * $3::float8) AS start) \
             SELECT f.scope, f.failures, \
                    ceil(extract(epoch FROM w.start + make_interval(secs => $3::float8) - now()))::bigint \
             FROM login_failures f, w \
             WHERE f.scope IN ($1, $2) AND f.window_start = w.start",
            &[&scopes.account, &scopes.address, &window],
        )
        .await?;
    let mut retry_after = None;
    for row in rows {
        let scope: String = row.get(0);
        let failures: i32 = row.get(1);
        let left: i64 = row.get(2);
        let limit = if scope == scopes.account {
            limits.per_account
        } else {
            limits.per_address
        };
        if failures as i64 >= limit as i64 {
            retry_after = Some(left.max(1) as u64);
        }
    }
    Ok(retry_after)
}

/// Counts one failure against both scopes (and forgets windows long past).
pub async fn record_failure(conn: &Conn, scopes: &Scopes, limits: &Limits) -> Result<(), DbError> {
    let window = limits.window.as_secs().max(1) as f64;
    let scopes = vec![scopes.account.clone(), scopes.address.clone()];
    conn.execute(
        "INSERT INTO login_failures (scope, window_start, failures) \
         SELECT s, to_timestamp(floor(extract(epoch FROM now())::float8 / $2::float8) * $2::float8), 1 \
         FROM unnest($1::text[]) AS s \
         ON CONFLICT (scope, window_start) \
         DO UPDATE SET failures = login_failures.failures + 1",
        &[&scopes, &window],
    )
    .await?;
    conn.execute(
        "DELETE FROM login_failures WHERE window_start < now() - make_interval(secs => $1::float8 * 2)",
        &[&window],
    )
    .await?;
    Ok(())
}
