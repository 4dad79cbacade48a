//! Idempotency keys: a `POST` retried with the same `Idempotency-Key` gets the response
//! recorded for the first one, in the same transaction as what it created.
//!
//! Keys are scoped by owner (the `idempotency_keys` policies: one account never replays
//! another's) and by route ([`Spec::idempotency_route`](super::Spec::idempotency_route)):
//! one key used on two resources records two responses.

use crate::db::{DbError, Queries};

/// A response recorded under an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// SHA-256 of the request body it answered.
    pub request_hash: Vec<u8>,
    /// Its status.
    pub status: u16,
    /// Its `Location`.
    pub location: String,
    /// Its `ETag`.
    pub etag: String,
    /// Its JSON body.
    pub response: serde_json::Value,
}

/// The response recorded under `key` on `route`, if any (the owner's only: the policies).
pub async fn recorded(
    conn: &impl Queries,
    route: &str,
    key: &str,
) -> Result<Option<Recorded>, DbError> {
    let row = conn
        .query_opt(
            "SELECT request_hash, status, location, etag, response FROM idempotency_keys \
             WHERE route = $1 AND key = $2",
            &[&route, &key],
        )
        .await?;
    Ok(row.map(|row| Recorded {
        request_hash: row.get(0),
        status: u16::try_from(row.get::<_, i16>(1)).unwrap_or(500),
        location: row.get(2),
        etag: row.get(3),
        response: row.get(4),
    }))
}

/// Records `response` under `key`. Fails with [`DbError::Conflict`] if another request
/// recorded the key first.
pub async fn record(
    tx: &impl Queries,
    route: &str,
    key: &str,
    recorded: &Recorded,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO idempotency_keys (route, key, request_hash, status, location, etag, response) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &route,
            &key,
            &recorded.request_hash,
            &i16::try_from(recorded.status).unwrap_or(500),
            &recorded.location,
            &recorded.etag,
            &recorded.response,
        ],
    )
    .await?;
    Ok(())
}
