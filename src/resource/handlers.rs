//! The kit's handlers, one per method and path, for any [`Resource`]: validate first
//! (nothing touches the database until the input is known good), then one owner-scoped
//! unit: the session, the owner, the role, the statements and `COMMIT` in one round trip
//! ([`Bearer`]). A write that must read before it writes (`PATCH`, a conditional
//! `DELETE`) takes two: the read with the scope, then the write with the `COMMIT`.
//!
//! Each refuses a request with no token, or not a token, with 401 before anything else
//! (the session is checked when the handler opens its owner-scoped transaction).

use http::Method;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;

use crate::auth::Bearer;
use crate::db::{Conn, DbError, Queries, Step, Unit};
use crate::error::ApiError;
use crate::request::consistency::{commit_scoped, lsn_headers, served_by};
use awsgi::{Body, Environ, Error, StartResponse};

use super::idempotency::{self, Recorded};
use super::input::{bounded_query, require_media_type};
use super::reply::*;
use super::request::{idempotency_key, item_id};
use super::store::{RowShape, Statements, item_of};
use super::{CACHE_CONTROL, DEFAULT_LIMIT, Item, MAX_LIMIT, Resource, presents_token};
use crate::http::conditional::{self, Outcome, Preconditions, Validators};

/// `GET /{name}` (and `HEAD`): a page, newest first.
pub(super) async fn list<R: Resource>(
    environ: Environ,
    start_response: StartResponse,
) -> Result<Body, Error> {
    presents_token(&environ)?;
    let limit = bounded_query(&environ, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)?;
    let after = environ
        .query("cursor")
        .map(|c| conditional::decode_cursor(&c))
        .transpose()?;
    let filter = R::filter(&environ)?;
    let pre = Preconditions::from_headers(environ.headers())?;
    // A standby's or the primary's connection (read routing), in the owner's scope.
    let mut bearer = Bearer::for_read(&environ)?;
    // Everything read: the environ goes before the wait, not after it (its header map and
    // extensions would stay allocated through the round trip; awsgi's `Environ` says why).
    let method = environ.method().clone();
    drop(environ);
    let fetch = limit + 1;
    let sql = Statements::of::<R>();
    // Unfiltered: the statement with the count in its text, whose plan Postgres keeps.
    let step = if filter.is_empty() {
        let params: Vec<&(dyn ToSql + Sync)> = match &after {
            Some(after) => vec![after],
            None => Vec::new(),
        };
        (sql.page(fetch, after.is_some()), params)
    } else {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&after, &fetch];
        params.extend(filter.iter().map(|p| &**p as &(dyn ToSql + Sync)));
        (sql.list.as_str(), params)
    };
    let (_, unit, from) = bearer.read_once(&[Step::new(step.0, &step.1)]).await?;
    // The page is answered from its rows: no item is copied out of them.
    let shape = RowShape::of::<R>();
    let (page, next_after) = page_rows(rows(&unit, 0), limit, shape);
    let served = served_by(from);
    let etag = page_etag(page, next_after, shape);
    let validators = Validators {
        etag: &etag,
        last_modified: None,
    };
    let headers = [
        ("ETag", etag.as_str()),
        ("Cache-Control", CACHE_CONTROL),
        served,
    ];
    match pre.evaluate(&method, Some(&validators)) {
        Outcome::Proceed => {}
        Outcome::NotModified => return not_modified(&start_response, &headers),
        Outcome::PreconditionFailed => {
            return Err(precondition_failed(&pre, &validators, "page").into());
        }
    }
    let body = PageBody::<R> {
        name: R::SPEC.name,
        rows: page,
        next_cursor: next_after.map(conditional::encode_cursor),
        resource: std::marker::PhantomData,
    };
    let capacity = page_capacity(page.len());
    send_json_sized(&start_response, "200 OK", &headers, &body, capacity)
}

/// `GET /{name}/{id}` (and `HEAD`).
pub(super) async fn show<R: Resource>(
    environ: Environ,
    start_response: StartResponse,
) -> Result<Body, Error> {
    let id = item::<R>(&environ)?;
    let pre = Preconditions::from_headers(environ.headers())?;
    let mut bearer = Bearer::for_read(&environ)?;
    let method = environ.method().clone();
    drop(environ);
    let sql = Statements::of::<R>();
    let (_, unit, from) = bearer.read_once(&[Step::new(&sql.get, &[&id])]).await?;
    let noun = R::SPEC.noun;
    // Answered from the row: no item is copied out of it.
    let row = rows(&unit, 0).first().ok_or_else(|| not_found(noun, id))?;
    let shape = RowShape::of::<R>();
    let updated_epoch = shape.updated_epoch(row);
    let served = served_by(from);
    let etag = conditional::etag(shape.version(row));
    let last_modified = conditional::http_date(updated_epoch);
    let validators = Validators {
        etag: &etag,
        last_modified: Some(updated_epoch),
    };
    let headers = [
        ("ETag", etag.as_str()),
        ("Last-Modified", last_modified.as_str()),
        ("Cache-Control", CACHE_CONTROL),
        served,
    ];
    match pre.evaluate(&method, Some(&validators)) {
        Outcome::Proceed => send_json(
            &start_response,
            "200 OK",
            &headers,
            &shape.item(row, R::read),
        ),
        Outcome::NotModified => not_modified(&start_response, &headers),
        Outcome::PreconditionFailed => Err(precondition_failed(&pre, &validators, noun).into()),
    }
}

/// `POST /{name}`.
pub(super) async fn create<R: Resource>(
    mut environ: Environ,
    start_response: StartResponse,
) -> Result<Body, Error> {
    presents_token(&environ)?;
    let key = idempotency_key(&environ)?;
    let pre = Preconditions::from_headers(environ.headers())?;
    require_media_type(&environ, &["application/json"])?;
    let bytes = environ
        .input()
        .read_to_end()
        .await
        .map_err(ApiError::from)?;
    let fields = R::create(&bytes)?;
    let request_hash = Sha256::digest(&bytes).to_vec();
    let bearer = Bearer::from_environ(&environ)?;
    let sql = Statements::of::<R>();
    let collection = format!("{}{}", environ.script_name(), R::SPEC.path);
    // Everything read (the body too): the environ goes before the wait, as in `list`.
    drop(environ);
    let recorded = |item: Item<R::Fields>, request_hash: Vec<u8>| Recorded {
        request_hash,
        status: 201,
        location: format!("{collection}/{}", item.id),
        etag: conditional::etag(item.version),
        response: json!(item),
    };

    if key.is_none() && pre.if_match.is_none() && pre.if_none_match.is_none() {
        // The common case: the scope, the INSERT (its event row by trigger), COMMIT and the
        // commit's WAL position, in one round trip.
        let params = R::params(&fields);
        let (_, unit) = bearer
            .once(&[Step::new(&sql.insert, &params)], true)
            .await?;
        let item = item_of::<R>(rows(&unit, 0)).ok_or(ApiError::Internal)?;
        let first = recorded(item, request_hash);
        return send_recorded(&start_response, &first, false, &lsn_of(&unit)?);
    }

    // Two tries: the second runs only if a concurrent request with the same key won the
    // race, and then finds its recorded response. Each is one owner-scoped transaction.
    let route = R::SPEC.idempotency_route;
    for attempt in 0..2 {
        let (_, tx, _) = bearer.open(&[]).await?;
        if attempt == 0 {
            // Against the owner's collection, once, before any replay (as without a race).
            collection_preconditions::<R>(&tx, &pre).await?;
        }
        if let Some(key) = &key
            && let Some(first) = idempotency::recorded(&tx, route, key).await?
        {
            let lsn = commit_scoped(tx).await?;
            return replay(&start_response, first, &request_hash, &lsn);
        }
        let row = tx.query_one(&sql.insert, &R::params(&fields)).await?;
        let first = recorded(
            RowShape::of::<R>().item(&row, R::read),
            request_hash.clone(),
        );
        if let Some(key) = &key {
            match idempotency::record(&tx, route, key, &first).await {
                Ok(()) => {}
                Err(DbError::Conflict { .. }) => continue, // dropping `tx` rolls the item back
                Err(err) => return Err(ApiError::from(err).into()),
            }
        }
        let lsn = commit_scoped(tx).await?;
        return send_recorded(&start_response, &first, false, &lsn);
    }
    tracing::error!("idempotency key raced twice");
    Err(ApiError::Internal.into())
}

/// `If-Match`/`If-None-Match` on `POST /{name}` are about the collection, which always has
/// a current representation (`GET /{name}`): `If-None-Match: *` fails (412), `If-Match: *`
/// holds, and listed tags are compared with the first page's ETag.
async fn collection_preconditions<R: Resource>(
    conn: &Conn,
    pre: &Preconditions,
) -> Result<(), ApiError> {
    if pre.if_match.is_none() && pre.if_none_match.is_none() {
        return Ok(());
    }
    let etag = if pre.names_tags() {
        let sql = Statements::of::<R>();
        let rows = conn.query(sql.page(DEFAULT_LIMIT + 1, false), &[]).await?;
        let shape = RowShape::of::<R>();
        let (page, next_after) = page_rows(&rows, DEFAULT_LIMIT, shape);
        page_etag(page, next_after, shape)
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

/// `PATCH /{name}/{id}`: a JSON merge patch, with `If-Match`.
pub(super) async fn patch<R: Resource>(
    mut environ: Environ,
    start_response: StartResponse,
) -> Result<Body, Error> {
    let id = item::<R>(&environ)?;
    let noun = R::SPEC.noun;
    let pre = Preconditions::from_headers(environ.headers())?;
    if pre.if_match.is_none() {
        return Err(ApiError::PreconditionRequired(format!(
            "PATCH needs If-Match with the {noun}'s ETag, so that no update is lost"
        ))
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
    drop(environ);
    let sql = Statements::of::<R>();
    // The scope and the item in one round trip; the update and COMMIT in a second.
    let (_, scope, unit) = bearer.open(&[Step::new(&sql.get, &[&id])]).await?;
    let current = item_of::<R>(rows(&unit, 0)).ok_or_else(|| not_found(noun, id))?;
    check_item(&pre, &Method::PATCH, &current, noun)?;
    let fields = R::patch(&bytes, &current.fields)?;
    // Conditional on the version the patch was merged into: a concurrent change makes this
    // match no row, and the client gets 412 instead of silently losing that change.
    let version = Some(current.version);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &version];
    params.extend(R::params(&fields));
    let done = scope
        .finish(&[Step::new(&sql.update, &params)], true)
        .await?;
    let item = match item_of::<R>(rows(&done, 0)) {
        Some(item) => item,
        None => return Err(gone_or_stale_now::<R>(&bearer, id).await?.into()),
    };
    let [lsn, cookie] = lsn_of(&done)?;
    let etag = conditional::etag(item.version);
    let last_modified = conditional::http_date(item.updated_epoch());
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
        &item,
    )
}

/// `DELETE /{name}/{id}`, `If-Match` optional.
pub(super) async fn delete<R: Resource>(
    environ: Environ,
    start_response: StartResponse,
) -> Result<Body, Error> {
    let id = item::<R>(&environ)?;
    let pre = Preconditions::from_headers(environ.headers())?;
    let bearer = Bearer::from_environ(&environ)?;
    drop(environ);
    let sql = Statements::of::<R>();
    let done = if pre.if_match.is_some() || pre.if_none_match.is_some() {
        // Read, check, then delete that version: two round trips.
        let noun = R::SPEC.noun;
        let (_, scope, unit) = bearer.open(&[Step::new(&sql.get, &[&id])]).await?;
        let current = item_of::<R>(rows(&unit, 0)).ok_or_else(|| not_found(noun, id))?;
        check_item(&pre, &Method::DELETE, &current, noun)?;
        let expected = Some(current.version);
        scope
            .finish(&[Step::new(&sql.delete, &[&id, &expected])], true)
            .await?
    } else {
        let any: Option<i32> = None;
        let (_, unit) = bearer
            .once(&[Step::new(&sql.delete, &[&id, &any])], true)
            .await?;
        unit
    };
    if rows(&done, 0).is_empty() {
        return Err(gone_or_stale_now::<R>(&bearer, id).await?.into());
    }
    start_response.start("204 No Content", lsn_of(&done)?)?;
    Ok(Body::empty())
}

/// The token check, then the item's id from the path (404 if it cannot be one).
fn item<R: Resource>(environ: &Environ) -> Result<i64, ApiError> {
    presents_token(environ)?;
    item_id(environ.routing_arg("id").unwrap_or_default(), R::SPEC.noun)
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

/// After a conditional write committed having matched no row: 404 if the item is gone,
/// else 412 (a read in a scope of its own: at READ COMMITTED, what the write's own
/// transaction would have read next).
async fn gone_or_stale_now<R: Resource>(bearer: &Bearer, id: i64) -> Result<ApiError, ApiError> {
    let sql = Statements::of::<R>();
    let (_, unit) = bearer.once(&[Step::new(&sql.get, &[&id])], false).await?;
    let noun = R::SPEC.noun;
    Ok(match rows(&unit, 0).first() {
        None => not_found(noun, id),
        Some(_) => stale(noun),
    })
}
