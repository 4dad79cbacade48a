//! `/gadgets`: an owned resource on the resource kit, defined in the test tree — what
//! `scripts/new-resource gadgets` writes as `src/apps/gadgets.rs` (its migration is
//! `gadgets.sql` beside this file).

use pgbridge::error::ApiError;
use pgbridge::resource::input::Form;
use pgbridge::resource::{Resource, Spec};
use serde::Serialize;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// Longest title, in characters.
const MAX_TITLE: usize = 200;

/// What a client writes of a gadget.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Gadget {
    /// 1 to 200 characters, not only spaces.
    pub title: String,
    /// Whether it is done: false when absent on create; `null` resets it to false.
    #[serde(default)]
    #[schema(nullable)]
    pub done: bool,
}

/// The gadgets resource.
pub struct Gadgets;

impl Resource for Gadgets {
    const SPEC: &'static Spec = &pgbridge::resource_spec!("gadgets", "gadget");
    const COLUMNS: &'static [&'static str] = &["title", "done"];
    const SUMMARIES: [&'static str; 3] = [
        "gadgets: list (newest first) and create; needs Authorization: Bearer",
        "one gadget: read, change with If-Match, delete; needs Authorization: Bearer",
        "gadget changes as server-sent events; needs Authorization: Bearer or the session cookie",
    ];
    type Fields = Gadget;

    fn read(row: &Row) -> Gadget {
        Gadget {
            title: row.get("title"),
            done: row.get("done"),
        }
    }

    fn params(gadget: &Gadget) -> Vec<&(dyn ToSql + Sync)> {
        vec![&gadget.title, &gadget.done]
    }

    fn create(body: &[u8]) -> Result<Gadget, ApiError> {
        fields(body, None)
    }

    fn patch(body: &[u8], current: &Gadget) -> Result<Gadget, ApiError> {
        fields(body, Some(current))
    }
}

/// A gadget from `body`: a new one, or `current` merge-patched.
fn fields(body: &[u8], current: Option<&Gadget>) -> Result<Gadget, ApiError> {
    let mut form = Form::parse(body, Gadgets::COLUMNS, "gadget")?;
    let title: Option<String> = form.take("title", current.map(|c| c.title.clone()), None);
    let done = form.take("done", current.map(|c| c.done), Some(false));
    if let Some(title) = &title {
        let chars = title.chars().count();
        form.check("title", !title.trim().is_empty(), "must not be empty");
        form.check(
            "title",
            chars <= MAX_TITLE,
            &format!("must be at most {MAX_TITLE} characters, got {chars}"),
        );
    }
    form.finish(|| {
        Some(Gadget {
            title: title?,
            done: done?,
        })
    })
}
