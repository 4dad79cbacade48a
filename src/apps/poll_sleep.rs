//! `GET /seed/poll-sleep?seconds=N` — the port of the seed's `nginx-poll-sleep`.
//!
//! The original showed that a request could sleep inside nginx without blocking its worker:
//! ask `x-wsgiorg.fdevent` for a timeout with no descriptor, yield, resume. This port
//! streams a line a second, each after a [`fdevent::timeout`] wait, so the client watches the
//! request being suspended and resumed; thousands can sleep at once on two threads.

use std::time::{Duration, Instant};

use futures_util::stream;

use awsgi::fdevent::{self, Readiness};
use awsgi::{Body, Environ, Error, StartResponse};

use super::bounded_query;

/// The longest sleep accepted, in seconds.
pub const MAX_SECONDS: u32 = 30;

/// The route `/seed/poll-sleep`.
pub fn routes() -> Vec<crate::routes::Route> {
    vec![
        crate::routes::Route::app(
            &[http::Method::GET],
            "/seed/poll-sleep",
            "sleeps N seconds (0-30) through fdevent timeouts, streaming a line a second",
            app,
        )
        .query("seconds=N")
        // Anonymous and up to 30 s long: the first to go at the connection cap.
        .class(crate::bulkhead::RouteClass::AnonymousLong),
    ]
}

/// The application.
pub async fn app(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let seconds = bounded_query(&environ, "seconds", 0, MAX_SECONDS, 1)?;
    start_response.start(
        "200 OK",
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Cache-Control", "no-store"),
            // Ask proxies (nginx) not to buffer: the point is to see each line arrive.
            ("X-Accel-Buffering", "no"),
        ],
    )?;
    let started = Instant::now();
    let first = format!("sleeping {seconds} s\n");
    let lines = stream::unfold(0, move |slept| async move {
        if slept >= seconds {
            return None;
        }
        let line = match fdevent::timeout(Duration::from_secs(1)).await {
            // A wait with no descriptor can only time out.
            Ok(Readiness::TimedOut | Readiness::Ready) => format!(
                "slept {}/{seconds} s ({:.3} s elapsed)\n",
                slept + 1,
                started.elapsed().as_secs_f64()
            ),
            Err(err) => return Some((Err(Error::from(err)), seconds)),
        };
        Some((Ok(line), slept + 1))
    });
    let head = stream::once(async move { Ok::<_, Error>(first) });
    Ok(Body::from_stream(futures_util::StreamExt::chain(
        head, lines,
    )))
}
