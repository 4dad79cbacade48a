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

use super::Resource;

/// An item as the API shows it: its own fields between the kit's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item<F> {
    /// Assigned by Postgres.
    pub id: i64,
    /// The resource's own fields.
    #[serde(flatten)]
    pub fields: F,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
    /// Bumped by every change; the ETag.
    pub version: i32,
    /// `updated_at` in whole seconds since the Unix epoch: `Last-Modified`.
    #[serde(skip)]
    pub updated_epoch: i64,
}

impl<F> Item<F> {
    /// The item of `row` (the columns of [`Statements::get`]), its fields read by `read`.
    pub fn from_row(row: &Row, read: impl FnOnce(&Row) -> F) -> Self {
        Self {
            id: row.get("id"),
            fields: read(row),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            version: row.get("version"),
            updated_epoch: row.get("updated_epoch"),
        }
    }
}

/// An item answered straight from its row: the same JSON as [`Item`], with the kit's
/// text columns borrowed from the row instead of copied (reads serialize this; writes,
/// which keep the item, use [`Item`]).
///
/// ```
/// use pgbridge::resource::store::ItemView;
///
/// let view = ItemView {
///     id: 7,
///     fields: serde_json::json!({ "title": "t" }),
///     created_at: "2026-01-01T00:00:00Z",
///     updated_at: "2026-01-02T00:00:00Z",
///     version: 2,
/// };
/// assert_eq!(
///     serde_json::to_string(&view).unwrap(),
///     r#"{"id":7,"title":"t","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-02T00:00:00Z","version":2}"#
/// );
/// ```
#[derive(Debug, Serialize)]
pub struct ItemView<'r, F> {
    /// Assigned by Postgres.
    pub id: i64,
    /// The resource's own fields.
    #[serde(flatten)]
    pub fields: F,
    /// RFC 3339, UTC.
    pub created_at: &'r str,
    /// RFC 3339, UTC.
    pub updated_at: &'r str,
    /// Bumped by every change; the ETag.
    pub version: i32,
}

/// The columns of a read row the kit reads, by their place in [`Statements::get`]'s
/// select list (`id`, the resource's columns, `version`, `created_at`, `updated_at`,
/// `updated_epoch`), so that no name is looked up per row.
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
        row.get(self.version + 3)
    }

    /// The item of `row` as the API shows it, its fields read by `read`.
    pub fn view<'r, F>(self, row: &'r Row, read: impl FnOnce(&Row) -> F) -> ItemView<'r, F> {
        ItemView {
            id: self.id(row),
            fields: read(row),
            created_at: row.get(self.version + 1),
            updated_at: row.get(self.version + 2),
            version: self.version(row),
        }
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<F> {
    /// Newest first.
    pub items: Vec<Item<F>>,
    /// Where the next page starts, if there is one.
    pub next_after: Option<i64>,
}

/// The statements of one resource.
#[derive(Debug)]
pub struct Statements {
    /// One item by `$1` id.
    pub get: String,
    /// A page: `$1` after (id), `$2` limit + 1, then the filter's parameters.
    pub list: String,
    /// A page with no filter: `$1` after, `$2` limit + 1.
    pub list_all: String,
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
    /// ```
    pub fn new(table: &str, columns: &[&str], filter: &str) -> Self {
        let select = format!(
            "id, {}, version, {} AS created_at, {} AS updated_at, \
             floor(extract(epoch FROM updated_at))::bigint AS updated_epoch",
            columns.join(", "),
            crate::utc_text!("created_at"),
            crate::utc_text!("updated_at"),
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
        let list = |filter: &str| {
            format!(
                "SELECT {select} FROM {table} WHERE ($1::bigint IS NULL OR id < $1) {filter} \
                 ORDER BY id DESC LIMIT $2"
            )
        };
        Self {
            get: format!("SELECT {select} FROM {table} WHERE id = $1"),
            list: list(filter),
            list_all: list(""),
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
    rows.first().map(|row| Item::from_row(row, R::read))
}

/// The page in `rows` (the answer of a listing run with `limit + 1`).
pub fn page_of<R: Resource>(rows: &[Row], limit: i64) -> Page<R::Fields> {
    let mut items: Vec<_> = rows.iter().map(|r| Item::from_row(r, R::read)).collect();
    let next_after = if items.len() as i64 > limit {
        items.truncate(usize::try_from(limit).unwrap_or(0));
        items.last().map(|n| n.id)
    } else {
        None
    };
    Page { items, next_after }
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
        assert!(!sql.list_all.contains("x = $3"));
    }
}
