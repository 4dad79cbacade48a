//! The notes' part of the API document (`GET /openapi.json`), in one place: the collection
//! (`listNotes`, `createNote`), one note (`getNote`, `patchNote`, `deleteNote`) and the event
//! stream (`noteEvents`), with their schemas.
//!
//! The operations of an owned JSON resource are written once, for any resource, from its
//! [`Names`] (paths, nouns, item schema) — what is the notes' own is apart: the list's
//! filters ([`filters`]) and the input schemas ([`input_schemas`]), whose bounds are
//! [`super::input`]'s constants.
//!
//! ```
//! let mut doc = pgbridge::api_doc::base();
//! pgbridge::apps::notes::doc::collection(&mut doc);
//! let list = doc.paths.get_path_operation("/notes", utoipa::openapi::HttpMethod::Get);
//! assert_eq!(list.unwrap().operation_id.as_deref(), Some("listNotes"));
//! ```

use utoipa::openapi::path::{OperationBuilder, Parameter};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::{OpenApi, link::LinkBuilder};

use super::events::NoteEvent;
use super::input::{MAX_BODY, MAX_TAG, MAX_TAGS, MAX_TITLE};
use super::store::Note;
use super::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::api_doc::parts::{self, Method};

/// What a resource's operations are called: its paths, its noun, and its item schema.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    /// The collection (`/notes`).
    pub collection: &'static str,
    /// One item (`/notes/{id}`).
    pub item: &'static str,
    /// The change feed (`/notes/events`).
    pub events: &'static str,
    /// One item, in prose (`note`).
    pub noun: &'static str,
    /// Several, in prose and in the list's field (`notes`).
    pub plural: &'static str,
    /// The item's component schema (`Note`); the others are named after it (`NewNote`,
    /// `NotePatch`, `NotePage`).
    pub schema: &'static str,
}

/// The notes' names.
pub const NOTES: Names = Names {
    collection: "/notes",
    item: "/notes/{id}",
    events: "/notes/events",
    noun: "note",
    plural: "notes",
    schema: "Note",
};

impl Names {
    fn new_schema(&self) -> String {
        format!("New{}", self.schema)
    }
    fn patch_schema(&self) -> String {
        format!("{}Patch", self.schema)
    }
    fn page_schema(&self) -> String {
        format!("{}Page", self.schema)
    }
    /// `getNote`, `listNotes`: a verb and the noun, camel case.
    fn id(&self, verb: &str, noun: &str) -> String {
        format!("{verb}{}", capitalized(noun))
    }
}

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

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `GET /notes` and `POST /notes`.
pub fn collection(doc: &mut OpenApi) {
    schemas(doc);
    list(doc, &NOTES, filters());
    create(doc, &NOTES);
}

/// `GET`, `PATCH` and `DELETE /notes/{id}`.
pub fn item(doc: &mut OpenApi) {
    schemas(doc);
    item_operations(doc, &NOTES);
}

/// `GET /notes/events`.
pub fn events(doc: &mut OpenApi) {
    parts::add_schema_of::<NoteEvent>(doc);
    feed(doc, &NOTES);
}

/// The notes' component schemas: the note, its page, and what clients send.
fn schemas(doc: &mut OpenApi) {
    parts::add_schema_of::<Note>(doc);
    page_schema(doc, &NOTES);
    input_schemas(doc, &NOTES);
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
pub fn input_schemas(doc: &mut OpenApi, names: &Names) {
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
    parts::add_schema(doc, &names.new_schema(), fields().required("title"));
    parts::add_schema(
        doc,
        &names.patch_schema(),
        fields().description(Some(format!(
            "A JSON merge patch (RFC 7396): the fields given replace the {}'s.",
            names.noun
        ))),
    );
}

/// `NotePage`: a page of items and the cursor of the next.
fn page_schema(doc: &mut OpenApi, names: &Names) {
    let next = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "Pass back as `cursor` for the next page; null on the last.",
        ));
    let page = ObjectBuilder::new()
        .schema_type(Type::Object)
        .required(names.plural)
        .required("next_cursor")
        .property(
            names.plural,
            parts::array_of(parts::schema_ref(names.schema)),
        )
        .property("next_cursor", next);
    parts::add_schema(doc, &names.page_schema(), page);
}

/// The `ETag` of one item.
fn etag(names: &Names) -> utoipa::openapi::Header {
    parts::header(&format!(
        "The {}'s version as a strong entity tag, `\"v<version>\"`.",
        names.noun
    ))
}

/// An operation that needs the bearer token, and answers 401 and 503 like every such one.
fn owned(id: &str, summary: &str) -> OperationBuilder {
    parts::operation(id, summary)
        .security(parts::bearer())
        .response("401", parts::unauthorized())
        .response("503", parts::unavailable())
}

/// `GET` of the collection: a page, newest first.
fn list(doc: &mut OpenApi, names: &Names, filters: Vec<Parameter>) {
    let limit = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT));
    let mut parameters = vec![
        parts::query(
            "limit",
            &format!("Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."),
            limit,
        ),
        parts::query(
            "cursor",
            "The `next_cursor` of the previous page.",
            parts::string(),
        ),
    ];
    parameters.extend(filters);
    let operation = owned(
        &names.id("list", names.plural),
        &format!("A page of {}, newest first", names.plural),
    )
    .parameters(Some(parameters))
    .response(
        "200",
        parts::json(
            &format!("A page of {}.", names.plural),
            parts::schema_ref(&names.page_schema()),
        ),
    )
    .response("400", parts::error("A bad `limit` or `cursor`."));
    parts::add(doc, names.collection, Method::Get, operation);
}

/// `POST` to the collection, with `Idempotency-Key`.
fn create(doc: &mut OpenApi, names: &Names) {
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(255))
        .pattern(Some("^[!-~]([\\t -~]*[!-~])?$"));
    let link = |operation: String, with_etag: bool| {
        let link = LinkBuilder::new()
            .operation_id(operation)
            .parameter("id", "$response.body#/id");
        if with_etag {
            link.parameter("header.If-Match", "$response.header.ETag")
        } else {
            link
        }
        .build()
    };
    let created = parts::json(
        "Created (or, with a replayed `Idempotency-Key`, the first response again).",
        parts::schema_ref(names.schema),
    )
    .header(
        "Location",
        parts::header(&format!("The new {}'s URL.", names.noun)),
    )
    .header("ETag", etag(names))
    .link(
        names.id("Get", names.noun),
        link(names.id("get", names.noun), false),
    )
    .link(
        names.id("Patch", names.noun),
        link(names.id("patch", names.noun), true),
    )
    .link(
        names.id("Delete", names.noun),
        link(names.id("delete", names.noun), false),
    );
    let operation = owned(
        &names.id("create", names.noun),
        &format!("Create a {}", names.noun),
    )
    .parameter(parts::header_parameter(
        "Idempotency-Key",
        false,
        "Retrying with the same key returns the first response (with \
         `Idempotent-Replayed: true`); the same key with another body is 422.",
        key,
    ))
    .request_body(Some(parts::body(
        &["application/json"],
        parts::schema_ref(&names.new_schema()),
    )))
    .response("201", created)
    .response(
        "400",
        parts::error("Malformed JSON, not an object, or a bad `Idempotency-Key`."),
    )
    .response(
        "413",
        parts::error("The body is larger than the service accepts."),
    )
    .response("415", parts::error("The body is not `application/json`."))
    .response(
        "422",
        parts::error("Fields that break the rules, each named in `fields`."),
    );
    parts::add(doc, names.collection, Method::Post, operation);
}

/// `GET`, `PATCH` and `DELETE` of one item, and its `id` path parameter.
fn item_operations(doc: &mut OpenApi, names: &Names) {
    let noun = names.noun;
    parts::path_parameters(
        doc,
        names.item,
        vec![parts::path_parameter(
            "id",
            &format!("A {noun} id."),
            parts::int64(1, i64::MAX),
        )],
    );
    let no_such = || parts::error(&format!("No such {noun}."));
    let item = |description: &str| {
        parts::json(description, parts::schema_ref(names.schema)).header("ETag", etag(names))
    };

    let get = owned(&names.id("get", noun), &format!("One {noun}"))
        .parameter(parts::header_parameter(
            "If-None-Match",
            false,
            "304 when it names the current version.",
            parts::entity_tags(),
        ))
        .response("200", item(&format!("The {noun}.")))
        .response(
            "400",
            parts::error("`If-None-Match` (or `If-Match`) is not `*` or a list of entity tags."),
        )
        .response(
            "304",
            ResponseBuilder::new()
                .description("Not modified: `If-None-Match` names the current version.")
                .header("ETag", etag(names)),
        )
        .response("404", no_such());
    parts::add(doc, names.item, Method::Get, get);

    let patch = owned(
        &names.id("patch", noun),
        &format!("Change a {noun} (JSON merge patch)"),
    )
    .parameter(parts::header_parameter(
        "If-Match",
        true,
        "The ETag of the version the change was made to: a stale one is 412, so no update is \
         lost.",
        parts::entity_tags(),
    ))
    .request_body(Some(parts::body(
        &["application/merge-patch+json", "application/json"],
        parts::schema_ref(&names.patch_schema()),
    )))
    .response("200", item(&format!("The changed {noun}.")))
    .response(
        "400",
        parts::error(
            "Malformed JSON, not an object, or an `If-Match` that is not `*` or a list of \
             entity tags.",
        ),
    )
    .response("404", no_such())
    .response(
        "412",
        parts::error(&format!(
            "`If-Match` does not name the current version: someone changed the {noun}; GET \
             it again."
        )),
    )
    .response(
        "413",
        parts::error("The body is larger than the service accepts."),
    )
    .response("415", parts::error("The body is not a JSON merge patch."))
    .response(
        "422",
        parts::error("Fields that break the rules, each named in `fields`."),
    )
    .response("428", parts::error("No `If-Match`."));
    parts::add(doc, names.item, Method::Patch, patch);

    let delete = owned(&names.id("delete", noun), &format!("Delete a {noun}"))
        .parameter(parts::header_parameter(
            "If-Match",
            false,
            &format!(
                "Delete only if the {noun} is still at this version (`\"v<version>\"` or `*`); \
                 412 otherwise."
            ),
            parts::entity_tags(),
        ))
        .response("204", parts::empty("Deleted."))
        .response(
            "400",
            parts::error("`If-Match` is not `*` or a list of entity tags."),
        )
        .response("404", no_such())
        .response(
            "412",
            parts::error("`If-Match` does not name the current version."),
        );
    parts::add(doc, names.item, Method::Delete, delete);
}

/// `GET` of the change feed: server-sent events, resumable with `Last-Event-ID`.
fn feed(doc: &mut OpenApi, names: &Names) {
    let noun = names.noun;
    let operation = owned(
        &format!("{noun}Events"),
        &format!("{} changes as server-sent events", capitalized(noun)),
    )
    .description(Some(format!(
        "A stream that does not end: `event: {noun}` frames whose `id:` increases in commit \
         order and whose `data:` is a {}Event, comments as heartbeats. Reconnecting with \
         `Last-Event-ID` first replays every later event, with no gap and no duplicate.",
        names.schema
    )))
    .parameter(parts::query(
        noun,
        &format!("Only this {noun}'s events."),
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
    ))
    .parameter(parts::header_parameter(
        "Last-Event-ID",
        false,
        "Resume after this event id.",
        parts::string_matching("^[0-9]+$"),
    ))
    .security(parts::scheme("sessionCookie"))
    .response("200", parts::text("The event stream.", "text/event-stream"))
    .response(
        "400",
        parts::error(&format!("A bad `{noun}` or `Last-Event-ID`.")),
    );
    parts::add(doc, names.events, Method::Get, operation);
}
