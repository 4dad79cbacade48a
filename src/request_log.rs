//! The request log line for requests that never got one: the client hung up before the
//! response head (tower-http's `TraceLayer` logs only responses it sees).

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Status logged for a request whose client went away first (nginx's 499).
pub(crate) const ABANDONED_STATUS: u16 = 499;

/// Middleware under the request span: if the request's future is dropped before it yields a
/// response, logs `finished processing request` with `status=499 abandoned=true` and the
/// latency, like the line `TraceLayer` writes for answered requests.
pub(crate) async fn log_abandoned(request: Request, next: Next) -> Response {
    let mut guard = Guard {
        started: Instant::now(),
        span: tracing::Span::current(),
        answered: false,
    };
    let response = next.run(request).await;
    guard.answered = true;
    response
}

struct Guard {
    started: Instant,
    span: tracing::Span,
    answered: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let latency = format!("{} ms", self.started.elapsed().as_millis());
        tracing::info!(
            parent: &self.span,
            %latency,
            status = ABANDONED_STATUS,
            abandoned = true,
            "finished processing request"
        );
    }
}
