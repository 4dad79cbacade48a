//! The notes handlers, one per method and path: validate first (nothing touches the
//! database until the input is known good), then one owner-scoped unit: the session, the
//! owner, the role, the statements and `COMMIT` in one round trip ([`auth::Bearer`]).
//! A write that must read before it writes (`PATCH`, a conditional `DELETE`) takes two:
//! the read with the scope, then the write with the `COMMIT`.

use http::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::apps::{bounded_query, require_media_type};
use crate::auth::Bearer;
use crate::db::{Conn, DbError, Step, Unit};
use crate::error::ApiError;
use crate::request::consistency::{commit_scoped, lsn_headers, served_by};
use awsgi::{Body, Environ, Error, StartResponse};

use super::reply::*;
use super::request::*;
use super::store::{self, Filter, Recorded};
use super::{CACHE_CONTROL, DEFAULT_LIMIT, IDEMPOTENCY_ROUTE, MAX_LIMIT, input};
use crate::http::conditional::{self, Outcome, Preconditions, Validators};

pub(super) async fn list(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
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
    let mut bearer = Bearer::for_read(&environ)?;
    let pattern = store::pattern_of(&filter);
    let fetch = limit + 1;
    let (_, unit, from) = bearer
        .read_once(&[Step::new(
            store::LIST,
            &[&after, &filter.tag, &pattern, &fetch],
        )])
        .await?;
    let page = store::page_of(rows(&unit, 0), limit);
    let served = served_by(from);
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

pub(super) async fn show(
    environ: Environ,
    start_response: StartResponse,
    id: i64,
) -> Result<Body, Error> {
    let pre = Preconditions::from_headers(environ.headers())?;
    let mut bearer = Bearer::for_read(&environ)?;
    let (_, unit, from) = bearer.read_once(&[Step::new(store::GET, &[&id])]).await?;
    let note = store::note_of(rows(&unit, 0)).ok_or_else(|| not_found(id))?;
    let served = served_by(from);
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
        Outcome::Proceed => send_json(&start_response, "200 OK", &headers, &note),
        Outcome::NotModified => not_modified(&start_response, &headers),
        Outcome::PreconditionFailed => Err(precondition_failed(&pre, &validators, "note").into()),
    }
}

pub(super) async fn create(
    mut environ: Environ,
    start_response: StartResponse,
) -> Result<Body, Error> {
    let key = idempotency_key(&environ)?;
    let pre = Preconditions::from_headers(environ.headers())?;
    require_media_type(&environ, &["application/json"])?;
    let bytes = environ
        .input()
        .read_to_end()
        .await
        .map_err(ApiError::from)?;
    let fields = input::new_note(&bytes)?;
    let request_hash = Sha256::digest(&bytes).to_vec();
    let bearer = Bearer::from_environ(&environ)?;

    if key.is_none() && pre.if_match.is_none() && pre.if_none_match.is_none() {
        // The common case: the scope, the INSERT (its event row by trigger), COMMIT and the
        // commit's WAL position, in one round trip.
        let (_, unit) = bearer
            .once(
                &[Step::new(
                    store::INSERT,
                    &[&fields.title, &fields.body, &fields.tags],
                )],
                true,
            )
            .await?;
        let note = store::note_of(rows(&unit, 0)).ok_or(ApiError::Internal)?;
        let recorded = Recorded {
            request_hash,
            status: 201,
            location: format!("{}/notes/{}", environ.script_name(), note.id),
            etag: conditional::etag(note.version),
            response: json!(note),
        };
        return send_recorded(&start_response, &recorded, false, &lsn_of(&unit)?);
    }

    // Two tries: the second runs only if a concurrent request with the same key won the
    // race, and then finds its recorded response. Each is one owner-scoped transaction.
    for attempt in 0..2 {
        let (_, tx, _) = bearer.open(&[]).await?;
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

pub(super) async fn patch(
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
    require_media_type(
        &environ,
        &["application/merge-patch+json", "application/json"],
    )?;
    let bytes = environ
        .input()
        .read_to_end()
        .await
        .map_err(ApiError::from)?;
    let bearer = Bearer::from_environ(&environ)?;
    // The scope and the note in one round trip; the update and COMMIT in a second.
    let (_, scope, unit) = bearer.open(&[Step::new(store::GET, &[&id])]).await?;
    let current = store::note_of(rows(&unit, 0)).ok_or_else(|| not_found(id))?;
    check_note(&pre, &Method::PATCH, &current)?;
    let fields = input::merge_patch(&bytes, &current.fields())?;
    // Conditional on the version the patch was merged into: a concurrent change makes this
    // match no row, and the client gets 412 instead of silently losing that change.
    let version = Some(current.version);
    let done = scope
        .finish(
            &[Step::new(
                store::UPDATE,
                &[&id, &version, &fields.title, &fields.body, &fields.tags],
            )],
            true,
        )
        .await?;
    let note = match store::note_of(rows(&done, 0)) {
        Some(note) => note,
        None => return Err(gone_or_stale_now(&bearer, id).await?.into()),
    };
    let [lsn, cookie] = lsn_of(&done)?;
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
        &note,
    )
}

pub(super) async fn delete(
    environ: Environ,
    start_response: StartResponse,
    id: i64,
) -> Result<Body, Error> {
    let pre = Preconditions::from_headers(environ.headers())?;
    let bearer = Bearer::from_environ(&environ)?;
    let done = if pre.if_match.is_some() || pre.if_none_match.is_some() {
        // Read, check, then delete that version: two round trips.
        let (_, scope, unit) = bearer.open(&[Step::new(store::GET, &[&id])]).await?;
        let current = store::note_of(rows(&unit, 0)).ok_or_else(|| not_found(id))?;
        check_note(&pre, &Method::DELETE, &current)?;
        let expected = Some(current.version);
        scope
            .finish(&[Step::new(store::DELETE, &[&id, &expected])], true)
            .await?
    } else {
        let any: Option<i32> = None;
        let (_, unit) = bearer
            .once(&[Step::new(store::DELETE, &[&id, &any])], true)
            .await?;
        unit
    };
    if rows(&done, 0).is_empty() {
        return Err(gone_or_stale_now(&bearer, id).await?.into());
    }
    start_response.start("204 No Content", lsn_of(&done)?)?;
    Ok(Body::empty())
}

/// The rows of a unit's statement `index` (none if it has no such statement).
fn rows(unit: &Unit, index: usize) -> &[tokio_postgres::Row] {
    unit.rows.get(index).map_or(&[], Vec::as_slice)
}

/// `Pgbridge-Commit-Lsn` and its cookie, from a unit that committed with its position.
fn lsn_of(unit: &Unit) -> Result<[(&'static str, String); 2], ApiError> {
    let lsn = unit.lsn.ok_or_else(|| {
        tracing::error!("a committed unit without its WAL position");
        ApiError::Internal
    })?;
    Ok(lsn_headers(lsn))
}

/// After a conditional write committed having matched no row: 404 if the note is gone,
/// else 412 (a read in a scope of its own: at READ COMMITTED, what the write's own
/// transaction would have read next).
async fn gone_or_stale_now(bearer: &Bearer, id: i64) -> Result<ApiError, ApiError> {
    let (_, unit) = bearer.once(&[Step::new(store::GET, &[&id])], false).await?;
    Ok(match store::note_of(rows(&unit, 0)) {
        None => not_found(id),
        Some(_) => super::reply::stale(),
    })
}
