//! A resource's SQL, built once per resource from its [`Resource::COLUMNS`], and its rows
//! read back as [`Item`]s.
//!
//! Every statement is parameterised, prepared once per connection, and run inside the
//! owner's scope — never outside one: the policies read a transaction-local owner.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use tokio_postgres::Row;

use super::{MAX_LIMIT, Resource};
use crate::db::UtcTime;

/// An item as the API shows it: its own fields between the kit's. Its timestamps are kept
/// binary and written as RFC 3339 when it is serialized.
///
/// ```
/// use pgbridge::db::UtcTime;
/// use pgbridge::resource::Item;
///
/// let item = Item {
///     id: 7,
///     fields: serde_json::json!({ "title": "t" }),
///     created_at: UtcTime::from_unix_micros(1_767_225_600_000_000),
///     updated_at: UtcTime::from_unix_micros(1_767_312_000_000_001),
///     version: 2,
/// };
/// assert_eq!(
///     serde_json::to_string(&item).unwrap(),
///     r#"{"id":7,"title":"t","created_at":"2026-01-01T00:00:00.000000Z","updated_at":"2026-01-02T00:00:00.000001Z","version":2}"#
/// );
/// assert_eq!(item.updated_epoch(), 1_767_312_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item<F> {
    /// Assigned by Postgres.
    pub id: i64,
    /// The resource's own fields.
    #[serde(flatten)]
    pub fields: F,
    /// RFC 3339, UTC.
    pub created_at: UtcTime,
    /// RFC 3339, UTC.
    pub updated_at: UtcTime,
    /// Bumped by every change; the ETag.
    pub version: i32,
}

impl<F> Item<F> {
    /// `updated_at` in whole seconds since the Unix epoch: `Last-Modified`.
    pub fn updated_epoch(&self) -> i64 {
        self.updated_at.unix_seconds()
    }
}

/// The columns of a read row the kit reads, by their place in [`Statements::get`]'s
/// select list (`id`, the resource's columns, `version`, `created_at`, `updated_at`), so
/// that no name is looked up per row.
///
/// ```
/// use pgbridge::resource::store::{RowShape, Statements};
///
/// // Notes have three columns of their own: `version` is the fifth column.
/// let sql = Statements::new("notes", &["title", "body", "tags"], "");
/// assert!(sql.get.starts_with("SELECT id, title, body, tags, version, "));
/// let _shape = RowShape::of::<pgbridge::apps::notes::Notes>();
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RowShape {
    version: usize,
}

impl RowShape {
    /// The shape of `R`'s rows.
    pub fn of<R: Resource>() -> Self {
        Self {
            version: 1 + R::COLUMNS.len(),
        }
    }

    /// The item's id.
    pub fn id(self, row: &Row) -> i64 {
        row.get(0)
    }

    /// The item's version (its ETag).
    pub fn version(self, row: &Row) -> i32 {
        row.get(self.version)
    }

    /// `updated_at` in whole seconds since the Unix epoch (`Last-Modified`).
    pub fn updated_epoch(self, row: &Row) -> i64 {
        row.get::<_, UtcTime>(self.version + 2).unix_seconds()
    }

    /// The item of `row` (the columns of [`Statements::get`]), its fields read by `read`.
    pub fn item<F>(self, row: &Row, read: impl FnOnce(&Row) -> F) -> Item<F> {
        Item {
            id: self.id(row),
            fields: read(row),
            created_at: row.get(self.version + 1),
            updated_at: row.get(self.version + 2),
            version: self.version(row),
        }
    }
}

/// The statements of one resource.
///
/// They return `created_at` and `updated_at` as `timestamptz` (binary, formatted by
/// [`RowShape::item`]), so that Postgres formats nothing. An unfiltered page after a cursor asks for `id < $1`: a plain comparison, which
/// Postgres checks in the index before the policy, in a generic plan too (an expression
/// such as `coalesce($1, …)` it would check row by row after the policy); a first page
/// asks for no id at all.
#[derive(Debug)]
pub struct Statements {
    /// One item by `$1` id.
    pub get: String,
    /// A filtered page: `$1` after (id; `NULL` for the first page), `$2` limit + 1, then the
    /// filter's parameters. Planned for the filter's values (a custom plan).
    pub list: String,
    /// `SELECT <the item's columns> FROM <table>`: what [`page`](Self::page) builds on.
    select_from: String,
    /// Unfiltered pages of each size `n` (the limit + 1, `1..=MAX_LIMIT + 1`), `LIMIT n`
    /// written into the text, built on first use: first pages (no parameter), and pages
    /// after `$1`.
    pages: [Vec<OnceLock<String>>; 2],
    /// `INSERT` of the columns `$1…`; returns the item.
    pub insert: String,
    /// Replaces item `$1`'s columns (`$3…`) if its version is `$2` (`NULL`: any).
    pub update: String,
    /// Deletes item `$1` if its version is `$2` (`NULL`: any); returns its id.
    pub delete: String,
}

impl Statements {
    /// The statements of `table` with the writable `columns` and the listing's `filter`
    /// conditions.
    ///
    /// ```
    /// let sql = pgbridge::resource::store::Statements::new("tasks", &["title", "done"], "");
    /// assert!(sql.insert.starts_with("INSERT INTO tasks (title, done) VALUES ($1, $2) RETURNING id, "));
    /// assert!(sql.update.contains("SET title = $3, done = $4, version = version + 1"));
    /// assert!(sql.page(21, true).ends_with("WHERE id < $1 ORDER BY id DESC LIMIT 21"));
    /// ```
    pub fn new(table: &str, columns: &[&str], filter: &str) -> Self {
        let select = format!(
            "id, {}, version, created_at, updated_at",
            columns.join(", ")
        );
        let numbered = |from: usize| -> Vec<String> {
            (0..columns.len())
                .map(|i| format!("${}", i + from))
                .collect()
        };
        let sets: Vec<String> = columns
            .iter()
            .zip(numbered(3))
            .map(|(column, n)| format!("{column} = {n}"))
            .collect();
        let filter = if filter.is_empty() {
            String::new()
        } else {
            format!(" {filter}")
        };
        let max = usize::try_from(MAX_LIMIT).unwrap_or(0) + 1;
        Self {
            get: format!("SELECT {select} FROM {table} WHERE id = $1"),
            list: format!(
                "SELECT {select} FROM {table} WHERE ($1::bigint IS NULL OR id < $1){filter} \
                 ORDER BY id DESC LIMIT $2"
            ),
            select_from: format!("SELECT {select} FROM {table}"),
            pages: [0, 1].map(|_| std::iter::repeat_with(OnceLock::new).take(max).collect()),
            insert: format!(
                "INSERT INTO {table} ({}) VALUES ({}) RETURNING {select}",
                columns.join(", "),
                numbered(1).join(", ")
            ),
            update: format!(
                "UPDATE {table} SET {}, version = version + 1, updated_at = now() \
                 WHERE id = $1 AND ($2::int IS NULL OR version = $2) RETURNING {select}",
                sets.join(", ")
            ),
            delete: format!(
                "DELETE FROM {table} WHERE id = $1 AND ($2::int IS NULL OR version = $2) RETURNING id"
            ),
        }
    }

    /// The unfiltered page of `fetch` rows (the limit + 1, clamped to `1..=MAX_LIMIT + 1`):
    /// the first (no parameter) or, `after`, the one below the id `$1`.
    ///
    /// Why not `LIMIT $2`: a prepared statement is planned for its parameters' values
    /// five times, then kept as one generic plan if that plan's estimate is no worse. A
    /// generic plan has to assume a `LIMIT $2` returns a tenth of the table, so on any
    /// table of more than a few pages it never looks as cheap as the custom ones, and every
    /// page was planned again (about as much work as running it). With the count in the
    /// text, the generic plan is the custom plan, and is kept. A service has at most
    /// `2 × (MAX_LIMIT + 1)` such texts per resource.
    pub fn page(&self, fetch: i64, after: bool) -> &str {
        let pages = &self.pages[usize::from(after)];
        let last = pages.len().max(1) - 1;
        let index = usize::try_from(fetch.max(1) - 1).unwrap_or(0).min(last);
        pages[index].get_or_init(|| {
            let below = if after { " WHERE id < $1" } else { "" };
            format!(
                "{}{below} ORDER BY id DESC LIMIT {}",
                self.select_from,
                index + 1
            )
        })
    }

    /// `R`'s statements, built on first use and kept for the life of the process.
    pub fn of<R: Resource>() -> &'static Self {
        static ALL: OnceLock<Mutex<HashMap<TypeId, &'static Statements>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        all.entry(TypeId::of::<R>()).or_insert_with(|| {
            Box::leak(Box::new(Self::new(R::SPEC.name, R::COLUMNS, R::FILTER_SQL)))
        })
    }
}

/// The item in `rows` (the answer of a get, insert or update), if any.
pub fn item_of<R: Resource>(rows: &[Row]) -> Option<Item<R::Fields>> {
    rows.first()
        .map(|row| RowShape::of::<R>().item(row, R::read))
}

/// `ILIKE` pattern matching `text` literally anywhere (for a filter's `q`).
///
/// ```
/// assert_eq!(pgbridge::resource::store::like_pattern("50%"), "%50\\%%");
/// ```
pub fn like_pattern(text: &str) -> String {
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

    #[test]
    fn statements_number_their_parameters() {
        let sql = Statements::new("notes", &["title", "body", "tags"], "AND x = $3");
        assert!(
            sql.insert
                .contains("(title, body, tags) VALUES ($1, $2, $3)")
        );
        assert!(sql.update.contains("title = $3, body = $4, tags = $5,"));
        assert!(
            sql.list
                .contains("id < $1) AND x = $3 ORDER BY id DESC LIMIT $2")
        );
        assert!(!sql.page(21, false).contains("x = $3"));
        assert!(!sql.page(21, true).contains("x = $3"));
        assert!(
            sql.page(21, false)
                .ends_with("FROM notes ORDER BY id DESC LIMIT 21")
        );
        assert!(
            sql.page(21, true)
                .ends_with("FROM notes WHERE id < $1 ORDER BY id DESC LIMIT 21")
        );
        assert!(sql.page(0, false).ends_with("LIMIT 1"));
        let most = format!("LIMIT {}", MAX_LIMIT + 1);
        assert!(sql.page(i64::MAX, true).ends_with(&most));
    }
}
