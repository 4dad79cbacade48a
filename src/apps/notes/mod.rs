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
//! - this file: the route table ([`routes`]), one application per method and path (the
//!   router answers other methods with 405 and `Allow` from the table);
//! - `handlers`: one handler per method and path; `request` and `reply`: reading the
//!   request's parts, and answering (JSON, 304, 412, idempotent replays);
//! - [`input`]: what clients may send, checked field by field;
//! - [`store`]: the SQL;
//! - [`crate::http::conditional`] (outside this resource, for every resource): ETags,
//!   preconditions and cursors;
//! - [`doc`]: the notes' part of the API document (`GET /openapi.json`);
//! - [`events`]: `GET /notes/events`, the live feed, with its own `LISTEN` connection
//!   and gauges (started by [`crate::apps::Apps`]).

pub mod doc;
pub mod events;
mod handlers;
pub mod input;
mod reply;
mod request;
pub mod store;

use http::Method;

use crate::auth;
use crate::error::ApiError;
use crate::routes::Route;
use awsgi::{Body, Environ, Error, StartResponse};
use handlers::{create, delete, list, patch, show};
use request::note_id;

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

/// The notes' routes: the collection, one note, and the event stream.
pub fn routes() -> Vec<Route> {
    vec![
        Route::methods(
            "/notes",
            "the template resource: list (newest first, keyset pages) and create; needs Authorization: Bearer",
        )
        .on(Method::GET, list_notes)
        .on(Method::POST, create_note)
        .documented(doc::collection),
        Route::methods(
            "/notes/{id}",
            "one note: read (ETag), change with If-Match (JSON merge patch), delete; needs Authorization: Bearer",
        )
        .on(Method::GET, show_note)
        .on(Method::PATCH, patch_note)
        .on(Method::DELETE, delete_note)
        .documented(doc::item),
        Route::app(
            &[Method::GET],
            "/notes/events",
            "note changes as server-sent events, resumable with Last-Event-ID; needs Authorization: Bearer or the session cookie",
            events::app,
        )
        // Open for long: a bounded number opening at once, counted per address.
        .class(crate::bulkhead::RouteClass::Stream)
        .documented(doc::events),
    ]
}

// One application per method and path, as the table above declares them: the router
// answers every other method (405 with `Allow`) before any of these runs. Each refuses a
// request with no token, or not a token, with 401 before anything else (the session is
// checked when the handler opens its owner-scoped transaction).

/// `GET /notes` (and `HEAD`).
pub async fn list_notes(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    presents_token(&environ)?;
    list(environ, start_response).await
}

/// `POST /notes`.
pub async fn create_note(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    presents_token(&environ)?;
    create(environ, start_response).await
}

/// `GET /notes/{id}` (and `HEAD`).
pub async fn show_note(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let id = item(&environ)?;
    show(environ, start_response, id).await
}

/// `PATCH /notes/{id}`.
pub async fn patch_note(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let id = item(&environ)?;
    patch(environ, start_response, id).await
}

/// `DELETE /notes/{id}`.
pub async fn delete_note(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let id = item(&environ)?;
    delete(environ, start_response, id).await
}

/// 401 unless the request presents a bearer token.
fn presents_token(environ: &Environ) -> Result<(), ApiError> {
    auth::presented_token(environ, auth::Carrier::Header).map(|_| ())
}

/// The token check, then the note's id from the path (404 if it cannot be one).
fn item(environ: &Environ) -> Result<i64, ApiError> {
    presents_token(environ)?;
    note_id(environ.routing_arg("id").unwrap_or_default())
}
