//! `GET /healthz` and `GET /readyz`: native axum handlers beside the contract's apps.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::db::Db;

/// What `/readyz` needs.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// The pool to ping.
    pub db: Db,
    /// How long the ping may take.
    pub timeout: Duration,
}

/// Liveness: the process is up and serving. Touches no database.
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: Postgres answers `SELECT 1` within the ready timeout. 503 (JSON error shape)
/// when it does not, so a load balancer stops sending traffic until it does.
pub async fn readyz(State(ready): State<Readiness>) -> Response {
    match ready.db.ping(ready.timeout).await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "not ready");
            crate::error::ApiError::Unavailable.into_response()
        }
    }
}
