//! The service's own web pages and API document, embedded in the binary: nothing to build,
//! nothing fetched from elsewhere.
//!
//! - `GET /` with `Accept: text/html` (a browser): the live notes page ([`page`]); JSON
//!   clients keep the JSON index (see [`crate::apps::index`]).
//! - `GET /openapi.json`: the OpenAPI 3.1 document of every route ([`ApiDocument`], built
//!   from the route table by [`crate::api_doc`] when the router is).
//! - `GET /docs`: that document rendered for people, offline ([`docs`]).
//! - `GET /assets/{name}`: the pages' script and style sheet ([`asset`]).
//!
//! Every page carries a strict `Content-Security-Policy` (`default-src 'self'`), so its
//! script and style come from this service only, and never inline.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use sha2::{Digest, Sha256};
use utoipa::openapi::OpenApi;

use crate::api_doc::parts::{self, Method as Op};
use crate::error::ApiError;
use crate::http::conditional::{EntityTag, TagList};
use crate::routes::Route;

/// The routes `/openapi.json`, `/docs` and `/assets/{name}`.
pub fn routes() -> Vec<Route> {
    vec![
        Route::handler(
            &[Method::GET],
            "/openapi.json",
            "the OpenAPI 3.1 document of every route",
            openapi,
        )
        .documented(document_openapi),
        Route::handler(
            &[Method::GET],
            "/docs",
            "that document for people (works offline)",
            docs,
        )
        .documented(document_docs),
        Route::handler(
            &[Method::GET],
            "/assets/{name}",
            "the scripts and style sheet of the live page and /docs",
            asset,
        )
        .documented(document_assets),
    ]
}

fn document_openapi(doc: &mut OpenApi) {
    let object = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Object)
        .build();
    let operation = parts::operation("openapi", "This document (OpenAPI 3.1)")
        .response("200", parts::json("The document.", object));
    parts::add(doc, "/openapi.json", Op::Get, operation);
}

fn document_docs(doc: &mut OpenApi) {
    let operation = parts::operation("docs", "This document for people (works offline)").response(
        "200",
        parts::text(
            "An HTML page that renders `/openapi.json` with `/assets/docs.js`.",
            "text/html",
        ),
    );
    parts::add(doc, "/docs", Op::Get, operation);
}

fn document_assets(doc: &mut OpenApi) {
    let names: Vec<&str> = ASSETS.iter().map(|(name, _, _)| *name).collect();
    let listed: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    let name = parts::path_parameter(
        "name",
        &format!("One of {}.", listed.join(", ")),
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .enum_values(Some(names)),
    );
    let mut file = parts::empty("The file.");
    let mut seen: Vec<&str> = Vec::new();
    for (_, media, _) in ASSETS {
        let media = media.split(';').next().unwrap_or(media).trim();
        if !seen.contains(&media) {
            seen.push(media);
            file = file.content(media, utoipa::openapi::Content::new(Some(parts::string())));
        }
    }
    let operation = parts::operation("asset", "The pages' script and style sheet")
        .parameter(name)
        .response("200", file)
        .response("404", parts::error("No such asset."));
    parts::add(doc, "/assets/{name}", Op::Get, operation);
}

/// `/openapi.json` as served: the document's JSON text, built once with the router, and
/// its entity tag.
///
/// ```
/// use pgbridge::apps::web::ApiDocument;
///
/// let doc = ApiDocument::new(pgbridge::api_doc::text(&pgbridge::api_doc::base()));
/// assert!(doc.etag().starts_with('"'));
/// ```
#[derive(Debug, Clone)]
pub struct ApiDocument {
    body: Bytes,
    /// Shared, not a `String`: the router puts a clone of the document in every request's
    /// extensions, and that clone should not copy it.
    etag: std::sync::Arc<str>,
}

impl ApiDocument {
    /// The document's `text` ([`crate::api_doc::text`]) and its [`content_etag`].
    pub fn new(text: String) -> Self {
        Self {
            etag: content_etag(&text).into(),
            body: Bytes::from(text),
        }
    }

    /// The entity tag served with it.
    pub fn etag(&self) -> &str {
        &self.etag
    }
}

/// The policy every page is served under: this origin only, no inline script or style.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                       base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

const INDEX_HTML: &str = include_str!("index.html");
const DOCS_HTML: &str = include_str!("docs.html");

/// The embedded files under `/assets/`: name, media type, contents.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "live.js",
        "text/javascript; charset=utf-8",
        include_str!("live.js"),
    ),
    (
        "docs.js",
        "text/javascript; charset=utf-8",
        include_str!("docs.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("style.css"),
    ),
];

/// Whether a request's `Accept` header prefers HTML to JSON (a browser navigating to
/// the page). Compares the quality each media type gets, exact types over `type/*` over
/// `*/*`; a tie, or no `Accept` at all, means JSON.
///
/// ```
/// use pgbridge::apps::web::prefers_html;
///
/// assert!(prefers_html(Some("text/html,application/xhtml+xml,*/*;q=0.8")));
/// assert!(!prefers_html(Some("*/*")));
/// assert!(!prefers_html(Some("application/json")));
/// assert!(!prefers_html(None));
/// ```
pub fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    quality(accept, "text", "html") > quality(accept, "application", "json")
}

/// The quality `accept` gives `kind/sub`: the most specific matching range wins.
fn quality(accept: &str, kind: &str, sub: &str) -> f32 {
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        let (t, s) = media.split_once('/').unwrap_or((media.as_str(), ""));
        let specificity = match (t, s) {
            (t, s) if t == kind && s == sub => 3,
            (t, "*") if t == kind => 2,
            ("*", "*") => 1,
            _ => continue,
        };
        if best.is_none_or(|(spec, _)| specificity > spec) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

/// The live notes page's HTML.
pub fn page() -> &'static str {
    INDEX_HTML
}

/// Headers every page and asset gets: the CSP, no sniffing, and revalidation (the files
/// change only with the binary).
pub fn page_headers(content_type: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers
}

/// The strong entity tag of an embedded file: the first 128 bits of its SHA-256, so it
/// changes exactly when the file does (that is, with the binary).
///
/// ```
/// let tag = pgbridge::apps::web::content_etag("body { margin: 0 }");
/// assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 34);
/// ```
pub fn content_etag(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in &digest[..16] {
        tag.push_str(&format!("{byte:02x}"));
    }
    tag.push('"');
    tag
}

/// Whether the request's `If-None-Match` names `etag` (weak comparison, RFC 9110 §13.1.2):
/// the client's copy is current and a 304 will do. A malformed header is ignored here — an
/// embedded file is then simply sent.
pub fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    let current = EntityTag::parse(etag);
    matches!(
        TagList::from_headers(request, &header::IF_NONE_MATCH),
        Ok(Some(list)) if list.matches_weak(current.as_ref())
    )
}

/// An embedded file with its `ETag`, or 304 when the client already has it.
fn embedded(request: &HeaderMap, headers: HeaderMap, body: &'static str) -> Response {
    tagged(request, headers, &content_etag(body), body)
}

/// `body` with its `ETag`, or 304 when the client already has it.
fn tagged(
    request: &HeaderMap,
    mut headers: HeaderMap,
    etag: &str,
    body: impl IntoResponse,
) -> Response {
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    if not_modified(request, etag) {
        headers.remove(header::CONTENT_TYPE);
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, body).into_response()
}

/// `GET /openapi.json`: the [`ApiDocument`] the router was built with.
pub async fn openapi(request: axum::extract::Request) -> Response {
    let Some(document) = crate::request::provided::<ApiDocument>(request.extensions()).cloned()
    else {
        tracing::error!("no ApiDocument in the request: mount /openapi.json through crate::router");
        return ApiError::Internal.into_response();
    };
    let request = request.headers();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    tagged(request, headers, &document.etag, document.body)
}

/// `GET /docs`: the API document for people, rendered by `/assets/docs.js`.
pub async fn docs(request: HeaderMap) -> Response {
    embedded(
        &request,
        page_headers("text/html; charset=utf-8"),
        DOCS_HTML,
    )
}

/// `GET /assets/{name}`: one of the embedded files (304 if the client has it), or 404.
pub async fn asset(Path(name): Path<String>, request: HeaderMap) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, media, body)) => embedded(&request, page_headers(media), body),
        None => ApiError::not_found(format!("no asset named {name:?}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        // Chromium and Firefox navigating.
        assert!(prefers_html(Some(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
        )));
        assert!(prefers_html(Some("text/*")));
        assert!(!prefers_html(Some("application/json, text/html;q=0.5")));
        assert!(!prefers_html(Some("text/html;q=0.5, application/json")));
        assert!(!prefers_html(Some("text/html, application/json")));
        assert!(!prefers_html(Some("")));
        assert!(!prefers_html(Some("text/html;q=0")));
    }

    #[test]
    fn openapi_is_json_and_3_1() {
        let doc = crate::api_doc::json(&crate::routes::document(&crate::routes()));
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
        assert_eq!(
            doc["info"]["version"].as_str(),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn pages_fetch_nothing_from_elsewhere() {
        for text in [INDEX_HTML, DOCS_HTML]
            .into_iter()
            .chain(ASSETS.iter().map(|(_, _, body)| *body))
        {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("<script>"), "inline script breaks the CSP");
            assert!(!text.contains("style=\""), "inline style breaks the CSP");
        }
    }
}
