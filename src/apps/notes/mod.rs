//! `/notes` — the template resource: JSON CRUD over Postgres, the part to copy.
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /notes` | 201, `Location`, `ETag`; `Idempotency-Key` makes a retry return the first response |
//! | `GET /notes?limit=&cursor=&tag=&q=` | a page, newest first, with an opaque `next_cursor` |
//! | `GET /notes/{id}` | the note and its `ETag`; `If-None-Match` gives 304 |
//! | `PATCH /notes/{id}` | a JSON merge patch; requires `If-Match` (428 without, 412 if stale) |
//! | `DELETE /notes/{id}` | 204; `If-Match` optional |
//!
//! Each handler is an ordinary `async fn` on the contract: validate first (nothing touches
//! the database until the input is known good), then one statement or one transaction.
//! Errors are [`ApiError`]s returned with `?`; the layer renders them as JSON.
//!
//! - [`input`]: what clients may send, checked field by field;
//! - [`store`]: the SQL;
//! - [`conditional`]: ETags, preconditions and cursors.

pub mod conditional;
pub mod events;
pub mod input;
pub mod store;

use http::{Method, header};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::awsgi::{Body, Environ, Error, StartResponse};
use crate::db::{DbError, Queries};
use crate::error::{ApiError, FieldError};

use super::{bounded_query, db};
use store::{Filter, Recorded};

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 200;

/// The application: mounted at `/notes` and `/notes/{id}`.
pub async fn app(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let id = environ.routing_arg("id").map(str::to_owned);
    let method = environ.method().clone();
    match (id, method) {
        (None, Method::GET | Method::HEAD) => list(environ, start_response).await,
        (None, Method::POST) => create(environ, start_response).await,
        (Some(id), Method::GET | Method::HEAD) => {
            show(environ, start_response, note_id(&id)?).await
        }
        (Some(id), Method::PATCH) => patch(environ, start_response, note_id(&id)?).await,
        (Some(id), Method::DELETE) => delete(environ, start_response, note_id(&id)?).await,
        (None, _) => Err(ApiError::MethodNotAllowed {
            allow: "GET, HEAD, POST",
        }
        .into()),
        (Some(_), _) => Err(ApiError::MethodNotAllowed {
            allow: "GET, HEAD, PATCH, DELETE",
        }
        .into()),
    }
}

async fn list(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let limit = bounded_query(&environ, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)?;
    let after = environ
        .query("cursor")
        .map(|c| conditional::decode_cursor(&c))
        .transpose()?;
    let filter = Filter {
        tag: environ.query("tag").filter(|t| !t.is_empty()),
        q: environ.query("q").filter(|q| !q.is_empty()),
    };
    let conn = db(&environ)?.shared().clone();
    let page = store::list(&conn, &filter, after, limit).await?;
    let body = json!({
        "notes": page.notes,
        "next_cursor": page.next_after.map(conditional::encode_cursor),
    });
    send_json(&start_response, "200 OK", &[], &body)
}

async fn show(environ: Environ, start_response: StartResponse, id: i64) -> Result<Body, Error> {
    let conn = db(&environ)?.shared().clone();
    let note = store::get(&conn, id).await?.ok_or_else(|| not_found(id))?;
    let etag = conditional::etag(note.version);
    if header_str(&environ, header::IF_NONE_MATCH)
        .is_some_and(|h| conditional::none_match(h, note.version))
    {
        start_response.start("304 Not Modified", [("ETag", etag.as_str())])?;
        return Ok(Body::empty());
    }
    send_json(&start_response, "200 OK", &[("ETag", &etag)], &json!(note))
}

async fn create(mut environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let key = idempotency_key(&environ)?;
    require_json(&environ, &["application/json"])?;
    let bytes = environ
        .input()
        .read_to_end()
        .await
        .map_err(ApiError::from)?;
    let fields = input::new_note(&bytes)?;
    let request_hash = Sha256::digest(&bytes).to_vec();
    let mut conn = db(&environ)?.conn().await?;

    // Two tries: the second runs only if a concurrent request with the same key won the
    // race, and then finds its recorded response.
    for _ in 0..2 {
        if let Some(key) = &key {
            if let Some(first) = store::recorded(&conn, key).await? {
                return replay(&start_response, first, &request_hash);
            }
        }
        let tx = conn.transaction().await?;
        let note = store::insert(&tx, &fields).await?;
        let recorded = Recorded {
            request_hash: request_hash.clone(),
            status: 201,
            location: format!("{}/notes/{}", environ.script_name(), note.id),
            etag: conditional::etag(note.version),
            response: json!(note),
        };
        if let Some(key) = &key {
            match store::record(&tx, key, &recorded).await {
                Ok(()) => {}
                Err(DbError::Conflict { .. }) => continue, // dropping `tx` rolls the note back
                Err(err) => return Err(ApiError::from(err).into()),
            }
        }
        tx.commit().await?;
        return send_recorded(&start_response, &recorded, false);
    }
    tracing::error!("idempotency key raced twice");
    Err(ApiError::Internal.into())
}

async fn patch(
    mut environ: Environ,
    start_response: StartResponse,
    id: i64,
) -> Result<Body, Error> {
    let Some(if_match) = header_str(&environ, header::IF_MATCH) else {
        return Err(ApiError::PreconditionRequired(
            "PATCH needs If-Match with the note's ETag, so that no update is lost".into(),
        )
        .into());
    };
    let expected = conditional::if_match_version(if_match).ok_or_else(stale)?;
    require_json(
        &environ,
        &["application/merge-patch+json", "application/json"],
    )?;
    let bytes = environ
        .input()
        .read_to_end()
        .await
        .map_err(ApiError::from)?;
    let conn = db(&environ)?.shared().clone();

    let current = store::get(&conn, id).await?.ok_or_else(|| not_found(id))?;
    if expected.is_some_and(|v| v != current.version) {
        return Err(stale().into());
    }
    let fields = input::merge_patch(&bytes, &current.fields())?;
    // Conditional on the version the patch was merged into: a concurrent change makes this
    // match no row, and the client gets 412 instead of silently losing that change.
    let updated = store::update(&conn, id, Some(current.version), &fields).await?;
    let note = match updated {
        Some(note) => note,
        None => return Err(gone_or_stale(&conn, id).await?.into()),
    };
    send_json(
        &start_response,
        "200 OK",
        &[("ETag", &conditional::etag(note.version))],
        &json!(note),
    )
}

async fn delete(environ: Environ, start_response: StartResponse, id: i64) -> Result<Body, Error> {
    let expected = match header_str(&environ, header::IF_MATCH) {
        None => None,
        Some(h) => conditional::if_match_version(h).ok_or_else(stale)?,
    };
    let conn = db(&environ)?.shared().clone();
    if !store::delete(&conn, id, expected).await? {
        return Err(gone_or_stale(&conn, id).await?.into());
    }
    start_response.start("204 No Content", Vec::<(String, String)>::new())?;
    Ok(Body::empty())
}

/// After a conditional write matched no row: 404 if the note is gone, else 412.
async fn gone_or_stale(conn: &impl Queries, id: i64) -> Result<ApiError, ApiError> {
    Ok(match store::get(conn, id).await? {
        None => not_found(id),
        Some(_) => stale(),
    })
}

fn replay(
    start_response: &StartResponse,
    first: Recorded,
    request_hash: &[u8],
) -> Result<Body, Error> {
    if first.request_hash != request_hash {
        return Err(ApiError::Invalid(vec![FieldError {
            field: "Idempotency-Key".into(),
            message: "was already used with a different request body".into(),
        }])
        .into());
    }
    send_recorded(start_response, &first, true)
}

fn send_recorded(
    start_response: &StartResponse,
    recorded: &Recorded,
    replayed: bool,
) -> Result<Body, Error> {
    let mut headers = vec![
        ("Location", recorded.location.as_str()),
        ("ETag", recorded.etag.as_str()),
    ];
    if replayed {
        headers.push(("Idempotent-Replayed", "true"));
    }
    let status = if recorded.status == 201 {
        "201 Created"
    } else {
        "200 OK"
    };
    send_json(start_response, status, &headers, &recorded.response)
}

fn send_json(
    start_response: &StartResponse,
    status: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Result<Body, Error> {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    start_response.start(status, all)?;
    Ok(Body::from(serde_json::to_vec(body)?))
}

fn note_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found(format!("no note with id {raw:?}")))
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("no note with id {id}"))
}

fn stale() -> ApiError {
    ApiError::PreconditionFailed(
        "If-Match does not name the note's current version; GET it again".into(),
    )
}

fn header_str(environ: &Environ, name: header::HeaderName) -> Option<&str> {
    environ.headers().get(name).and_then(|v| v.to_str().ok())
}

fn require_json(environ: &Environ, accepted: &[&str]) -> Result<(), ApiError> {
    let media = environ.content_type().map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match media {
        Some(media) if accepted.contains(&media.as_str()) => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "send the body as {}",
            accepted.join(" or ")
        ))),
    }
}

fn idempotency_key(environ: &Environ) -> Result<Option<String>, ApiError> {
    let Some(value) = environ.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key.to_owned())),
        _ => Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}
