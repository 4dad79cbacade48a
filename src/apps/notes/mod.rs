//! `/notes` — the worked example of the resource kit ([`crate::resource`]): what is a
//! note's own, and nothing else.
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /notes` | 201, `Location`, `ETag`; `Idempotency-Key` makes a retry return the first response |
//! | `GET /notes?limit=&cursor=&tag=&q=` | a page, newest first, with an opaque `next_cursor` and an `ETag`; `If-None-Match` gives 304 |
//! | `GET /notes/{id}` | the note, its `ETag` and `Last-Modified`; `If-None-Match` (or `If-Modified-Since`) gives 304, a failing `If-Match` 412 |
//! | `PATCH /notes/{id}` | a JSON merge patch; requires `If-Match` (428 without, 412 if stale) |
//! | `DELETE /notes/{id}` | 204; `If-Match` optional |
//! | `GET /notes/events` | note changes as server-sent events, resumable with `Last-Event-ID`; `?note=ID` for one note |
//!
//! A note is its [`Resource`] implementation ([`Notes`]): its names, its columns, its field
//! rules ([`input`]), its two list filters (`tag`, `q`) and what the API document says of
//! them ([`doc`]). Everything else — the owner
//! scope, conditional requests, cursors, idempotency keys, the JSON errors, the change feed
//! ([`events`]) — is the kit's.

pub mod doc;
pub mod events;
pub mod input;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::Parameter;

use crate::error::ApiError;
use crate::resource::request::text_query;
use crate::resource::store::like_pattern;
use crate::resource::{self, Param, Resource, Spec};
use crate::routes::Route;
use awsgi::Environ;

pub use input::NoteFields;

/// A note as the API shows it.
pub type Note = resource::Item<NoteFields>;

/// The notes resource.
#[derive(Debug, Clone, Copy)]
pub struct Notes;

impl Resource for Notes {
    const SPEC: &'static Spec = &crate::resource_spec!("notes", "note");
    const COLUMNS: &'static [&'static str] = &input::FIELDS;
    const FILTER_SQL: &'static str = "AND ($3::text IS NULL OR tags @> ARRAY[$3]) \
         AND ($4::text IS NULL OR title ILIKE $4 OR body ILIKE $4)";
    const SUMMARIES: [&'static str; 3] = [
        "the template resource: list (newest first, keyset pages) and create; needs Authorization: Bearer",
        "one note: read (ETag), change with If-Match (JSON merge patch), delete; needs Authorization: Bearer",
        "note changes as server-sent events, resumable with Last-Event-ID; needs Authorization: Bearer or the session cookie",
    ];
    type Fields = NoteFields;

    fn read(row: &Row) -> NoteFields {
        NoteFields {
            title: row.get("title"),
            body: row.get("body"),
            tags: row.get("tags"),
        }
    }

    fn params(note: &NoteFields) -> Vec<&(dyn ToSql + Sync)> {
        vec![&note.title, &note.body, &note.tags]
    }

    fn create(body: &[u8]) -> Result<NoteFields, ApiError> {
        input::new_note(body)
    }

    fn patch(body: &[u8], current: &NoteFields) -> Result<NoteFields, ApiError> {
        input::merge_patch(body, current)
    }

    /// `tag` (notes with this tag) and `q` (title or body contains this, any case); none
    /// when the request gives neither.
    fn filter(environ: &Environ) -> Result<Vec<Param>, ApiError> {
        let tag = text_query(environ, "tag")?;
        let pattern = text_query(environ, "q")?.as_deref().map(like_pattern);
        if tag.is_none() && pattern.is_none() {
            return Ok(Vec::new());
        }
        Ok(vec![Box::new(tag), Box::new(pattern)])
    }

    fn document_filters() -> Vec<Parameter> {
        doc::filters()
    }

    fn document_input(api: &mut OpenApi, new: &str, patch: &str) {
        doc::input_schemas(api, new, patch);
    }
}

/// The notes' routes: the collection, one note, and the event stream.
///
/// ```
/// let table = pgbridge::apps::notes::routes();
/// assert!(table.iter().any(|r| r.path == "/notes/events"));
/// ```
pub fn routes() -> Vec<Route> {
    resource::routes::<Notes>()
}
