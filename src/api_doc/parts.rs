//! Shortcuts for writing a route's [`Document`](crate::routes::Document) with utoipa's
//! builders: the parts every operation of this service repeats (JSON answers, the `Error`
//! answers, parameters, the bearer requirement), so that a module's document says only what
//! is its own.
//!
//! ```
//! use pgbridge::api_doc::parts::{self, Method};
//! use utoipa::openapi::OpenApi;
//!
//! fn ping(doc: &mut OpenApi) {
//!     let operation = parts::operation("ping", "Answers pong")
//!         .response("200", parts::text("Pong.", "text/plain"))
//!         .response("503", parts::unavailable());
//!     parts::add(doc, "/ping", Method::Get, operation);
//! }
//!
//! let mut doc = pgbridge::api_doc::base();
//! ping(&mut doc);
//! assert!(doc.paths.get_path_operation("/ping", Method::Get).is_some());
//! ```

use utoipa::ToSchema;
use utoipa::openapi::path::{OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::{RequestBody, RequestBodyBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    ArrayBuilder, ArrayItems, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Content, HeaderBuilder, KnownFormat, OpenApi, Ref, RefOr, Required};

pub use utoipa::openapi::path::HttpMethod as Method;

/// The name of the schema of the one error shape (`{"error": {"code", "message"}}`).
pub const ERROR: &str = "Error";
/// The name of the shared 401 response (with `WWW-Authenticate`).
pub const UNAUTHORIZED: &str = "Unauthorized";

/// Adds `operation` on `method` of `path` (beside the path's other operations).
pub fn add(doc: &mut OpenApi, path: &str, method: Method, operation: OperationBuilder) {
    doc.paths
        .add_path_operation(path, vec![method], operation.build());
}

/// Sets the parameters every operation of `path` shares (a path parameter).
pub fn path_parameters(doc: &mut OpenApi, path: &str, parameters: Vec<Parameter>) {
    let item = doc.paths.paths.entry(path.to_owned()).or_default();
    item.parameters = Some(parameters);
}

/// Adds a component schema (replacing one of that name: documents may share schemas).
pub fn add_schema(doc: &mut OpenApi, name: &str, schema: impl Into<RefOr<Schema>>) {
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .insert(name.to_owned(), schema.into());
}

/// Adds `T`'s schema under its name, and the schemas it refers to.
pub fn add_schema_of<T: ToSchema>(doc: &mut OpenApi) {
    let mut schemas = Vec::new();
    T::schemas(&mut schemas);
    for (name, schema) in schemas {
        add_schema(doc, &name, schema);
    }
    add_schema(doc, &T::name(), T::schema());
}

/// A reference to the component schema `name`.
pub fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// A plain string.
pub fn string() -> Schema {
    ObjectBuilder::new().schema_type(Type::String).into()
}

/// A string matching `pattern`.
pub fn string_matching(pattern: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .into()
}

/// `If-Match` / `If-None-Match`: `*`, or a comma-separated list of entity tags (`"v3"`,
/// `W/"v3"`, RFC 9110 §8.8.3), as [`crate::http::conditional::TagList`] reads them; anything
/// else is a 400.
pub fn entity_tags() -> Schema {
    // etagc = %x21 / %x23-7E / obs-text; a non-ASCII character is obs-text once encoded.
    const TAG: &str = "(W/)?\"[^\\u0000-\\u0020\"\\u007f]*\"";
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(
            "^[\\t ]*\\*[\\t ]*$|^[\\t ,]*({TAG}([\\t ]*,[\\t ,]*{TAG})*)?[\\t ,]*$"
        )))
        .into()
}

/// An integer (`int64`) within `minimum..=maximum`.
pub fn int64(minimum: i64, maximum: i64) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .maximum(Some(maximum))
        .into()
}

/// A JSON object whose `property` is always `value` (`{"status": "ok"}`).
pub fn constant(property: &str, value: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .required(property)
        .property(
            property,
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([value])),
        )
        .into()
}

/// An array of `items`.
pub fn array_of(items: impl Into<RefOr<Schema>>) -> Schema {
    ArrayBuilder::new()
        .items(ArrayItems::RefOrSchema(Box::new(items.into())))
        .into()
}

/// An operation with its `operationId` and summary; add the rest with the builder.
pub fn operation(id: &str, summary: &str) -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(summary))
}

/// The security requirement of a bearer session token (`bearerAuth`).
pub fn bearer() -> SecurityRequirement {
    SecurityRequirement::new("bearerAuth", Vec::<String>::new())
}

/// A security requirement naming one scheme.
pub fn scheme(name: &str) -> SecurityRequirement {
    SecurityRequirement::new(name, Vec::<String>::new())
}

/// A parameter `name` in `place`, with its description and schema.
pub fn parameter(
    place: ParameterIn,
    name: &str,
    required: bool,
    description: &str,
    schema: impl Into<RefOr<Schema>>,
) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// An optional query parameter.
pub fn query(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> Parameter {
    parameter(ParameterIn::Query, name, false, description, schema)
}

/// A request header.
pub fn header_parameter(
    name: &str,
    required: bool,
    description: &str,
    schema: impl Into<RefOr<Schema>>,
) -> Parameter {
    parameter(ParameterIn::Header, name, required, description, schema)
}

/// A path parameter (always required).
pub fn path_parameter(
    name: &str,
    description: &str,
    schema: impl Into<RefOr<Schema>>,
) -> Parameter {
    parameter(ParameterIn::Path, name, true, description, schema)
}

/// A required request body, the same schema in each of `media_types`.
pub fn body(media_types: &[&str], schema: impl Into<RefOr<Schema>>) -> RequestBody {
    let schema = schema.into();
    media_types
        .iter()
        .fold(RequestBodyBuilder::new(), |builder, media| {
            builder.content(*media, Content::new(Some(schema.clone())))
        })
        .required(Some(Required::True))
        .build()
}

/// A response header (a string) with its description.
pub fn header(description: &str) -> utoipa::openapi::Header {
    header_of(description, string())
}

/// A response header of `schema`.
pub fn header_of(description: &str, schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(schema)
        .description(Some(description))
        .build()
}

/// A JSON answer of `schema`; add headers with the builder.
pub fn json(description: &str, schema: impl Into<RefOr<Schema>>) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(schema)))
}

/// A text answer in `media` (a string).
pub fn text(description: &str, media: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content(media, Content::new(Some(string())))
}

/// An answer with no body.
pub fn empty(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description)
}

/// An error answer: the one `Error` shape, saying when.
pub fn error(description: &str) -> Response {
    json(description, schema_ref(ERROR)).build()
}

/// 503: the database does not answer.
pub fn unavailable() -> Response {
    error("The database does not answer.")
}

/// 401: the shared [`UNAUTHORIZED`] response.
pub fn unauthorized() -> RefOr<Response> {
    RefOr::Ref(Ref::from_response_name(UNAUTHORIZED))
}

/// The `WWW-Authenticate` header of a 401.
pub fn www_authenticate() -> utoipa::openapi::Header {
    header(
        "`Bearer realm=\"pgbridge\"`, with `error=\"invalid_token\"` when a token was sent and refused.",
    )
}
