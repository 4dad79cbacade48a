//! What the API document says of the notes that is a note's own (the rest is the kit's,
//! [`crate::resource::document`]): the list's filters ([`filters`]) and the bodies clients
//! send ([`input_schemas`]: `NewNote`, `NotePatch`, made of `Title`, `Body` and `Tags`),
//! whose bounds are [`super::input`]'s constants.
//!
//! ```
//! let mut doc = pgbridge::api_doc::base();
//! pgbridge::resource::document::collection::<pgbridge::apps::notes::Notes>(&mut doc);
//! let json = pgbridge::api_doc::json(&doc);
//! assert_eq!(json["components"]["schemas"]["NewNote"]["required"][0], "title");
//! ```

use utoipa::openapi::OpenApi;
use utoipa::openapi::path::Parameter;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type,
};

use super::input::{MAX_BODY, MAX_TAG, MAX_TAGS, MAX_TITLE};
use crate::api_doc::parts;

/// `20000` as `20,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The list's filters beyond the page: `tag` and `q`.
pub fn filters() -> Vec<Parameter> {
    vec![
        parts::query(
            "tag",
            "Only notes with this tag. No NUL (U+0000): that is a 400.",
            parts::string_matching(NO_NUL),
        ),
        parts::query(
            "q",
            "Only notes whose title or body contains this text (case-insensitive, literally). \
             No NUL (U+0000): that is a 400.",
            parts::string_matching(NO_NUL),
        ),
    ]
}

/// Text with no NUL (U+0000), which Postgres `text` cannot hold.
const NO_NUL: &str = "^[^\\u0000]*$";
/// Text with no NUL that is not only white space (Unicode `White_Space`).
const NOT_BLANK: &str = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000]*$";

/// `Title`, `Body`, `Tags`, and the two bodies made of them: `NewNote` (a title is
/// required) and `NotePatch` (a JSON merge patch). Nothing else may be sent.
pub fn input_schemas(doc: &mut OpenApi, new: &str, patch: &str) {
    let title = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_TITLE))
        .pattern(Some(NOT_BLANK))
        .description(Some(format!(
            "1 to {MAX_TITLE} characters, not only white space (Unicode White_Space), no NUL \
             (U+0000)."
        )));
    let body = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(MAX_BODY))
        .pattern(Some(NO_NUL))
        .description(Some(format!(
            "At most {} characters, no NUL (U+0000); null (or absent, on create) is empty.",
            thousands(MAX_BODY)
        )));
    let tag = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_TAG))
        .pattern(Some(NOT_BLANK));
    let tags = ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .max_items(Some(MAX_TAGS))
        .unique_items(true)
        .items(tag)
        .description(Some(format!(
            "At most {MAX_TAGS} distinct tags of 1 to {MAX_TAG} characters, not only white \
             space, no NUL (U+0000); null (or absent, on create) is none."
        )));
    parts::add_schema(doc, "Title", Schema::from(title));
    parts::add_schema(doc, "Body", Schema::from(body));
    parts::add_schema(doc, "Tags", Schema::from(tags));
    let fields = || {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
            .property("title", parts::schema_ref("Title"))
            .property("body", parts::schema_ref("Body"))
            .property("tags", parts::schema_ref("Tags"))
    };
    parts::add_schema(doc, new, fields().required("title"));
    parts::add_schema(
        doc,
        patch,
        fields().description(Some(
            "A JSON merge patch (RFC 7396): the fields given replace the note's.",
        )),
    );
}
