//! `/metrics` behind `METRICS_TOKEN`: an axum middleware for the one native route that
//! exposes the service's internals.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Lets a request through only with `Authorization: Bearer <token>` when a token is
/// configured; with none (`None`), lets every request through.
///
/// ```no_run
/// use std::sync::Arc;
/// use axum::{Router, routing::get, middleware::from_fn_with_state};
///
/// let token: Option<Arc<str>> = Some(Arc::from("s3cret"));
/// let app: Router = Router::new()
///     .route("/metrics", get(|| async { "up 1\n" }))
///     .route_layer(from_fn_with_state(token, pgbridge::auth::require_metrics_token));
/// ```
pub async fn require_metrics_token(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| super::bearer(v));
    // Compare digests: equal lengths, and the time taken says nothing about the token.
    let ok = presented
        .is_some_and(|p| Sha256::digest(p.as_bytes()) == Sha256::digest(expected.as_bytes()));
    if ok {
        next.run(request).await
    } else {
        ApiError::Unauthorized {
            message: "/metrics needs Authorization: Bearer with the METRICS_TOKEN".into(),
            invalid_token: presented.is_some(),
        }
        .into_response()
    }
}
