//! A resource's part of the API document (`GET /openapi.json`), generated for any
//! [`Resource`]: each route of [`routes`](super::routes) carries one of these
//! ([`Route::documented`](crate::routes::Route::documented)), so a new resource is
//! documented with no hand-written JSON.
//!
//! The operations are `list{Plural}`, `create{Noun}`, `get{Noun}`, `patch{Noun}`,
//! `delete{Noun}` and `{noun}Events` (`listNotes`, `createNote`, …, `noteEvents`); the
//! schemas `{Noun}` (an item: its fields with `id`, `created_at`, `updated_at`, `version`),
//! `New{Noun}` and `{Noun}Patch` (what clients send: [`Resource::document_input`]),
//! `{Noun}Page` and `{Noun}Event`. What is the resource's own comes from it: its fields'
//! schema (`#[derive(utoipa::ToSchema)]`, their doc comments as descriptions), its list
//! filters ([`Resource::document_filters`]).
//!
//! ```
//! use pgbridge::apps::notes::Notes;
//!
//! let mut doc = pgbridge::api_doc::base();
//! pgbridge::resource::document::collection::<Notes>(&mut doc);
//! let list = doc.paths.get_path_operation("/notes", utoipa::openapi::HttpMethod::Get);
//! assert_eq!(list.unwrap().operation_id.as_deref(), Some("listNotes"));
//! ```

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::OperationBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, SchemaType,
    Type,
};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::{DEFAULT_LIMIT, MAX_LIMIT, Resource};
use crate::api_doc::parts::{self, Method};

/// What `R`'s operations and schemas are called.
struct Names {
    /// `Note`: the item's schema, and the stem of the others.
    schema: String,
}

impl Names {
    fn of<R: Resource>() -> Self {
        Self {
            schema: pascal(R::SPEC.noun),
        }
    }
    fn new_schema(&self) -> String {
        format!("New{}", self.schema)
    }
    fn patch_schema(&self) -> String {
        format!("{}Patch", self.schema)
    }
    fn page_schema(&self) -> String {
        format!("{}Page", self.schema)
    }
    fn event_schema(&self) -> String {
        format!("{}Event", self.schema)
    }
}

/// `getNote`, `listNotes`: a verb and a snake_case noun, camel case.
fn id(verb: &str, noun: &str) -> String {
    format!("{verb}{}", pascal(noun))
}

/// `GET /{name}` and `POST /{name}`.
pub fn collection<R: Resource>(doc: &mut OpenApi) {
    schemas::<R>(doc);
    list::<R>(doc);
    create::<R>(doc);
}

/// `GET`, `PATCH` and `DELETE /{name}/{id}`.
pub fn item<R: Resource>(doc: &mut OpenApi) {
    schemas::<R>(doc);
    item_operations::<R>(doc);
}

/// `GET /{name}/events`.
pub fn events<R: Resource>(doc: &mut OpenApi) {
    event_schema::<R>(doc);
    feed::<R>(doc);
}

/// `R`'s component schemas: the item, its page, and what clients send.
fn schemas<R: Resource>(doc: &mut OpenApi) {
    let names = Names::of::<R>();
    let mut nested = Vec::new();
    R::Fields::schemas(&mut nested);
    for (name, schema) in nested {
        parts::add_schema(doc, &name, schema);
    }
    let mut item = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!("A {} as the API shows it.", R::SPEC.noun)))
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1))
                .description(Some("Assigned by Postgres.")),
        );
    let mut required = vec!["id".to_owned()];
    if let Some(fields) = object(R::Fields::schema()) {
        for (name, schema) in fields.properties {
            item = item.property(name, schema);
        }
        required.extend(fields.required);
    }
    let timestamp = |what: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(format!("{what}, RFC 3339, UTC.")))
    };
    item = item
        .property("created_at", timestamp("When it was created"))
        .property("updated_at", timestamp("When it last changed"))
        .property(
            "version",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(1))
                .description(Some("Bumped by every change; the ETag.")),
        );
    required.extend(["created_at", "updated_at", "version"].map(str::to_owned));
    for name in required {
        item = item.required(name);
    }
    parts::add_schema(doc, &names.schema, item);
    page_schema::<R>(doc, &names);
    R::document_input(doc, &names.new_schema(), &names.patch_schema());
}

/// The object schema of `schema`, if it is one (not a reference, not a composition).
fn object(schema: RefOr<Schema>) -> Option<Object> {
    match schema {
        RefOr::T(Schema::Object(object)) => Some(object),
        _ => None,
    }
}

/// The default [`Resource::document_input`]: `new` is the fields' schema as they derive it
/// (a field that is not an `Option` is required), `patch` the same with nothing required;
/// no other field may be sent.
pub fn input_schemas<R: Resource>(doc: &mut OpenApi, new: &str, patch: &str) {
    let Some(mut fields) = object(R::Fields::schema()) else {
        parts::add_schema(doc, new, R::Fields::schema());
        parts::add_schema(doc, patch, R::Fields::schema());
        return;
    };
    fields.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    parts::add_schema(doc, new, fields.clone());
    fields.required.clear();
    fields.description = Some(format!(
        "A JSON merge patch (RFC 7396): the fields given replace the {}'s.",
        R::SPEC.noun
    ));
    parts::add_schema(doc, patch, fields);
}

/// `{Noun}Page`: a page of items and the cursor of the next.
fn page_schema<R: Resource>(doc: &mut OpenApi, names: &Names) {
    let plural = R::SPEC.name;
    let next = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "Pass back as `cursor` for the next page; null on the last.",
        ));
    let page = ObjectBuilder::new()
        .schema_type(Type::Object)
        .required(plural)
        .required("next_cursor")
        .property(plural, parts::array_of(parts::schema_ref(&names.schema)))
        .property("next_cursor", next);
    parts::add_schema(doc, &names.page_schema(), page);
}

/// `{Noun}Event`: one change, as the feed's `data:` carries it.
fn event_schema<R: Resource>(doc: &mut OpenApi) {
    let noun = R::SPEC.noun;
    let int64 = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some(description))
    };
    let event = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "One change to a {noun}, as stored in `{noun}_events` and sent to clients."
        )))
        .property("id", int64("Increasing in commit order: the SSE `id:`."))
        .property(
            format!("{noun}_id"),
            int64(&format!("The {noun} that changed.")),
        )
        .property(
            "kind",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^(created|updated|deleted)$"))
                .description(Some("`created`, `updated` or `deleted`.")),
        )
        .property(
            "version",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .description(Some(format!(
                    "The {noun}'s version after the change (before it, for `deleted`)."
                ))),
        )
        .property(
            "at",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some("When, RFC 3339 UTC.")),
        );
    let event = ["id", &format!("{noun}_id"), "kind", "version", "at"]
        .into_iter()
        .fold(event, |event, name| event.required(name));
    parts::add_schema(doc, &Names::of::<R>().event_schema(), event);
}

/// The `ETag` of one item.
fn etag(noun: &str) -> utoipa::openapi::Header {
    parts::header(&format!(
        "The {noun}'s version as a strong entity tag, `\"v<version>\"`."
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
fn list<R: Resource>(doc: &mut OpenApi) {
    let names = Names::of::<R>();
    let plural = R::SPEC.name;
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
    parameters.extend(R::document_filters());
    let operation = owned(
        &id("list", plural),
        &format!("A page of {plural}, newest first"),
    )
    .parameters(Some(parameters))
    .response(
        "200",
        parts::json(
            &format!("A page of {plural}."),
            parts::schema_ref(&names.page_schema()),
        ),
    )
    .response("400", parts::error("A bad `limit` or `cursor`."));
    parts::add(doc, R::SPEC.path, Method::Get, operation);
}

/// `POST` to the collection, with `Idempotency-Key`.
fn create<R: Resource>(doc: &mut OpenApi) {
    let names = Names::of::<R>();
    let noun = R::SPEC.noun;
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
        parts::schema_ref(&names.schema),
    )
    .header("Location", parts::header(&format!("The new {noun}'s URL.")))
    .header("ETag", etag(noun))
    .link(id("Get", noun), link(id("get", noun), false))
    .link(id("Patch", noun), link(id("patch", noun), true))
    .link(id("Delete", noun), link(id("delete", noun), false));
    let operation = owned(&id("create", noun), &format!("Create a {noun}"))
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
    parts::add(doc, R::SPEC.path, Method::Post, operation);
}

/// `GET`, `PATCH` and `DELETE` of one item, and its `id` path parameter.
fn item_operations<R: Resource>(doc: &mut OpenApi) {
    let names = Names::of::<R>();
    let noun = R::SPEC.noun;
    let path = R::SPEC.item_path;
    parts::path_parameters(
        doc,
        path,
        vec![parts::path_parameter(
            "id",
            &format!("A {noun} id."),
            parts::int64(1, i64::MAX),
        )],
    );
    let no_such = || parts::error(&format!("No such {noun}."));
    let item = |description: &str| {
        parts::json(description, parts::schema_ref(&names.schema)).header("ETag", etag(noun))
    };

    let get = owned(&id("get", noun), &format!("One {noun}"))
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
                .header("ETag", etag(noun)),
        )
        .response("404", no_such());
    parts::add(doc, path, Method::Get, get);

    let patch = owned(
        &id("patch", noun),
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
    parts::add(doc, path, Method::Patch, patch);

    let delete = owned(&id("delete", noun), &format!("Delete a {noun}"))
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
    parts::add(doc, path, Method::Delete, delete);
}

/// `GET` of the change feed: server-sent events, resumable with `Last-Event-ID`.
fn feed<R: Resource>(doc: &mut OpenApi) {
    let names = Names::of::<R>();
    let noun = R::SPEC.noun;
    let camel = {
        let pascal = pascal(noun);
        let mut chars = pascal.chars();
        chars
            .next()
            .map(|first| first.to_ascii_lowercase().to_string() + chars.as_str())
            .unwrap_or_default()
    };
    let operation = owned(
        &format!("{camel}Events"),
        &format!("{} changes as server-sent events", names.schema),
    )
    .description(Some(format!(
        "A stream that does not end: `event: {noun}` frames whose `id:` increases in commit \
         order and whose `data:` is a {}, comments as heartbeats. Reconnecting with \
         `Last-Event-ID` first replays every later event, with no gap and no duplicate.",
        names.event_schema()
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
    parts::add(doc, R::SPEC.events_path, Method::Get, operation);
}

/// `order_line` → `OrderLine`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_camel_and_pascal_case() {
        assert_eq!(super::pascal("order_line"), "OrderLine");
        assert_eq!(super::id("list", "order_lines"), "listOrderLines");
        assert_eq!(super::id("get", "note"), "getNote");
    }
}
