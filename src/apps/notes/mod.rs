//! `/notes` — the template resource: JSON CRUD over Postgres, the part to copy.
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /notes` | 201, `Location`, `ETag`; `Idempotency-Key` makes a retry return the first response |
//! | `GET /notes?limit=&cursor=&tag=&q=` | a page, newest first, with an opaque `next_cursor` and an `ETag`; `If-None-Match` gives 304 |
//! | `GET /notes/{id}` | the note, its `ETag` and `Last-Modified`; `If-None-Match` (or `If-Modified-Since`) gives 304, a failing `If-Match` 412 |
//! | `PATCH /notes/{id}` | a JSON merge patch; requires `If-Match` (428 without, 412 if stale) |
//! | `DELETE /notes/{id}` | 204; `If-Match` optional |
//!
//! Notes and pages carry `Cache-Control: private, no-cache`: caches revalidate with the ETag.
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

use http::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::db::{Conn, DbError};
use crate::error::{ApiError, FieldError};
use awsgi::{Body, Environ, Error, StartResponse};

use super::bounded_query;
use super::consistency::{commit_scoped, served_by};
use crate::auth;
use conditional::{EntityTag, Outcome, Preconditions, Validators};
use store::{Filter, Recorded};

/// `Cache-Control` on notes and pages: any cache must revalidate (with the `ETag`) before
/// reusing them, and shared caches must not store them.
pub const CACHE_CONTROL: &str = "private, no-cache";

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 200;
/// The route `Idempotency-Key`s of `POST /notes` are scoped to (and to their owner): a
/// key never replays a response recorded for another route that copies the pattern.
pub const IDEMPOTENCY_ROUTE: &str = "POST /notes";

/// The application: mounted at `/notes` and `/notes/{id}`.
pub async fn app(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    // No token, or not a token: 401 before anything else (the session is checked when the
    // handler opens its owner-scoped transaction).
    auth::presented_token(&environ, auth::Carrier::Header)?;
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
        tag: text_query(&environ, "tag")?,
        q: text_query(&environ, "q")?,
    };
    let pre = Preconditions::from_headers(environ.headers())?;
    // A standby's or the primary's connection (read routing), in the owner's scope.
    let (_, conn) = auth::scoped_read(&environ).await?;
    let page = store::list(&conn, &filter, after, limit).await?;
    let served = served_by(conn.from());
    conn.commit().await?;
    let etag = page_etag(&page);
    let validators = Validators {
        etag: &etag,
        last_modified: None,
    };
    let headers = [
        ("ETag", etag.as_str()),
        ("Cache-Control", CACHE_CONTROL),
        served,
    ];
    match pre.evaluate(environ.method(), Some(&validators)) {
        Outcome::Proceed => {}
        Outcome::NotModified => return not_modified(&start_response, &headers),
        Outcome::PreconditionFailed => {
            return Err(precondition_failed(&pre, &validators, "page").into());
        }
    }
    let body = json!({
        "notes": page.notes,
        "next_cursor": page.next_after.map(conditional::encode_cursor),
    });
    send_json(&start_response, "200 OK", &headers, &body)
}

async fn show(environ: Environ, start_response: StartResponse, id: i64) -> Result<Body, Error> {
    let pre = Preconditions::from_headers(environ.headers())?;
    let (_, conn) = auth::scoped_read(&environ).await?;
    let note = store::get(&conn, id).await?.ok_or_else(|| not_found(id))?;
    let served = served_by(conn.from());
    conn.commit().await?;
    let etag = conditional::etag(note.version);
    let last_modified = conditional::http_date(note.updated_epoch);
    let validators = Validators {
        etag: &etag,
        last_modified: Some(note.updated_epoch),
    };
    let headers = [
        ("ETag", etag.as_str()),
        ("Last-Modified", last_modified.as_str()),
        ("Cache-Control", CACHE_CONTROL),
        served,
    ];
    match pre.evaluate(environ.method(), Some(&validators)) {
        Outcome::Proceed => send_json(&start_response, "200 OK", &headers, &json!(note)),
        Outcome::NotModified => not_modified(&start_response, &headers),
        Outcome::PreconditionFailed => Err(precondition_failed(&pre, &validators, "note").into()),
    }
}

async fn create(mut environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let key = idempotency_key(&environ)?;
    let pre = Preconditions::from_headers(environ.headers())?;
    require_json(&environ, &["application/json"])?;
    let bytes = environ
        .input()
        .read_to_end()
        .await
        .map_err(ApiError::from)?;
    let fields = input::new_note(&bytes)?;
    let request_hash = Sha256::digest(&bytes).to_vec();

    // Two tries: the second runs only if a concurrent request with the same key won the
    // race, and then finds its recorded response. Each is one owner-scoped transaction.
    for attempt in 0..2 {
        let (_, tx) = auth::scoped(&environ).await?;
        if attempt == 0 {
            // Against the owner's collection, once, before any replay (as without a race).
            collection_preconditions(&tx, &pre).await?;
        }
        if let Some(key) = &key
            && let Some(first) = store::recorded(&tx, IDEMPOTENCY_ROUTE, key).await?
        {
            let lsn = commit_scoped(tx).await?;
            return replay(&start_response, first, &request_hash, &lsn);
        }
        let note = store::insert(&tx, &fields).await?;
        let recorded = Recorded {
            request_hash: request_hash.clone(),
            status: 201,
            location: format!("{}/notes/{}", environ.script_name(), note.id),
            etag: conditional::etag(note.version),
            response: json!(note),
        };
        if let Some(key) = &key {
            match store::record(&tx, IDEMPOTENCY_ROUTE, key, &recorded).await {
                Ok(()) => {}
                Err(DbError::Conflict { .. }) => continue, // dropping `tx` rolls the note back
                Err(err) => return Err(ApiError::from(err).into()),
            }
        }
        let lsn = commit_scoped(tx).await?;
        return send_recorded(&start_response, &recorded, false, &lsn);
    }
    tracing::error!("idempotency key raced twice");
    Err(ApiError::Internal.into())
}

/// `If-Match`/`If-None-Match` on `POST /notes` are about the collection, which always has a
/// current representation (`GET /notes`): `If-None-Match: *` fails (412), `If-Match: *`
/// holds, and listed tags are compared with the first page's ETag.
async fn collection_preconditions(conn: &Conn, pre: &Preconditions) -> Result<(), ApiError> {
    if pre.if_match.is_none() && pre.if_none_match.is_none() {
        return Ok(());
    }
    let etag = if pre.names_tags() {
        page_etag(&store::list(conn, &Filter::default(), None, DEFAULT_LIMIT).await?)
    } else {
        String::from("\"\"")
    };
    let validators = Validators {
        etag: &etag,
        last_modified: None,
    };
    match pre.evaluate(&Method::POST, Some(&validators)) {
        Outcome::Proceed => Ok(()),
        _ => Err(precondition_failed(pre, &validators, "collection")),
    }
}

async fn patch(
    mut environ: Environ,
    start_response: StartResponse,
    id: i64,
) -> Result<Body, Error> {
    let pre = Preconditions::from_headers(environ.headers())?;
    if pre.if_match.is_none() {
        return Err(ApiError::PreconditionRequired(
            "PATCH needs If-Match with the note's ETag, so that no update is lost".into(),
        )
        .into());
    }
    require_json(
        &environ,
        &["application/merge-patch+json", "application/json"],
    )?;
    let bytes = environ
        .input()
        .read_to_end()
        .await
        .map_err(ApiError::from)?;
    let (_, conn) = auth::scoped(&environ).await?;

    let current = store::get(&conn, id).await?.ok_or_else(|| not_found(id))?;
    check_note(&pre, &Method::PATCH, &current)?;
    let fields = input::merge_patch(&bytes, &current.fields())?;
    // Conditional on the version the patch was merged into: a concurrent change makes this
    // match no row, and the client gets 412 instead of silently losing that change.
    let updated = store::update(&conn, id, Some(current.version), &fields).await?;
    let note = match updated {
        Some(note) => note,
        None => return Err(gone_or_stale(&conn, id).await?.into()),
    };
    let [lsn, cookie] = commit_scoped(conn).await?;
    let etag = conditional::etag(note.version);
    let last_modified = conditional::http_date(note.updated_epoch);
    send_json(
        &start_response,
        "200 OK",
        &[
            ("ETag", &etag),
            ("Last-Modified", &last_modified),
            ("Cache-Control", CACHE_CONTROL),
            (lsn.0, &lsn.1),
            (cookie.0, &cookie.1),
        ],
        &json!(note),
    )
}

async fn delete(environ: Environ, start_response: StartResponse, id: i64) -> Result<Body, Error> {
    let pre = Preconditions::from_headers(environ.headers())?;
    let (_, conn) = auth::scoped(&environ).await?;
    let expected = if pre.if_match.is_some() || pre.if_none_match.is_some() {
        let current = store::get(&conn, id).await?.ok_or_else(|| not_found(id))?;
        check_note(&pre, &Method::DELETE, &current)?;
        Some(current.version)
    } else {
        None
    };
    if !store::delete(&conn, id, expected).await? {
        return Err(gone_or_stale(&conn, id).await?.into());
    }
    start_response.start("204 No Content", commit_scoped(conn).await?)?;
    Ok(Body::empty())
}

/// Evaluates a write's preconditions against the note as it is.
fn check_note(pre: &Preconditions, method: &Method, current: &store::Note) -> Result<(), ApiError> {
    let etag = conditional::etag(current.version);
    let validators = Validators {
        etag: &etag,
        last_modified: Some(current.updated_epoch),
    };
    match pre.evaluate(method, Some(&validators)) {
        Outcome::Proceed => Ok(()),
        _ => Err(precondition_failed(pre, &validators, "note")),
    }
}

/// The 412 for preconditions that do not hold, naming the one that failed.
fn precondition_failed(pre: &Preconditions, current: &Validators<'_>, what: &str) -> ApiError {
    let tag = EntityTag::parse(current.etag);
    if pre
        .if_match
        .as_ref()
        .is_some_and(|m| !m.matches_strong(tag.as_ref()))
    {
        ApiError::PreconditionFailed(format!(
            "If-Match does not name the {what}'s current version; GET it again"
        ))
    } else {
        ApiError::PreconditionFailed(format!(
            "If-None-Match matches the {what}'s current version"
        ))
    }
}

/// 304: no body, the validators and caching headers a 200 would carry.
fn not_modified(start_response: &StartResponse, headers: &[(&str, &str)]) -> Result<Body, Error> {
    start_response.start("304 Not Modified", headers.to_vec())?;
    Ok(Body::empty())
}

fn page_etag(page: &store::Page) -> String {
    conditional::list_etag(
        page.notes.iter().map(|n| (n.id, n.version)),
        page.next_after,
    )
}

/// A text filter from the query string: absent or empty is none; U+0000 is a 400.
fn text_query(environ: &Environ, name: &str) -> Result<Option<String>, ApiError> {
    match environ.query(name) {
        Some(value) if input::has_nul(&value) => Err(ApiError::bad_request(format!(
            "{name} {}",
            input::NUL_MESSAGE
        ))),
        value => Ok(value.filter(|v| !v.is_empty())),
    }
}

/// After a conditional write matched no row: 404 if the note is gone, else 412.
async fn gone_or_stale(conn: &Conn, id: i64) -> Result<ApiError, ApiError> {
    Ok(match store::get(conn, id).await? {
        None => not_found(id),
        Some(_) => stale(),
    })
}

fn replay(
    start_response: &StartResponse,
    first: Recorded,
    request_hash: &[u8],
    lsn: &[(&str, String)],
) -> Result<Body, Error> {
    if first.request_hash != request_hash {
        return Err(ApiError::Invalid(vec![FieldError {
            field: "Idempotency-Key".into(),
            message: "was already used with a different request body".into(),
        }])
        .into());
    }
    send_recorded(start_response, &first, true, lsn)
}

fn send_recorded(
    start_response: &StartResponse,
    recorded: &Recorded,
    replayed: bool,
    lsn: &[(&str, String)],
) -> Result<Body, Error> {
    let mut headers = vec![
        ("Location", recorded.location.as_str()),
        ("ETag", recorded.etag.as_str()),
        ("Cache-Control", CACHE_CONTROL),
    ];
    headers.extend(lsn.iter().map(|(name, value)| (*name, value.as_str())));
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
    // After a conditional write matched no row: the note changed since it was checked.
    ApiError::PreconditionFailed(
        "If-Match does not name the note's current version; GET it again".into(),
    )
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
