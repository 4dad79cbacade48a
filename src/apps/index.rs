//! `GET /` — what this service is, and its routes (the [`Listing`] of the route table,
//! [`crate::routes()`]); for a browser, the live notes page.
//!
//! Content negotiation on `Accept`: a client that prefers `text/html` to `application/json`
//! (a browser navigating) gets [`crate::apps::web::page`]; everyone else gets the JSON index.

use http::{Method, header};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::OpenApi;

use crate::api_doc::parts;
use crate::apps::web;
use crate::error::ApiError;
use crate::routes::{Entry, Listing, Route};
use awsgi::{Body, Environ, Error, StartResponse};

/// The route `/`.
pub fn routes() -> Vec<Route> {
    vec![
        Route::app(
            &[Method::GET],
            "/",
            "this index (JSON); a browser gets the live notes page",
            app,
        )
        .documented(document),
    ]
}

/// The JSON index: what this service is, and its routes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Index<'a> {
    /// The service's name.
    pub service: &'static str,
    /// Its version.
    pub version: &'static str,
    /// What it is.
    pub description: &'static str,
    /// The path it is mounted under (PEP 3333's `SCRIPT_NAME`), empty at the root.
    pub script_name: &'a str,
    /// Every route, in table order.
    #[schema(inline)]
    pub routes: &'a [Entry],
}

fn document(doc: &mut OpenApi) {
    parts::add_schema_of::<Index<'_>>(doc);
    let answer = parts::json(
        "The JSON index, or the live page for browsers.",
        parts::schema_ref("Index"),
    )
    .content(
        "text/html",
        utoipa::openapi::Content::new(Some(parts::string())),
    );
    let operation = parts::operation("index", "What this service is, and its routes")
        .description(Some(
            "JSON for API clients. A browser (an `Accept` that prefers `text/html` to \
             `application/json`) gets the live notes page instead: it lists notes, creates and \
             edits them with `If-Match`, and follows `/notes/events`.",
        ))
        .response("200", answer);
    parts::add(doc, "/", parts::Method::Get, operation);
}

/// The application.
pub async fn app(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let accept = environ
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if web::prefers_html(accept) {
        let headers = web::page_headers("text/html; charset=utf-8");
        let etag = web::content_etag(web::page());
        let mut pairs: Vec<(&str, &str)> = headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect();
        pairs.push(("Vary", "Accept"));
        pairs.push(("ETag", &etag));
        if web::not_modified(environ.headers(), &etag) {
            pairs.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
            start_response.start("304 Not Modified", pairs)?;
            return Ok(Body::empty());
        }
        start_response.start("200 OK", pairs)?;
        return Ok(Body::from(web::page()));
    }
    let listing = crate::request::provided::<Listing>(environ.extensions())
        .cloned()
        .ok_or_else(|| {
            tracing::error!(
                "no route Listing in the environ: mount the index through crate::router"
            );
            ApiError::Internal
        })?;
    let index = Index {
        service: "pgbridge",
        version: env!("CARGO_PKG_VERSION"),
        description: "An asynchronous WSGI-shaped application server for Postgres web services: \
                      applications on a PEP 3333-style contract, served by a tower layer on axum, \
                      suspending on Postgres sockets instead of blocking threads.",
        script_name: environ.script_name(),
        routes: &listing.0,
    };
    start_response.start(
        "200 OK",
        [("Content-Type", "application/json"), ("Vary", "Accept")],
    )?;
    Ok(Body::from(serde_json::to_vec_pretty(&index)?))
}
