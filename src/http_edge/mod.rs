//! The tower-http stack around every route: request ids, one log line per request, the
//! request timeout, the JSON error shape for errors that layers answer on their own, the
//! refusal of transfer codings the server does not decode, and the security/caching
//! headers every response carries.

use axum::extract::Request as AxumRequest;
use axum::response::Response;
use http::{HeaderName, HeaderValue, Request, StatusCode, header};
use std::convert::Infallible;

use tower::util::MapResponseLayer;
use tower::{Service, ServiceBuilder};
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{OnFailure, OnResponse, TraceLayer};

use crate::config::LogRequests;
use crate::error::error_response;
use crate::http::admit::AdmitLayer;
use crate::server::Stack;

mod observe;
mod request_id;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied `X-Request-Id` kept.
const MAX_REQUEST_ID_LEN: usize = 64;

/// Wraps `service` (the routes) in the service's layers, outermost first: `nosniff` and a default
/// `Cache-Control: no-store` on every response, the request id (an unsafe client one
/// dropped, set, then echoed: [`request_id`]), tracing, metrics, refusal of unknown transfer codings, JSON for
/// bare errors, timeout.
pub(crate) fn layers<S>(service: S, state: &AppState) -> Stack
where
    S: Service<AxumRequest, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
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
        .on_response(LogResponse {
            all: config.log_requests == LogRequests::All,
        })
        .on_failure(LogFailure);
    let stack = ServiceBuilder::new()
        // Responses that choose their own caching (the notes app's) keep it.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(request_id::RequestIdLayer)
        .layer(trace)
        .layer(observe::ObserveLayer::new(state.metrics.clone()))
        .layer(AdmitLayer::new(refuse_transfer_codings))
        .layer(MapResponseLayer::new(json_for_bare_errors))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout(),
        ))
        .service(service);
    // Served as it is (no `axum::Router` around it: that would match the path twice and
    // wrap every answer in a future of its own, ~2,500 instructions per request).
    Stack::new(stack)
}

/// The request's log line, `finished processing request` with its status and latency (the
/// span adds method, path and request id), as tower-http's `DefaultOnResponse` writes it
/// at INFO — for every request with `LOG_REQUESTS=all`, else only for 4xx and 5xx answers:
/// a line per successful request costs more CPU than a whole `/healthz` answer otherwise
/// does (formatting, and a write to stdout under its lock), and `/metrics` counts them.
#[derive(Debug, Clone, Copy)]
struct LogResponse {
    all: bool,
}

impl<B> OnResponse<B> for LogResponse {
    fn on_response(
        self,
        response: &http::Response<B>,
        latency: std::time::Duration,
        _span: &tracing::Span,
    ) {
        let status = response.status();
        if !self.all && !status.is_client_error() && !status.is_server_error() {
            return;
        }
        tracing::info!(
            target: "tower_http::trace::on_response",
            latency = %Millis(latency),
            status = status.as_u16(),
            "finished processing request"
        );
    }
}

/// tower-http's ERROR line for a failed request (`response failed`), but for a 503: the
/// service answers 503 only when it expects the condition to pass (the database
/// unavailable or failing over, a bulkhead full), logs the cause itself (the database's as
/// one rate-limited WARN, `unavailable_log.rs`), and the request's own line still shows
/// the status. An ERROR per request there would flood the log during every failover.
#[derive(Debug, Clone, Copy)]
struct LogFailure;

impl OnFailure<ServerErrorsFailureClass> for LogFailure {
    fn on_failure(
        &mut self,
        class: ServerErrorsFailureClass,
        latency: std::time::Duration,
        _span: &tracing::Span,
    ) {
        if let ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) = class {
            return;
        }
        tracing::error!(
            target: "tower_http::trace::on_failure",
            classification = %class,
            latency = %Millis(latency),
            "response failed"
        );
    }
}

/// A latency as `12 ms`, as tower-http writes it.
struct Millis(std::time::Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.0.as_millis())
    }
}

/// Whether a client-supplied request id may be logged and echoed as it is: short, and only
/// characters that cannot forge a log field or a header.
fn is_safe_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Removes `X-Request-Id` headers that are not [safe](is_safe_request_id) (or that come more
/// than once), so the next layer generates a fresh id.
fn drop_unsafe_request_id(mut request: AxumRequest) -> AxumRequest {
    let headers = request.headers();
    let mut ids = headers.get_all(&REQUEST_ID).iter();
    let keep = match (ids.next(), ids.next()) {
        (None, _) => return request,
        (Some(id), None) => is_safe_request_id(id.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        let len: usize = headers.get_all(&REQUEST_ID).iter().map(|v| v.len()).sum();
        tracing::debug!(
            supplied_len = len,
            "client X-Request-Id is not a short safe token; generating a fresh one"
        );
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// `Transfer-Encoding` other than `chunked` (e.g. `gzip, chunked`): hyper removes only the
/// chunked framing, so the body would reach applications still encoded. Answered 501
/// (RFC 9112 §6.1), in the JSON shape, before any application runs.
fn refuse_transfer_codings(request: &AxumRequest) -> Option<Response> {
    let unsupported = request
        .headers()
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(|coding| coding.trim_ascii())
        .any(|coding| !coding.eq_ignore_ascii_case(b"chunked"));
    if !unsupported {
        return None;
    }
    let mut response = error_response(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "transfer codings other than chunked are not supported",
    );
    // The body was not read: the connection cannot be reused.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}

/// Errors answered by axum or tower-http themselves (no route, wrong method, timeout) come
/// with an empty body; give them the one JSON shape, keeping their status and headers.
fn json_for_bare_errors(response: Response) -> Response {
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
    let mut json = error_response(status, code, message);
    for (name, value) in parts.headers.drain().filter_map(|(n, v)| Some((n?, v))) {
        json.headers_mut().entry(name).or_insert(value);
    }
    json
}

#[cfg(test)]
mod tests {
    use super::is_safe_request_id;

    #[test]
    fn request_ids_must_be_short_safe_tokens() {
        for ok in ["abc", "7f3c-11:ab.cd_EF", &"a".repeat(64)] {
            assert!(is_safe_request_id(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "has space",
            "x\" request_id=forged",
            "new\nline",
            &"a".repeat(65),
            "caf\u{e9}",
        ] {
            assert!(!is_safe_request_id(bad.as_bytes()), "{bad:?}");
        }
    }
}
