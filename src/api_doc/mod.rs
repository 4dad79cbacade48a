//! The API document `GET /openapi.json` serves (OpenAPI 3.1), built from the code with
//! utoipa: a [base](base()) (the info, the security schemes, the `Error` schema and the
//! shared responses), then each route's [`Document`]s applied in the order of the route
//! table ([`crate::routes()`], see [`crate::routes::document`]). Each module documents its
//! own routes, next to them ([`Route::documented`]), with the schemas of its real types
//! (`#[derive(ToSchema)]`) and the shortcuts of [`parts`]; a route that is not documented is
//! found by `tests/api/openapi.rs`, which also checks that every documented operation is
//! served.
//!
//! ```
//! let doc = pgbridge::routes::document(&pgbridge::routes());
//! assert!(doc.paths.get_path_item("/notes/{id}").is_some());
//! let json = pgbridge::api_doc::json(&doc);
//! assert_eq!(json["openapi"], "3.1.0");
//! ```
//!
//! [`Route::documented`]: crate::routes::Route::documented

mod base;
pub mod parts;
mod served;

pub use base::base;
pub use served::{json, text};

use utoipa::openapi::OpenApi;

/// Adds a route's operations, and the component schemas they refer to, to the API document.
pub type Document = fn(&mut OpenApi);

/// The [`base`], then each of `docs` in turn.
///
/// ```
/// use pgbridge::api_doc::{self, parts};
/// use utoipa::openapi::OpenApi;
///
/// fn ping(doc: &mut OpenApi) {
///     let operation = parts::operation("ping", "Answers pong")
///         .response("200", parts::text("Pong.", "text/plain"));
///     parts::add(doc, "/ping", parts::Method::Get, operation);
/// }
///
/// let doc = api_doc::build([ping as api_doc::Document]);
/// assert!(doc.paths.get_path_item("/ping").is_some());
/// ```
pub fn build(docs: impl IntoIterator<Item = Document>) -> OpenApi {
    let mut doc = base();
    for add in docs {
        add(&mut doc);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn every_route_is_documented_with_its_own_path_and_methods() {
        let table = crate::routes();
        let doc = json(&crate::routes::document(&table));
        for route in &table {
            let item = &doc["paths"][route.path];
            assert!(item.is_object(), "{} is not documented", route.path);
            for method in &route.methods {
                let name = method.as_str().to_ascii_lowercase();
                assert!(
                    item[&name].is_object(),
                    "{method} {} undocumented",
                    route.path
                );
            }
        }
    }

    #[test]
    fn a_route_documents_its_own_path_only() {
        for route in crate::routes() {
            let doc = build(route.docs.iter().copied());
            let paths: Vec<&String> = doc.paths.paths.keys().collect();
            assert_eq!(
                paths,
                [route.path],
                "{} documents other paths",
                route.label()
            );
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = json(&crate::routes::document(&crate::routes()));
        let mut missing = Vec::new();
        references(&doc, &doc, &mut missing);
        assert!(missing.is_empty(), "dangling $ref: {missing:?}");
    }

    fn references(root: &Value, node: &Value, missing: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    let pointer = target.trim_start_matches('#');
                    if root.pointer(pointer).is_none() {
                        missing.push(target.clone());
                    }
                }
                map.values().for_each(|v| references(root, v, missing));
            }
            Value::Array(items) => items.iter().for_each(|v| references(root, v, missing)),
            _ => {}
        }
    }
}
