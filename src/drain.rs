//! Draining a replica behind a proxy without failing a request.
//!
//! On SIGTERM the service first *drains* for `DRAIN_DELAY_MS` (when set): `/readyz`
//! answers 503 `draining`, event streams end (clients reconnect elsewhere with
//! `Last-Event-ID`), every response carries `Connection: close`, and `GET`/`HEAD`
//! requests are answered 503 `draining` at once — which a proxy retries on another replica
//! (nginx: `proxy_next_upstream ... http_503`) and counts as a failure of this one, so it
//! stops choosing it. Writes are still served. Only then does the server stop accepting
//! and close the connections left idle.
//!
//! Why: a proxy writes a request on a connection at any moment — an idle keep-alive one,
//! or a new one still in the listen backlog. A server that closes either races with that,
//! and the proxy cannot safely retry a POST it has already sent (nginx answers 502). By the
//! end of the delay the proxy has stopped choosing this replica, and with its upstream
//! `keepalive_timeout` shorter than the delay, every connection still open has carried a
//! `Connection: close` response or been closed by the proxy itself; none is left to race.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::response::Response;
use http::{HeaderValue, Method, Request, StatusCode, header};
use tower::util::MapResponseLayer;

use crate::http::admit::AdmitLayer;

/// While draining, `GET`/`HEAD` (safe to retry elsewhere; not `/healthz`) get 503
/// `draining` at once ([`crate::http::admit::AdmitLayer`]'s check); everything else is
/// served.
pub(crate) fn refuse_reads<B>(draining: &AtomicBool, request: &Request<B>) -> Option<Response> {
    // Liveness stays true while draining: the process is up, only leaving.
    let refusable = matches!(*request.method(), Method::GET | Method::HEAD)
        && request.uri().path() != "/healthz";
    if !refusable || !draining.load(Ordering::Relaxed) {
        return None;
    }
    let mut response = crate::error::error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "draining",
        "this replica is shutting down; retry",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
    Some(response)
}

/// `Connection: close` on every response once draining began.
pub(crate) fn connection_close(draining: &AtomicBool, mut response: Response) -> Response {
    if draining.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// [`refuse_reads`] as a layer: while draining, the refusal answers before routing.
pub(crate) fn refusal(
    draining: &Arc<AtomicBool>,
) -> AdmitLayer<impl Fn(&Request<axum::body::Body>) -> Option<Response> + Clone + use<>> {
    let draining = draining.clone();
    AdmitLayer::new(move |request: &Request<axum::body::Body>| refuse_reads(&draining, request))
}

/// [`connection_close`] as a layer, on whatever answers (the refusal included).
pub(crate) fn closing(
    draining: &Arc<AtomicBool>,
) -> MapResponseLayer<impl Fn(Response) -> Response + Clone + use<>> {
    let draining = draining.clone();
    MapResponseLayer::new(move |response| connection_close(&draining, response))
}
