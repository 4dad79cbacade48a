//! `GET /` — what this service is, and its routes.

use serde::Serialize;

use crate::awsgi::{Body, Environ, Error, StartResponse};

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
        description: "this index",
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
];

/// The application.
pub async fn app(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let index = serde_json::json!({
        "service": "pgbridge",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "An asynchronous WSGI-shaped application server for Postgres web services: \
                        applications on a PEP 3333-style contract, served by a tower layer on axum, \
                        suspending on Postgres sockets instead of blocking threads.",
        "script_name": environ.script_name(),
        "routes": ROUTES,
    });
    start_response.start("200 OK", [("Content-Type", "application/json")])?;
    Ok(Body::from(serde_json::to_vec_pretty(&index)?))
}
