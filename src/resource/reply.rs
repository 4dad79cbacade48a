//! Answering a resource request: JSON bodies with their validators, 304s, the 412 that
//! names the failing precondition, and the replay of a recorded (idempotent) response.

use std::marker::PhantomData;

use http::Method;
use tokio_postgres::Row;

use crate::error::{ApiError, FieldError};
use awsgi::{Body, Error, StartResponse};

use super::idempotency::Recorded;
use super::store::RowShape;
use super::{CACHE_CONTROL, Item, Resource};
use crate::http::conditional::{self, EntityTag, Outcome, Preconditions, Validators};

/// Evaluates a write's preconditions against the item as it is.
pub(super) fn check_item<F>(
    pre: &Preconditions,
    method: &Method,
    current: &Item<F>,
    noun: &str,
) -> Result<(), ApiError> {
    let etag = conditional::etag(current.version);
    let validators = Validators {
        etag: &etag,
        last_modified: Some(current.updated_epoch()),
    };
    match pre.evaluate(method, Some(&validators)) {
        Outcome::Proceed => Ok(()),
        _ => Err(precondition_failed(pre, &validators, noun)),
    }
}

/// The 412 for preconditions that do not hold, naming the one that failed.
pub(super) fn precondition_failed(
    pre: &Preconditions,
    current: &Validators<'_>,
    what: &str,
) -> ApiError {
    let tag = EntityTag::parse(current.etag);
    if pre
        .if_match
        .as_ref()
        .is_some_and(|m| !m.matches_strong(tag.as_ref()))
    {
        stale(what)
    } else {
        ApiError::PreconditionFailed(format!(
            "If-None-Match matches the {what}'s current version"
        ))
    }
}

/// 304: no body, the validators and caching headers a 200 would carry.
pub(super) fn not_modified(
    start_response: &StartResponse,
    headers: &[(&str, &str)],
) -> Result<Body, Error> {
    start_response.start("304 Not Modified", headers.iter().copied())?;
    Ok(Body::empty())
}

/// A page's ETag, from its rows (see [`page_rows`]): its items' ids and versions, and where
/// the next page starts. The listing's ETag and the one `POST`'s preconditions compare.
pub(super) fn page_etag(page: &[Row], next_after: Option<i64>, shape: RowShape) -> String {
    conditional::list_etag(
        page.iter().map(|row| (shape.id(row), shape.version(row))),
        next_after,
    )
}

/// The recorded response again, if `request_hash` is the request it answered (else 422).
pub(super) fn replay(
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

/// A creation's response (first sent, or `replayed`).
pub(super) fn send_recorded(
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

/// A page's body, `{"<name>": [items…], "next_cursor": "…" | null}`, serialized straight
/// from the page's rows (no item copied out of them, no `serde_json::Value` built first).
pub(super) struct PageBody<'a, R> {
    /// The resource's name (`notes`): the key of the items.
    pub(super) name: &'static str,
    /// The page's rows, newest first.
    pub(super) rows: &'a [Row],
    /// Where the next page starts, if there is one.
    pub(super) next_cursor: Option<String>,
    pub(super) resource: PhantomData<R>,
}

impl<R: Resource> serde::Serialize for PageBody<'_, R> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.name, &Items::<R>(self.rows, PhantomData))?;
        map.serialize_entry("next_cursor", &self.next_cursor)?;
        map.end()
    }
}

/// Rows serialized as the items they are.
struct Items<'a, R>(&'a [Row], PhantomData<R>);

impl<R: Resource> serde::Serialize for Items<'_, R> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let shape = RowShape::of::<R>();
        serializer.collect_seq(self.0.iter().map(|row| shape.item(row, R::read)))
    }
}

/// The first `limit` of `rows` (a listing run with `limit + 1`), and where the next page
/// starts if there is one (the last kept row's id).
pub(super) fn page_rows(rows: &[Row], limit: i64, shape: RowShape) -> (&[Row], Option<i64>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        let page = &rows[..limit];
        (page, page.last().map(|row| shape.id(row)))
    } else {
        (rows, None)
    }
}

/// `body` as JSON with `status` and `headers`.
pub(super) fn send_json(
    start_response: &StartResponse,
    status: &str,
    headers: &[(&str, &str)],
    body: &impl serde::Serialize,
) -> Result<Body, Error> {
    // A note is about 200 bytes: one buffer, not one grown twice.
    send_json_sized(start_response, status, headers, body, 256)
}

/// [`send_json`] into a buffer of `capacity` bytes to start with (a page's body is written
/// without growing it several times over).
pub(super) fn send_json_sized(
    start_response: &StartResponse,
    status: &str,
    headers: &[(&str, &str)],
    body: &impl serde::Serialize,
    capacity: usize,
) -> Result<Body, Error> {
    // An iterator of exact length, not a `Vec`: no allocation, and the head is sized once.
    let all = std::iter::once(("Content-Type", "application/json")).chain(headers.iter().copied());
    start_response.start(status, all)?;
    let mut json = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut json, body)?;
    Ok(Body::from(json))
}

/// A first guess at a page's JSON size: 256 bytes an item (a short note is about 200).
pub(super) fn page_capacity(items: usize) -> usize {
    64 + 256 * items
}

/// 404 for the item `id`.
pub(super) fn not_found(noun: &str, id: i64) -> ApiError {
    ApiError::not_found(format!("no {noun} with id {id}"))
}

/// 412: the item changed since the client read it (or since it was checked).
pub(super) fn stale(noun: &str) -> ApiError {
    ApiError::PreconditionFailed(format!(
        "If-Match does not name the {noun}'s current version; GET it again"
    ))
}
