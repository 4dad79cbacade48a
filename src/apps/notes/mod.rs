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
//! - this file: the route table ([`routes`]) and the dispatch by method and path;
//! - `handlers`: one handler per method and path; `request` and `reply`: reading the
//!   request's parts, and answering (JSON, 304, 412, idempotent replays);
//! - [`input`]: what clients may send, checked field by field;
//! - [`store`]: the SQL;
//! - [`crate::http::conditional`] (outside this resource, for every resource): ETags,
//!   preconditions and cursors;
//! - [`events`]: `GET /notes/events`, the live feed, with its own `LISTEN` connection
//!   and gauges (started by [`crate::apps::Apps`]).

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
        Route::app(
            &[Method::GET, Method::POST],
            "/notes",
            "the template resource: list (newest first, keyset pages) and create; needs Authorization: Bearer",
            app,
        ),
        Route::app(
            &[Method::GET, Method::PATCH, Method::DELETE],
            "/notes/{id}",
            "one note: read (ETag), change with If-Match (JSON merge patch), delete; needs Authorization: Bearer",
            app,
        ),
        Route::app(
            &[Method::GET],
            "/notes/events",
            "note changes as server-sent events, resumable with Last-Event-ID; needs Authorization: Bearer or the session cookie",
            events::app,
        )
        // Open for long: a bounded number opening at once, counted per address.
        .class(crate::bulkhead::RouteClass::Stream),
    ]
}

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
