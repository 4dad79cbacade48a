//! The tower-http stack around every route: request ids, one log line per request, the
//! request timeout, and the JSON error shape for errors that layers answer on their own.

use axum::Router;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, Request, StatusCode, header};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the service's layers, outermost first: request id (set, then echoed),
/// tracing, metrics, JSON for bare errors, timeout.
pub(crate) fn layers(router: Router, state: &AppState) -> Router {
    let config = &state.config;
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!(
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %id,
            )
        })
        .on_request(())
        .on_response(
            DefaultOnResponse::new()
                .level(Level::INFO)
                .latency_unit(tower_http::LatencyUnit::Millis),
        );
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout(),
        ))
        .layer(axum::middleware::map_response(json_for_bare_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .layer(axum::middleware::from_fn(crate::request_log::log_abandoned))
        .layer(trace)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Errors answered by axum or tower-http themselves (no route, wrong method, timeout) come
/// with an empty body; give them the one JSON shape, keeping their status and headers.
async fn json_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no route for this path"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "this path does not allow that method")
        }
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "the request took longer than the server allows",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        _ if status.is_client_error() => ("bad_request", "the request was refused"),
        _ => ("internal", "internal server error"),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = axum::Json(serde_json::json!({ "error": { "code": code, "message": message } }));
    let mut json = body.into_response();
    *json.status_mut() = status;
    for (name, value) in parts.headers.drain().filter_map(|(n, v)| Some((n?, v))) {
        json.headers_mut().entry(name).or_insert(value);
    }
    json
}
