//! `GET /` — what this service is, and its routes; for a browser, the live notes page.
//!
//! Content negotiation on `Accept`: a client that prefers `text/html` to `application/json`
//! (a browser navigating) gets [`crate::apps::web::page`]; everyone else gets the JSON index.

use serde::Serialize;

use http::{Method, header};

use crate::apps::web;
use crate::error::ApiError;
use awsgi::{Body, Environ, Error, StartResponse};

/// One route of the service.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Route {
    /// Method and path.
    pub route: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// Every route [`crate::router`] serves.
pub const ROUTES: &[Route] = &[
    Route {
        route: "GET /",
        description: "this index (JSON); a browser gets the live notes page",
    },
    Route {
        route: "GET /healthz",
        description: "liveness: the process answers (no database)",
    },
    Route {
        route: "GET /readyz",
        description: "readiness: Postgres answers within the ready timeout",
    },
    Route {
        route: "GET /seed/postgres-async?delay=SECONDS",
        description: "waits inside Postgres (pg_sleep, 0-10 s) and returns the rows it read; the request suspends on the socket",
    },
    Route {
        route: "GET /seed/poll-sleep?seconds=N",
        description: "sleeps N seconds (0-30) through fdevent timeouts, streaming a line a second",
    },
    Route {
        route: "GET|POST /notes",
        description: "the template resource: list (newest first, keyset pages) and create; needs Authorization: Bearer",
    },
    Route {
        route: "GET|PATCH|DELETE /notes/{id}",
        description: "one note: read (ETag), change with If-Match (JSON merge patch), delete; needs Authorization: Bearer",
    },
    Route {
        route: "GET /notes/events",
        description: "note changes as server-sent events, resumable with Last-Event-ID; needs Authorization: Bearer or the session cookie",
    },
    Route {
        route: "POST /accounts",
        description: "sign up: {\"username\",\"password\"}",
    },
    Route {
        route: "GET /accounts/me",
        description: "the account the bearer token belongs to",
    },
    Route {
        route: "POST /sessions",
        description: "log in: a bearer token, and the cookie for /notes/events",
    },
    Route {
        route: "DELETE /sessions/current",
        description: "log out: the bearer token stops working at once",
    },
    Route {
        route: "GET /metrics",
        description: "counters in the Prometheus text format; needs Authorization: Bearer <METRICS_TOKEN> when that is set",
    },
    Route {
        route: "GET /openapi.json",
        description: "the OpenAPI 3.1 document of every route",
    },
    Route {
        route: "GET /docs",
        description: "that document for people (works offline)",
    },
    Route {
        route: "GET /assets/{name}",
        description: "the scripts and style sheet of the live page and /docs",
    },
];

/// The application.
pub async fn app(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    if !matches!(*environ.method(), Method::GET | Method::HEAD) {
        return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }.into());
    }
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
    let index = serde_json::json!({
        "service": "pgbridge",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "An asynchronous WSGI-shaped application server for Postgres web services: \
                        applications on a PEP 3333-style contract, served by a tower layer on axum, \
                        suspending on Postgres sockets instead of blocking threads.",
        "script_name": environ.script_name(),
        "routes": ROUTES,
    });
    start_response.start(
        "200 OK",
        [("Content-Type", "application/json"), ("Vary", "Accept")],
    )?;
    Ok(Body::from(serde_json::to_vec_pretty(&index)?))
}
