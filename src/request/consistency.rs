//! Read-your-writes over HTTP: the `Pgbridge-Commit-Lsn` token a write returns, and the
//! `Pgbridge-Min-Lsn` (or cookie) a read presents back. The routing itself is
//! [`crate::db::replica`].
//!
//! ```console
//! $ curl -i -X POST localhost:8080/notes -H 'Content-Type: application/json' -d '{"title":"a"}'
//! pgbridge-commit-lsn: 0/1A2B3C4
//! set-cookie: Pgbridge-Commit-Lsn=0/1A2B3C4; Path=/; Max-Age=300; SameSite=Lax; HttpOnly
//!
//! $ curl -i localhost:8080/notes/1 -H 'Pgbridge-Min-Lsn: 0/1A2B3C4'
//! pgbridge-served-by: standby        # once the standby has replayed 0/1A2B3C4; else primary
//! ```

use crate::db::replica::{Lsn, ReadFrom, ReadRouter, Reader, commit_lsn};
use crate::db::{Conn, DbError, Scoped};
use crate::error::ApiError;
use awsgi::Environ;

/// Response header (and cookie name) carrying a write's commit position.
pub const COMMIT_LSN: &str = "Pgbridge-Commit-Lsn";
/// Request header naming the position a read must see.
pub const MIN_LSN: &str = "Pgbridge-Min-Lsn";
/// Response header saying which server answered a read: `primary` or `standby`.
pub const SERVED_BY: &str = "Pgbridge-Served-By";
/// How long browsers keep the cookie: long enough for any standby to catch up.
const COOKIE_MAX_AGE_SECS: u32 = 300;

/// The WAL position the request asks to see: the `Pgbridge-Min-Lsn` header (malformed is a
/// 400), else the `Pgbridge-Commit-Lsn` cookie (malformed is ignored: browsers send
/// whatever they hold).
pub fn min_lsn(environ: &Environ) -> Result<Option<Lsn>, ApiError> {
    if let Some(value) = environ.headers().get(MIN_LSN) {
        let lsn = value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<Lsn>().ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{MIN_LSN} must be a WAL position like 0/16B3748 (from {COMMIT_LSN})"
                ))
            })?;
        return Ok(Some(lsn));
    }
    let from_cookie = crate::http::cookie::values(environ.headers(), COMMIT_LSN)
        .filter_map(|value| value.parse::<Lsn>().ok())
        .max();
    Ok(from_cookie)
}

/// Where a read goes: taken from the environ (synchronously: the environ does not cross
/// an `.await`), then [`ReadRoute::reader`].
#[derive(Debug)]
pub struct ReadRoute {
    router: ReadRouter,
    min_lsn: Option<Lsn>,
}

impl ReadRoute {
    /// A connection for a read that tolerates lag but must see the request's own writes:
    /// a standby when one is usable and caught up, else the primary.
    pub async fn reader(&self) -> Result<Reader, DbError> {
        self.router.reader(self.min_lsn).await
    }

    /// A connection for the one retry of a read whose first try on `failed` met a
    /// failover ([`ReadRouter::retry_reader`]); `None`: nowhere else to go.
    pub async fn retry_reader(&self, failed: ReadFrom) -> Result<Option<Reader>, DbError> {
        self.router.retry_reader(self.min_lsn, failed).await
    }

    /// The primary pool (where sessions are looked up, and writes go).
    pub fn primary(&self) -> &crate::db::Db {
        self.router.primary()
    }

    /// Whether any standby is configured (else every read goes to the primary).
    pub fn has_standbys(&self) -> bool {
        self.router.has_standbys()
    }
}

/// The request's read route: the [`ReadRouter`] extension (the primary alone if there is
/// none) and the position the request must see.
pub fn read_route(environ: &Environ) -> Result<ReadRoute, ApiError> {
    let min_lsn = min_lsn(environ)?;
    let router = match super::provided::<ReadRouter>(environ.extensions()) {
        Some(router) => router.clone(),
        None => ReadRouter::primary_only(super::db(environ)?),
    };
    Ok(ReadRoute { router, min_lsn })
}

/// The headers a write answers with, read on the write's own connection after its
/// commit: `Pgbridge-Commit-Lsn` and a cookie of the same name.
pub async fn commit_headers(conn: &Conn) -> Result<[(&'static str, String); 2], ApiError> {
    Ok(lsn_headers(commit_lsn(conn).await?))
}

/// Commits an owner-scoped write and returns the headers of [`commit_headers`], in one
/// round trip ([`Scoped::commit_lsn`]).
pub async fn commit_scoped(scoped: Scoped) -> Result<[(&'static str, String); 2], ApiError> {
    Ok(lsn_headers(scoped.commit_lsn().await?))
}

/// `Pgbridge-Commit-Lsn: lsn` and the cookie of the same name.
pub fn lsn_headers(lsn: Lsn) -> [(&'static str, String); 2] {
    [
        (COMMIT_LSN, lsn.to_string()),
        (
            "Set-Cookie",
            format!(
                "{COMMIT_LSN}={lsn}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; SameSite=Lax; HttpOnly"
            ),
        ),
    ]
}

/// The `Pgbridge-Served-By` header for a read from `from` (a [`Reader`]'s or a
/// [`ScopedRead`](crate::db::replica::ScopedRead)'s `from()`).
pub fn served_by(from: ReadFrom) -> (&'static str, &'static str) {
    (SERVED_BY, from.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environ(headers: &[(&str, &str)]) -> Environ {
        let mut request = http::Request::get("/notes");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Environ::builder(request.body(()).unwrap()).build()
    }

    #[test]
    fn the_header_wins_and_must_be_well_formed() {
        let e = environ(&[
            ("Pgbridge-Min-Lsn", "0/10"),
            ("Cookie", "Pgbridge-Commit-Lsn=0/20"),
        ]);
        assert_eq!(min_lsn(&e).unwrap(), Some(Lsn(0x10)));
        let e = environ(&[("Pgbridge-Min-Lsn", "nonsense")]);
        assert_eq!(min_lsn(&e).unwrap_err().status(), 400);
    }

    #[test]
    fn the_cookie_is_read_and_garbage_ignored() {
        let e = environ(&[("Cookie", "a=b; Pgbridge-Commit-Lsn=1/A0; c=d")]);
        assert_eq!(min_lsn(&e).unwrap(), Some(Lsn((1 << 32) | 0xA0)));
        let e = environ(&[("Cookie", "Pgbridge-Commit-Lsn=garbage")]);
        assert_eq!(min_lsn(&e).unwrap(), None);
        assert_eq!(min_lsn(&environ(&[])).unwrap(), None);
    }
}
