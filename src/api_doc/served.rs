//! The document as served: utoipa's JSON, in the order it was written (paths in table
//! order, properties as declared), with two things utoipa 5 cannot write itself:
//!
//! - a response header the document names is always sent with that response, so each gets
//!   `"required": true` (utoipa's `Header` has no such field);
//! - a response link's fields are spelled as OpenAPI spells them (`operationId`; utoipa's
//!   `Link` writes `operation_id`).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::OpenApi;

/// A JSON value whose objects keep their order (`serde_json::Value` sorts them).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Node {
    Object(IndexMap<String, Node>),
    Array(Vec<Node>),
    Scalar(Value),
}

impl Node {
    fn object(&mut self) -> Option<&mut IndexMap<String, Node>> {
        match self {
            Node::Object(map) => Some(map),
            _ => None,
        }
    }

    fn get(&mut self, key: &str) -> Option<&mut IndexMap<String, Node>> {
        self.object()?.get_mut(key)?.object()
    }
}

/// The document's JSON text, as `GET /openapi.json` serves it (pretty-printed).
///
/// ```
/// let text = pgbridge::api_doc::text(&pgbridge::api_doc::base());
/// assert!(text.starts_with("{\n  \"openapi\": \"3.1.0\""));
/// ```
pub fn text(doc: &OpenApi) -> String {
    // Every part of the document is a string, number, list or map: neither step can fail.
    let parsed = serde_json::to_string(doc).and_then(|text| serde_json::from_str(&text));
    let mut root = match parsed {
        Ok(root) => root,
        Err(err) => {
            tracing::error!(%err, "the API document does not serialize");
            Node::Scalar(Value::Null)
        }
    };
    finish(&mut root);
    serde_json::to_string_pretty(&root).unwrap_or_default()
}

/// The document as a JSON value (what [`text`] serves, parsed).
///
/// ```
/// let json = pgbridge::api_doc::json(&pgbridge::api_doc::base());
/// let unauthorized = &json["components"]["responses"]["Unauthorized"];
/// assert_eq!(unauthorized["headers"]["WWW-Authenticate"]["required"], true);
/// ```
pub fn json(doc: &OpenApi) -> Value {
    serde_json::from_str(&text(doc)).unwrap_or(Value::Null)
}

/// Both fixes, on every response: the operations' and the shared ones.
fn finish(root: &mut Node) {
    if let Some(paths) = root.get("paths") {
        for item in paths.values_mut().filter_map(Node::object) {
            for operation in item.values_mut() {
                if let Some(responses) = operation.get("responses") {
                    responses.values_mut().for_each(fix_response);
                }
            }
        }
    }
    if let Some(shared) = root
        .get("components")
        .and_then(|components| components.get_mut("responses"))
        .and_then(Node::object)
    {
        shared.values_mut().for_each(fix_response);
    }
}

/// Marks every header of one response required, and spells its links' fields.
fn fix_response(response: &mut Node) {
    if let Some(headers) = response.get("headers") {
        for header in headers.values_mut().filter_map(Node::object) {
            header.insert("required".into(), Node::Scalar(Value::Bool(true)));
        }
    }
    if let Some(links) = response.get("links") {
        for link in links.values_mut().filter_map(Node::object) {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(index) = link.get_index_of(snake)
                    && let Some((_, value)) = link.shift_remove_index(index)
                {
                    link.shift_insert(index, camel.into(), value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_keep_their_order() {
        let text = text(&crate::routes::document(&crate::routes()));
        let at = |needle: &str| text.find(needle).unwrap_or(usize::MAX);
        // The table's order, not the alphabet's.
        assert!(at("\"/healthz\"") < at("\"/accounts\""));
        assert!(at("\"operationId\": \"getNote\"") < at("\"operation_id\""));
        assert_eq!(at("\"operation_id\""), usize::MAX);
    }
}
