//! `GET /healthz` and `GET /readyz`: native axum handlers beside the contract's apps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::db::{Db, Ready};
use crate::routes::Route;

/// The routes `/healthz` and `/readyz`.
pub fn routes() -> Vec<Route> {
    vec![
        Route::handler(
            &[http::Method::GET],
            "/healthz",
            "liveness: the process answers (no database)",
            healthz,
        ),
        Route::with(
            &[http::Method::GET],
            "/readyz",
            "readiness: Postgres answers within the ready timeout",
            |mount| {
                let state = mount.state();
                let readiness = Readiness {
                    db: state.db.clone(),
                    timeout: state.config.ready_timeout(),
                    draining: state.draining.clone(),
                };
                axum::routing::on(mount.methods(), readyz).with_state(readiness)
            },
        ),
    ]
}

/// What `/readyz` needs.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// The pool to ping.
    pub db: Db,
    /// How long the ping may take.
    pub timeout: Duration,
    /// Set when a graceful shutdown began.
    pub draining: Arc<AtomicBool>,
}

/// Liveness: the process is up and serving. Touches no database.
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: Postgres answers `SELECT 1` within the ready timeout. 503 (JSON error shape)
/// when it does not, so a load balancer stops sending traffic until it does.
///
/// A pool with every connection checked out is **busy, not down**: it answers 200 with
/// `"status": "busy"`. Every replica's pool fills under the same load spike, so reporting
/// that as unready would make a load balancer pull all replicas at once — turning load into
/// an outage. The alternative, a dedicated connection per probe, would cost a Postgres
/// backend fork per probe and add connections exactly when the server is most loaded.
/// A database that is really gone still shows: its connections fail and leave the pool,
/// so the next probe opens a new one and gets the connection error (503).
///
/// From the start of a graceful shutdown, 503 with code `draining`, so a load balancer
/// stops choosing this replica before it stops answering.
pub async fn readyz(State(ready): State<Readiness>) -> Response {
    if ready.draining.load(Ordering::Relaxed) {
        return crate::error::error_response(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "shutting down; use another replica",
        );
    }
    match ready.db.check_ready(ready.timeout).await {
        Ok(Ready::Answered) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Ok(Ready::Busy) => Json(serde_json::json!({ "status": "busy" })).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "not ready");
            crate::error::ApiError::Unavailable.into_response()
        }
    }
}
