//! A resource's part of the API document (`GET /openapi.json`), generated from its
//! [`Resource`] implementation: each route of [`routes`](super::routes) carries one of these
//! ([`Route::documented`](crate::routes::Route::documented)), so a new resource is
//! documented with no hand-written JSON.
//!
//! The schemas are named from the noun: `{Noun}Fields` (what a client writes, from the
//! fields' [`utoipa::ToSchema`]), `{Noun}` (an item: those fields with `id`, `created_at`,
//! `updated_at`, `version`), `{Noun}Patch` (a merge patch: any of the fields) and
//! `{Noun}Page`; errors are the one JSON error shape, `Error`.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    AllOfBuilder, ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Content, KnownFormat, OpenApi, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use super::Resource;

/// Documents `GET` and `POST /{name}`, and the schemas they name.
///
/// ```
/// use pgbridge::apps::notes::Notes;
///
/// let mut doc = utoipa::openapi::OpenApi::default();
/// pgbridge::resource::document::collection::<Notes>(&mut doc);
/// let json = serde_json::to_value(&doc).unwrap();
/// assert!(json["paths"]["/notes"]["post"]["responses"]["201"].is_object());
/// assert!(json["components"]["schemas"]["NotePage"].is_object());
/// ```
pub fn collection<R: Resource>(doc: &mut OpenApi) {
    schemas::<R>(doc);
    let spec = R::SPEC;
    let noun = pascal(spec.noun);
    let list = operation::<R>("list", &format!("A page of {}, newest first", spec.name))
        .parameter(query(
            "limit",
            "Page size, 1 to 200 (default 50)",
            Type::Integer,
        ))
        .parameter(query(
            "cursor",
            "The previous page's next_cursor",
            Type::String,
        ))
        .parameter(header(
            "If-None-Match",
            "A page's ETag: 304 if unchanged",
            false,
        ))
        .response(
            "200",
            json(&format!("{noun}Page"), "The page, with its ETag"),
        )
        .response("304", ResponseBuilder::new().description("Not modified"))
        .response("412", error("A precondition does not hold"));
    let create = operation::<R>("create", &format!("Creates a {}", spec.noun))
        .parameter(header(
            "Idempotency-Key",
            "A retry with the same key and body gets the first response",
            false,
        ))
        .request_body(Some(body(&format!("{noun}Fields"), "application/json")))
        .response("201", json(&noun, "Created; Location and ETag name it"))
        .response("415", error("Not JSON"))
        .response("422", error("Every bad field, named"));
    doc.paths
        .add_path_operation(spec.path, vec![HttpMethod::Get], list);
    doc.paths
        .add_path_operation(spec.path, vec![HttpMethod::Post], create);
}

/// Documents `GET`, `PATCH` and `DELETE /{name}/{id}`.
pub fn item<R: Resource>(doc: &mut OpenApi) {
    schemas::<R>(doc);
    let spec = R::SPEC;
    let noun = pascal(spec.noun);
    let id = || {
        ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .schema(Some(int64()))
    };
    let get = operation::<R>("get", &format!("One {}", spec.noun))
        .parameter(id())
        .parameter(header(
            "If-None-Match",
            "304 if it is still this ETag",
            false,
        ))
        .response(
            "200",
            json(&noun, "The item, with its ETag and Last-Modified"),
        )
        .response("304", ResponseBuilder::new().description("Not modified"))
        .response("404", error("No such item (or not yours)"));
    let patch = operation::<R>(
        "patch",
        &format!("Changes a {} (JSON merge patch)", spec.noun),
    )
    .parameter(id())
    .parameter(header(
        "If-Match",
        "The ETag the change was made against",
        true,
    ))
    .request_body(Some(body(
        &format!("{noun}Patch"),
        "application/merge-patch+json",
    )))
    .response("200", json(&noun, "The changed item"))
    .response("404", error("No such item (or not yours)"))
    .response("412", error("The item changed since that ETag"))
    .response("422", error("Every bad field, named"))
    .response("428", error("If-Match is required"));
    let delete = operation::<R>("delete", &format!("Deletes a {}", spec.noun))
        .parameter(id())
        .parameter(header("If-Match", "Only if it is still this ETag", false))
        .response("204", ResponseBuilder::new().description("Deleted"))
        .response("404", error("No such item (or not yours)"))
        .response("412", error("The item changed since that ETag"));
    doc.paths
        .add_path_operation(spec.item_path, vec![HttpMethod::Get], get);
    doc.paths
        .add_path_operation(spec.item_path, vec![HttpMethod::Patch], patch);
    doc.paths
        .add_path_operation(spec.item_path, vec![HttpMethod::Delete], delete);
}

/// Documents `GET /{name}/events`.
pub fn events<R: Resource>(doc: &mut OpenApi) {
    schemas::<R>(doc);
    let spec = R::SPEC;
    let stream = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "Server-sent events `event: {noun}` with data `{{\"id\", \"{noun}_id\", \"kind\", \
             \"version\", \"at\"}}`, and `event: reset` when Last-Event-ID is older than the \
             kept history",
            noun = spec.noun
        )));
    let events = operation::<R>("events", &format!("{} changes, live", spec.noun))
        .parameter(
            ParameterBuilder::new()
                .name(spec.noun)
                .parameter_in(ParameterIn::Query)
                .description(Some(format!("Only this {}'s events", spec.noun)))
                .schema(Some(int64())),
        )
        .parameter(header("Last-Event-ID", "Resume after this event", false))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The stream")
                .content("text/event-stream", Content::new(Some(stream))),
        )
        .response("404", error("No such item (or not yours)"))
        .response("503", error("Too many open streams; retry later"));
    doc.paths
        .add_path_operation(spec.events_path, vec![HttpMethod::Get], events);
}

/// Adds `R`'s schemas (and `Error`) unless the document has them.
fn schemas<R: Resource>(doc: &mut OpenApi) {
    let noun = pascal(R::SPEC.noun);
    let components = doc.components.get_or_insert_with(Default::default);
    if components.schemas.contains_key(&noun) {
        return;
    }
    let mut nested = Vec::new();
    R::Fields::schemas(&mut nested);
    components.schemas.extend(nested);
    let fields = R::Fields::schema();
    let patch = match &fields {
        RefOr::T(Schema::Object(object)) => {
            let mut object = object.clone();
            object.required.clear();
            RefOr::T(Schema::Object(object))
        }
        other => other.clone(),
    };
    let kit = ObjectBuilder::new()
        .property("id", int64())
        .property("created_at", date_time())
        .property("updated_at", date_time())
        .property("version", ObjectBuilder::new().schema_type(Type::Integer))
        .required("id")
        .required("created_at")
        .required("updated_at")
        .required("version");
    let item = AllOfBuilder::new()
        .item(Ref::from_schema_name(format!("{noun}Fields")))
        .item(kit);
    let page = ObjectBuilder::new()
        .property(
            R::SPEC.name,
            ArrayBuilder::new().items(Ref::from_schema_name(noun.clone())),
        )
        .property(
            "next_cursor",
            ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Null,
            ])),
        )
        .required(R::SPEC.name)
        .required("next_cursor");
    components.schemas.insert(format!("{noun}Fields"), fields);
    components.schemas.insert(format!("{noun}Patch"), patch);
    components.schemas.insert(noun.clone(), item.into());
    components
        .schemas
        .insert(format!("{noun}Page"), page.into());
    components
        .schemas
        .entry("Error".to_owned())
        .or_insert_with(|| error_schema().into());
}

/// An operation of `R`, tagged with its name and needing the bearer token.
fn operation<R: Resource>(verb: &str, summary: &str) -> OperationBuilder {
    OperationBuilder::new()
        .tag(R::SPEC.name)
        .operation_id(Some(format!("{verb}_{}", R::SPEC.noun)))
        .summary(Some(summary))
        .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
        .response("401", error("No token, or not a live session"))
}

fn query(name: &str, description: &str, kind: Type) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(kind)))
}

fn header(name: &str, description: &str, required: bool) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(String::schema()))
}

fn body(schema: &str, media: &str) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content(media, Content::new(Some(Ref::from_schema_name(schema))))
        .build()
}

fn json(schema: &str, description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name(schema))),
    )
}

fn error(description: &str) -> ResponseBuilder {
    json("Error", description)
}

/// `{"error": {"code", "message"}}`.
fn error_schema() -> ObjectBuilder {
    let inner = ObjectBuilder::new()
        .property("code", String::schema())
        .property("message", String::schema())
        .required("code")
        .required("message");
    ObjectBuilder::new()
        .property("error", inner)
        .required("error")
}

fn int64() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
}

fn date_time() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
}

/// `todo_item` → `TodoItem`.
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
    fn pascal_case() {
        assert_eq!(super::pascal("todo_item"), "TodoItem");
        assert_eq!(super::pascal("note"), "Note");
    }
}
