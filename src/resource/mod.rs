//! The resource kit: **the** way to write a JSON resource owned by an account.
//!
//! A resource is a table of rows that each belong to one account, served as a collection
//! (`/{name}`), its items (`/{name}/{id}`) and a live feed of their changes
//! (`/{name}/events`). Everything general about that is here, once; a resource says only
//! what is its own — its fields, their rules, its filters — by implementing [`Resource`],
//! and [`routes`] gives its route table:
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /{name}` | 201, `Location`, `ETag`; `Idempotency-Key` makes a retry return the first response |
//! | `GET /{name}?limit=&cursor=&…` | a page, newest first, with an opaque `next_cursor` and an `ETag`; `If-None-Match` gives 304 |
//! | `GET /{name}/{id}` | the item, its `ETag` and `Last-Modified`; `If-None-Match` (or `If-Modified-Since`) gives 304, a failing `If-Match` 412 |
//! | `PATCH /{name}/{id}` | a JSON merge patch; requires `If-Match` (428 without, 412 if stale) |
//! | `DELETE /{name}/{id}` | 204; `If-Match` optional |
//! | `GET /{name}/events` | the account's changes as server-sent events, resumable with `Last-Event-ID` |
//!
//! Items and pages carry `Cache-Control: private, no-cache`: caches revalidate with the ETag.
//!
//! The parts, each usable on its own:
//!
//! - **the owner scope**: every statement runs in one owner-scoped unit
//!   ([`crate::auth::Bearer`], [`crate::db::Step`]): the session, the owner, the role, the
//!   statements and `COMMIT` in one round trip; row-level security does the rest, so one
//!   account never sees another's rows;
//! - **conditional requests** ([`crate::http::conditional`], answered by `reply.rs`): `ETag`
//!   from the row's `version`, `If-Match`/`If-None-Match`, 428/412/304;
//! - **keyset cursors**: pages by `id` (stable under inserts and deletes);
//! - **idempotency keys** ([`idempotency`]): a `POST` retried with the same
//!   `Idempotency-Key` gets the first response, scoped by owner and route;
//! - **input rules** ([`input`]): body size (the layer's limit), media type, NUL, unknown
//!   fields, and a 422 naming every bad field at once ([`input::Form`]);
//! - **JSON errors**: handlers return [`ApiError`]s with `?`; the layer renders them;
//! - **the change feed** ([`feed`]): a trigger records every change in `{noun}_events` and
//!   notifies it; one `LISTEN` connection per process fans every resource's channel out;
//! - **the API document** ([`document`]): each route documents its operations and schemas in
//!   `/openapi.json`, from the resource's names and its fields' `utoipa::ToSchema`.
//!
//! # Writing one
//!
//! One migration (the table with `id`, `owner_id`, `version`, `created_at`, `updated_at`
//! and its own columns, its policies and grants, its `{noun}_events` table and the kit's
//! trigger), one module implementing [`Resource`], one line in [`crate::routes()`] —
//! `scripts/new-resource NAME` writes all of them, and a test file. A resource outside the
//! crate (a test's) is mounted with [`crate::router_with`]. Its module, in short:
//!
//! ```
//! use pgbridge::error::ApiError;
//! use pgbridge::resource::{Resource, Spec, input::Form};
//! use serde::Serialize;
//! use tokio_postgres::{Row, types::ToSql};
//!
//! /// What a client writes of a widget.
//! #[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
//! pub struct Widget {
//!     /// 1 to 200 characters.
//!     pub title: String,
//!     /// Whether it is done.
//!     pub done: bool,
//! }
//!
//! /// `/widgets`.
//! pub struct Widgets;
//!
//! impl Resource for Widgets {
//!     const SPEC: &'static Spec = &pgbridge::resource_spec!("widgets", "widget");
//!     const COLUMNS: &'static [&'static str] = &["title", "done"];
//!     const SUMMARIES: [&'static str; 3] = ["widgets: list and create", "one widget", "widget changes"];
//!     type Fields = Widget;
//!
//!     fn read(row: &Row) -> Widget {
//!         Widget { title: row.get("title"), done: row.get("done") }
//!     }
//!     fn params(w: &Widget) -> Vec<&(dyn ToSql + Sync)> {
//!         vec![&w.title, &w.done]
//!     }
//!     fn create(body: &[u8]) -> Result<Widget, ApiError> {
//!         Self::patch_or_create(body, None)
//!     }
//!     fn patch(body: &[u8], current: &Widget) -> Result<Widget, ApiError> {
//!         Self::patch_or_create(body, Some(current))
//!     }
//! }
//!
//! impl Widgets {
//!     fn patch_or_create(body: &[u8], current: Option<&Widget>) -> Result<Widget, ApiError> {
//!         let mut form = Form::parse(body, Self::COLUMNS, "widget")?;
//!         let title = form.take("title", current.map(|c| c.title.clone()), None);
//!         let done = form.take("done", current.map(|c| c.done), Some(false));
//!         if let Some(title) = &title {
//!             form.check("title", !title.trim().is_empty(), "must not be empty");
//!         }
//!         form.finish(|| Some(Widget { title: title?, done: done? }))
//!     }
//! }
//!
//! let table = pgbridge::resource::routes::<Widgets>();
//! assert_eq!(table[0].path, "/widgets");
//! assert_eq!(table[2].path, "/widgets/events");
//! ```

pub mod document;
pub mod feed;
mod handlers;
pub mod idempotency;
pub mod input;
mod reply;
pub mod request;
pub mod store;

use http::Method;
use serde::Serialize;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::auth;
use crate::bulkhead::RouteClass;
use crate::error::ApiError;
use crate::routes::Route;
use awsgi::Environ;

pub use store::Item;

/// `Cache-Control` on items and pages: any cache must revalidate (with the `ETag`) before
/// reusing them, and shared caches must not store them.
pub const CACHE_CONTROL: &str = "private, no-cache";

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 200;

/// A list filter's bound value (see [`Resource::filter`]).
pub type Param = Box<dyn ToSql + Sync + Send>;

/// A resource's names and the SQL of its change feed, all derived from its plural `name`
/// and singular `noun` by [`resource_spec!`](crate::resource_spec): the table `name`, the
/// paths `/name`, `/name/{id}`, `/name/events`, the events table `noun_events` (item column
/// `noun_id`, also the events' JSON field), its horizon `noun_events_horizon`, the `NOTIFY`
/// channel `noun_events` and the SSE event name `noun`.
#[derive(Debug)]
pub struct Spec {
    /// Plural, snake_case: the table and the collection's path segment (`notes`).
    pub name: &'static str,
    /// Singular: messages (`no note with id 7`), the feed's names (`note`).
    pub noun: &'static str,
    /// `/name`.
    pub path: &'static str,
    /// `/name/{id}`.
    pub item_path: &'static str,
    /// `/name/events`.
    pub events_path: &'static str,
    /// The route `Idempotency-Key`s of `POST /name` are scoped to (and to their owner).
    pub idempotency_route: &'static str,
    /// The change feed's tables, channel and statements.
    pub feed: feed::FeedSpec,
}

/// The [`Spec`] of the resource `name` (plural) whose items are each a `noun`, as a
/// constant.
///
/// ```
/// const SPEC: pgbridge::resource::Spec = pgbridge::resource_spec!("notes", "note");
/// assert_eq!(SPEC.item_path, "/notes/{id}");
/// assert_eq!(SPEC.feed.channel, "note_events");
/// ```
#[macro_export]
macro_rules! resource_spec {
    ($name:literal, $noun:literal) => {
        $crate::resource::Spec {
            name: $name,
            noun: $noun,
            path: concat!("/", $name),
            item_path: concat!("/", $name, "/{id}"),
            events_path: concat!("/", $name, "/events"),
            idempotency_route: concat!("POST /", $name),
            feed: $crate::feed_spec!($name, $noun),
        }
    };
}

/// What a resource says of itself; the kit does the rest. See the [module](self) docs.
///
/// The table has `id bigint` (identity), `owner_id` (defaulting to the scope's owner),
/// `version integer`, `created_at` and `updated_at timestamptz`, and the [`COLUMNS`](Self::COLUMNS).
pub trait Resource: Sized + Send + Sync + 'static {
    /// Its names (see [`resource_spec!`](crate::resource_spec)).
    const SPEC: &'static Spec;
    /// The columns a client writes, in the order [`params`](Self::params) binds them (and
    /// the JSON fields it may send: any other is a 422).
    const COLUMNS: &'static [&'static str];
    /// Extra conditions of a listing (`AND …`), their parameters numbered from `$3` in the
    /// order [`filter`](Self::filter) gives them.
    const FILTER_SQL: &'static str = "";
    /// The query string the index shows after the collection's path (`tag=&q=`).
    const FILTER_QUERY: &'static str = "";
    /// The index's line for the collection, one item, and the feed.
    const SUMMARIES: [&'static str; 3];
    /// An item's own fields, as read, written and shown (serialized beside `id`,
    /// `created_at`, `updated_at` and `version`).
    type Fields: Serialize + utoipa::ToSchema + Clone + Send + Sync + 'static;

    /// The fields of a row (the [`COLUMNS`](Self::COLUMNS), by name).
    fn read(row: &Row) -> Self::Fields;
    /// The [`COLUMNS`](Self::COLUMNS)' values, in order.
    fn params(fields: &Self::Fields) -> Vec<&(dyn ToSql + Sync)>;
    /// The body of a `POST`, checked: a 400 if it is not a JSON object, a 422 naming
    /// every bad field ([`input::Form`]).
    fn create(body: &[u8]) -> Result<Self::Fields, ApiError>;
    /// A JSON merge patch (RFC 7396) applied to `current`, checked as [`create`](Self::create).
    fn patch(body: &[u8], current: &Self::Fields) -> Result<Self::Fields, ApiError>;
    /// The listing's filter parameters from the query string (bound to
    /// [`FILTER_SQL`](Self::FILTER_SQL)'s `$3`, `$4`, …): none by default. None (an empty
    /// `Vec`) means the request filters nothing: the page is then read without
    /// `FILTER_SQL`, by a statement whose plan Postgres keeps ([`store::Statements::page`]);
    /// so return none whenever the query string asks for no filter.
    fn filter(environ: &Environ) -> Result<Vec<Param>, ApiError> {
        let _ = environ;
        Ok(Vec::new())
    }
    /// The list filters' query parameters, for the API document: none by default.
    fn document_filters() -> Vec<utoipa::openapi::path::Parameter> {
        Vec::new()
    }
    /// Adds the schemas of what clients send to the API document: `new` (the body of a
    /// `POST`) and `patch` (a merge patch). By default from [`Fields`](Self::Fields)'
    /// schema ([`document::input_schemas`]); a resource whose rules say more (lengths,
    /// patterns, what `null` means) writes its own.
    fn document_input(doc: &mut utoipa::openapi::OpenApi, new: &str, patch: &str) {
        document::input_schemas::<Self>(doc, new, patch);
    }
}

/// The route table of `R`: the collection, one item, and the change feed — each method
/// served by the kit's handlers, every request refused with 401 unless it presents a
/// bearer token (the feed also takes the session cookie), each documented in the API
/// document ([`document`]).
///
/// ```
/// let table = pgbridge::resource::routes::<pgbridge::apps::notes::Notes>();
/// assert_eq!(table[1].label(), "GET|PATCH|DELETE /notes/{id}");
/// ```
pub fn routes<R: Resource>() -> Vec<Route> {
    let spec = R::SPEC;
    vec![
        Route::methods(spec.path, R::SUMMARIES[0])
            .query(R::FILTER_QUERY)
            .on(Method::GET, handlers::list::<R>)
            .on(Method::POST, handlers::create::<R>)
            .documented(document::collection::<R>),
        Route::methods(spec.item_path, R::SUMMARIES[1])
            .on(Method::GET, handlers::show::<R>)
            .on(Method::PATCH, handlers::patch::<R>)
            .on(Method::DELETE, handlers::delete::<R>)
            .documented(document::item::<R>),
        feed_route(spec, R::SUMMARIES[2]).documented(document::events::<R>),
    ]
}

/// The route of a resource's feed, `GET {spec.events_path}`: its [`feed::Feed`] is taken
/// from the service's [`feed::Feeds`] when the router is built.
fn feed_route(spec: &'static Spec, summary: &'static str) -> Route {
    Route::with(&[Method::GET], spec.events_path, summary, move |mount| {
        let feed = mount.state().apps.feeds.feed(&spec.feed);
        mount.app(move |environ, start_response| feed::app(feed.clone(), environ, start_response))
    })
    // Open for long: a bounded number opening at once, counted per address.
    .class(RouteClass::Stream)
}

/// 401 unless the request presents a bearer token.
fn presents_token(environ: &Environ) -> Result<(), ApiError> {
    auth::presented_token(environ, auth::Carrier::Header).map(|_| ())
}
