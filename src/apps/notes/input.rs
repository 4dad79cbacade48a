//! What a client may send: the JSON of a new note and of a merge patch, checked field by
//! field so a 422 can name every bad field at once.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldError};

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest body, in characters.
pub const MAX_BODY: usize = 20_000;
/// Most tags on a note.
pub const MAX_TAGS: usize = 10;
/// Longest tag, in characters.
pub const MAX_TAG: usize = 50;

/// A valid note's fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    let object = json_object(bytes)?;
    let mut errors = Vec::new();
    unknown_fields(&object, &mut errors);
    let title = match object.get("title") {
        None => {
            errors.push(field("title", "is required"));
            None
        }
        Some(value) => string_field("title", value, &mut errors),
    };
    let body = match object.get("body") {
        None | Some(Value::Null) => Some(String::new()),
        Some(value) => string_field("body", value, &mut errors),
    };
    let tags = match object.get("tags") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(value) => tags_field(value, &mut errors),
    };
    finish(title, body, tags, errors)
}

/// Applies a JSON merge patch (RFC 7396) of `title`/`body`/`tags` to `current`.
/// `null` clears `body` and `tags`; `title` cannot be cleared.
pub fn merge_patch(bytes: &[u8], current: &NoteFields) -> Result<NoteFields, ApiError> {
    let object = json_object(bytes)?;
    let mut errors = Vec::new();
    unknown_fields(&object, &mut errors);
    let title = match object.get("title") {
        None => Some(current.title.clone()),
        Some(value) => string_field("title", value, &mut errors),
    };
    let body = match object.get("body") {
        None => Some(current.body.clone()),
        Some(Value::Null) => Some(String::new()),
        Some(value) => string_field("body", value, &mut errors),
    };
    let tags = match object.get("tags") {
        None => Some(current.tags.clone()),
        Some(Value::Null) => Some(Vec::new()),
        Some(value) => tags_field(value, &mut errors),
    };
    finish(title, body, tags, errors)
}

fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(err) => Err(ApiError::bad_request(format!("malformed JSON: {err}"))),
    }
}

fn unknown_fields(object: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    for key in object.keys() {
        if !matches!(key.as_str(), "title" | "body" | "tags") {
            errors.push(field(key, "is not a field of a note"));
        }
    }
}

fn string_field(name: &str, value: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        _ => {
            errors.push(field(name, "must be a string"));
            None
        }
    }
}

fn tags_field(value: &Value, errors: &mut Vec<FieldError>) -> Option<Vec<String>> {
    let Value::Array(items) = value else {
        errors.push(field("tags", "must be an array of strings"));
        return None;
    };
    let mut tags = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(tag) => tags.push(tag.clone()),
            _ => {
                errors.push(field("tags", "must be an array of strings"));
                return None;
            }
        }
    }
    Some(tags)
}

fn finish(
    title: Option<String>,
    body: Option<String>,
    tags: Option<Vec<String>>,
    mut errors: Vec<FieldError>,
) -> Result<NoteFields, ApiError> {
    for (name, text) in [("title", &title), ("body", &body)] {
        if text.as_deref().is_some_and(has_nul) {
            errors.push(field(name, NUL_MESSAGE));
        }
    }
    if tags.as_ref().is_some_and(|t| t.iter().any(|t| has_nul(t))) {
        errors.push(field("tags", NUL_MESSAGE));
    }
    if let Some(title) = &title {
        let chars = title.chars().count();
        if title.trim().is_empty() {
            errors.push(field("title", "must not be empty"));
        } else if chars > MAX_TITLE {
            errors.push(field(
                "title",
                &format!("must be at most {MAX_TITLE} characters, got {chars}"),
            ));
        }
    }
    if let Some(body) = &body {
        let chars = body.chars().count();
        if chars > MAX_BODY {
            errors.push(field(
                "body",
                &format!("must be at most {MAX_BODY} characters, got {chars}"),
            ));
        }
    }
    if let Some(tags) = &tags {
        if tags.len() > MAX_TAGS {
            errors.push(field(
                "tags",
                &format!("at most {MAX_TAGS} tags, got {}", tags.len()),
            ));
        }
        if tags
            .iter()
            .any(|t| t.trim().is_empty() || t.chars().count() > MAX_TAG)
        {
            errors.push(field(
                "tags",
                &format!("each tag must be 1 to {MAX_TAG} characters"),
            ));
        }
        let mut sorted = tags.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != tags.len() {
            errors.push(field("tags", "must not repeat a tag"));
        }
    }
    match (title, body, tags) {
        (Some(title), Some(body), Some(tags)) if errors.is_empty() => {
            Ok(NoteFields { title, body, tags })
        }
        _ => Err(ApiError::Invalid(errors)),
    }
}

/// What a 422 or 400 says of text holding U+0000, which Postgres `text` cannot store.
pub const NUL_MESSAGE: &str = "must not contain the NUL character (\\u0000)";

/// Whether `text` holds U+0000.
pub fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

fn field(name: &str, message: &str) -> FieldError {
    FieldError {
        field: name.to_owned(),
        message: message.to_owned(),
    }
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
