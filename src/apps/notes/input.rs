//! What a client may send: the JSON of a new note and of a merge patch, checked field by
//! field (the kit's [`Form`]) so a 422 can name every bad field at once.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::resource::input::Form;
pub use crate::resource::input::{NUL_MESSAGE, has_nul};

/// A note's fields, in the order of its columns.
pub const FIELDS: [&str; 3] = ["title", "body", "tags"];

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest body, in characters.
pub const MAX_BODY: usize = 20_000;
/// Most tags on a note.
pub const MAX_TAGS: usize = 10;
/// Longest tag, in characters.
pub const MAX_TAG: usize = 50;

/// A valid note's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoteFields {
    /// 1 to 200 characters, not only spaces.
    pub title: String,
    /// Up to 20,000 characters.
    pub body: String,
    /// Up to 10 distinct tags of 1 to 50 characters.
    pub tags: Vec<String>,
}

/// Parses `POST /notes`: `{"title": ..., "body"?: ..., "tags"?: [...]}`.
pub fn new_note(bytes: &[u8]) -> Result<NoteFields, ApiError> {
    fields(bytes, None)
}

/// Applies a JSON merge patch (RFC 7396) of `title`/`body`/`tags` to `current`.
/// `null` clears `body` and `tags`; `title` cannot be cleared.
pub fn merge_patch(bytes: &[u8], current: &NoteFields) -> Result<NoteFields, ApiError> {
    fields(bytes, Some(current))
}

/// A note's fields from `bytes`: a new one, or `current` patched.
fn fields(bytes: &[u8], current: Option<&NoteFields>) -> Result<NoteFields, ApiError> {
    let mut form = Form::parse(bytes, &FIELDS, "note")?;
    let title = form.take("title", current.map(|c| c.title.clone()), None);
    let body = form.take("body", current.map(|c| c.body.clone()), Some(String::new()));
    let tags = form.take("tags", current.map(|c| c.tags.clone()), Some(Vec::new()));
    if let Some(title) = &title {
        let chars = title.chars().count();
        let blank = title.trim().is_empty();
        form.check("title", !blank, "must not be empty");
        form.check(
            "title",
            blank || chars <= MAX_TITLE,
            &format!("must be at most {MAX_TITLE} characters, got {chars}"),
        );
    }
    if let Some(body) = &body {
        let chars = body.chars().count();
        form.check(
            "body",
            chars <= MAX_BODY,
            &format!("must be at most {MAX_BODY} characters, got {chars}"),
        );
    }
    if let Some(tags) = &tags {
        form.check(
            "tags",
            tags.len() <= MAX_TAGS,
            &format!("at most {MAX_TAGS} tags, got {}", tags.len()),
        );
        form.check(
            "tags",
            tags.iter()
                .all(|t| !t.trim().is_empty() && t.chars().count() <= MAX_TAG),
            &format!("each tag must be 1 to {MAX_TAG} characters"),
        );
        let mut distinct = tags.clone();
        distinct.sort();
        distinct.dedup();
        form.check(
            "tags",
            distinct.len() == tags.len(),
            "must not repeat a tag",
        );
    }
    form.finish(|| {
        Some(NoteFields {
            title: title?,
            body: body?,
            tags: tags?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_fields(err: ApiError) -> Vec<String> {
        match err {
            ApiError::Invalid(fields) => fields.into_iter().map(|f| f.field).collect(),
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn a_new_note_with_defaults() {
        let note = new_note(br#"{"title":"Hi"}"#).unwrap();
        assert_eq!(
            note,
            NoteFields {
                title: "Hi".into(),
                body: String::new(),
                tags: vec![]
            }
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let long = "x".repeat(201);
        let json = format!(
            r#"{{"title":"{long}","tags":["a","a","","b","c","d","e","f","g","h","i"],"color":"red"}}"#
        );
        let mut fields = invalid_fields(new_note(json.as_bytes()).unwrap_err());
        fields.sort();
        fields.dedup();
        assert_eq!(fields, ["color", "tags", "title"]);
        assert_eq!(
            invalid_fields(new_note(br#"{"title":"   "}"#).unwrap_err()),
            ["title"]
        );
        assert_eq!(
            invalid_fields(new_note(br#"{"body":"x"}"#).unwrap_err()),
            ["title"]
        );
        assert_eq!(
            invalid_fields(new_note(br#"{"title":1}"#).unwrap_err()),
            ["title"]
        );
    }

    #[test]
    fn nul_is_refused_in_every_string_field() {
        for json in [
            r#"{"title":"a\u0000b"}"#,
            r#"{"title":"a","body":"\u0000"}"#,
            r#"{"title":"a","tags":["ok","x\u0000"]}"#,
        ] {
            let fields = invalid_fields(new_note(json.as_bytes()).unwrap_err());
            assert_eq!(fields.len(), 1, "{json}: {fields:?}");
        }
        let err = new_note(br#"{"title":"\u0000","body":"\u0000","tags":["\u0000"]}"#).unwrap_err();
        let mut fields = invalid_fields(err);
        fields.sort();
        fields.dedup();
        assert_eq!(fields, ["body", "tags", "title"]);
        let current = NoteFields {
            title: "T".into(),
            body: String::new(),
            tags: vec![],
        };
        assert_eq!(
            invalid_fields(merge_patch(br#"{"body":"x\u0000"}"#, &current).unwrap_err()),
            ["body"]
        );
    }

    #[test]
    fn malformed_json_is_400() {
        for bad in [&b"{"[..], b"[]", b"\"title\"", b""] {
            assert_eq!(new_note(bad).unwrap_err().status(), 400);
        }
    }

    #[test]
    fn messages_name_the_rule() {
        let err = new_note(br#"{"title":"a","colour":1,"tags":"x"}"#).unwrap_err();
        let ApiError::Invalid(fields) = err else {
            panic!("422")
        };
        let said: Vec<(&str, &str)> = fields
            .iter()
            .map(|f| (f.field.as_str(), f.message.as_str()))
            .collect();
        assert_eq!(
            said,
            [
                ("colour", "is not a field of a note"),
                ("tags", "must be an array of strings")
            ]
        );
    }

    #[test]
    fn merge_patch_semantics() {
        let current = NoteFields {
            title: "T".into(),
            body: "B".into(),
            tags: vec!["x".into()],
        };
        let patched = merge_patch(br#"{"body":null,"tags":["y","z"]}"#, &current).unwrap();
        assert_eq!(
            patched,
            NoteFields {
                title: "T".into(),
                body: String::new(),
                tags: vec!["y".into(), "z".into()]
            }
        );
        assert_eq!(merge_patch(b"{}", &current).unwrap(), current);
        assert_eq!(
            invalid_fields(merge_patch(br#"{"title":null}"#, &current).unwrap_err()),
            ["title"]
        );
    }
}
