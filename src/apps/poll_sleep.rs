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
        .class(crate::bulkhead::RouteClass::AnonymousLong)
        .documented(document),
    ]
}

fn document(doc: &mut utoipa::openapi::OpenApi) {
    use crate::api_doc::parts;
    use utoipa::openapi::schema::{ObjectBuilder, Type};

    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_SECONDS));
    let operation = parts::operation(
        "seedPollSleep",
        "Sleep N seconds through fdevent timeouts, a line a second",
    )
    .description(Some(
        "The port of nginx-poll-sleep: streams one line per second, holding no thread.",
    ))
    .parameter(parts::query(
        "seconds",
        &format!("Whole seconds to sleep, 0 to {MAX_SECONDS} (default 1)."),
        seconds,
    ))
    .response(
        "200",
        parts::text("One line per second slept, streamed.", "text/plain"),
    )
    .response(
        "400",
        parts::error(&format!(
            "`seconds` is not a whole number from 0 to {MAX_SECONDS}."
        )),
    );
    parts::add(doc, "/seed/poll-sleep", parts::Method::Get, operation);
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
