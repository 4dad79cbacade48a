//! The notes' SQL. Every statement is parameterised and prepared once per connection.
//!
//! The functions take `&impl Queries`, so they run on whatever the caller holds (an
//! owner-scoped [`Scoped`](crate::db::Scoped)); the statements' texts are also exported
//! ([`GET`], [`LIST`], [`INSERT`], [`UPDATE`], [`DELETE`]) with their row readers
//! ([`note_of`], [`page_of`]), for the handlers' one-round-trip units
//! ([`Step`](crate::db::Step)), which run them inside the owner's scope — never outside
//! one: the policies read a transaction-local owner.

use serde::Serialize;
use tokio_postgres::Row;

use crate::db::{DbError, Queries};

use super::input::NoteFields;

/// A note as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Note {
    /// Assigned by Postgres.
    #[schema(minimum = 1)]
    pub id: i64,
    /// The title.
    pub title: String,
    /// The body.
    pub body: String,
    /// The tags.
    pub tags: Vec<String>,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Bumped by every change; the ETag.
    #[schema(minimum = 1)]
    pub version: i32,
    /// `updated_at` in whole seconds since the Unix epoch: `Last-Modified`.
    #[serde(skip)]
    pub updated_epoch: i64,
}

impl Note {
    /// Its fields, for a merge patch.
    pub fn fields(&self) -> NoteFields {
        NoteFields {
            title: self.title.clone(),
            body: self.body.clone(),
            tags: self.tags.clone(),
        }
    }

    fn from_row(row: &Row) -> Self {
        Self {
            id: row.get("id"),
            title: row.get("title"),
            body: row.get("body"),
            tags: row.get("tags"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            version: row.get("version"),
            updated_epoch: row.get("updated_epoch"),
        }
    }
}

/// The columns of [`Note`], timestamps formatted by Postgres as RFC 3339 in UTC.
macro_rules! note_columns {
    () => {
        concat!(
            "id, title, body, tags, version, ",
            $crate::utc_text!("created_at"),
            " AS created_at, ",
            $crate::utc_text!("updated_at"),
            " AS updated_at, floor(extract(epoch FROM updated_at))::bigint AS updated_epoch"
        )
    };
}

/// `INSERT` of a note: `$1` title, `$2` body, `$3` tags; returns the note.
pub const INSERT: &str = concat!(
    "INSERT INTO notes (title, body, tags) VALUES ($1, $2, $3) RETURNING ",
    note_columns!()
);
/// One note by `$1` id.
pub const GET: &str = concat!("SELECT ", note_columns!(), " FROM notes WHERE id = $1");
/// A page: `$1` after (id), `$2` tag, `$3` ILIKE pattern, `$4` limit + 1.
pub const LIST: &str = concat!(
    "SELECT ",
    note_columns!(),
    " FROM notes \
     WHERE ($1::bigint IS NULL OR id < $1) \
       AND ($2::text IS NULL OR tags @> ARRAY[$2]) \
       AND ($3::text IS NULL OR title ILIKE $3 OR body ILIKE $3) \
     ORDER BY id DESC \
     LIMIT $4"
);
/// Replaces note `$1`'s fields if its version is `$2` (`NULL`: any); returns the note.
pub const UPDATE: &str = concat!(
    "UPDATE notes SET title = $3, body = $4, tags = $5, \
            version = version + 1, updated_at = now() \
     WHERE id = $1 AND ($2::int IS NULL OR version = $2) \
     RETURNING ",
    note_columns!()
);
/// Deletes note `$1` if its version is `$2` (`NULL`: any); returns its id.
pub const DELETE: &str =
    "DELETE FROM notes WHERE id = $1 AND ($2::int IS NULL OR version = $2) RETURNING id";

/// The note in `rows` (the answer of [`GET`], [`INSERT`] or [`UPDATE`]), if any.
pub fn note_of(rows: &[Row]) -> Option<Note> {
    rows.first().map(Note::from_row)
}

/// The page in `rows` (the answer of [`LIST`] run with `limit + 1`).
pub fn page_of(rows: &[Row], limit: i64) -> Page {
    let mut notes: Vec<Note> = rows.iter().map(Note::from_row).collect();
    let next_after = if notes.len() as i64 > limit {
        notes.truncate(limit as usize);
        notes.last().map(|n| n.id)
    } else {
        None
    };
    Page { notes, next_after }
}

/// The `ILIKE` pattern of a filter's `q`, for [`LIST`]'s `$3`.
pub fn pattern_of(filter: &Filter) -> Option<String> {
    filter.q.as_deref().map(like_pattern)
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    /// Newest first.
    pub notes: Vec<Note>,
    /// Where the next page starts, if there is one.
    pub next_after: Option<i64>,
}

/// Filters of a listing.
#[derive(Debug, Default)]
pub struct Filter {
    /// Only notes with this tag.
    pub tag: Option<String>,
    /// Only notes whose title or body contains this text (case-insensitive).
    pub q: Option<String>,
}

/// Inserts a note, owned by the scope's account (the column's default).
pub async fn insert(tx: &impl Queries, note: &NoteFields) -> Result<Note, DbError> {
    let row = tx
        .query_one(INSERT, &[&note.title, &note.body, &note.tags])
        .await?;
    Ok(Note::from_row(&row))
}

/// One note.
pub async fn get(conn: &impl Queries, id: i64) -> Result<Option<Note>, DbError> {
    let row = conn.query_opt(GET, &[&id]).await?;
    Ok(row.as_ref().map(Note::from_row))
}

/// A page, newest first, starting after the note `after` (keyset pagination: stable under
/// inserts and deletes, and as fast on page 1,000 as on page 1).
pub async fn list(
    conn: &impl Queries,
    filter: &Filter,
    after: Option<i64>,
    limit: i64,
) -> Result<Page, DbError> {
    let pattern = pattern_of(filter);
    let rows = conn
        .query(LIST, &[&after, &filter.tag, &pattern, &(limit + 1)])
        .await?;
    Ok(page_of(&rows, limit))
}

/// Replaces a note's fields if its version is still `expected` (`None`: any version).
/// `Ok(None)`: no such note at that version.
pub async fn update(
    conn: &impl Queries,
    id: i64,
    expected: Option<i32>,
    note: &NoteFields,
) -> Result<Option<Note>, DbError> {
    let row = conn
        .query_opt(
            UPDATE,
            &[&id, &expected, &note.title, &note.body, &note.tags],
        )
        .await?;
    Ok(row.as_ref().map(Note::from_row))
}

/// Deletes a note if its version is still `expected` (`None`: any). Whether it did.
pub async fn delete(conn: &impl Queries, id: i64, expected: Option<i32>) -> Result<bool, DbError> {
    let deleted = conn.execute(DELETE, &[&id, &expected]).await?;
    Ok(deleted == 1)
}

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
        status: row.get::<_, i16>(1) as u16,
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
            &(recorded.status as i16),
            &recorded.location,
            &recorded.etag,
            &recorded.response,
        ],
    )
    .await?;
    Ok(())
}

/// `ILIKE` pattern matching `text` literally anywhere.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_literal() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
