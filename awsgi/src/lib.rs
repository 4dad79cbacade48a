//! **The contract**: an asynchronous WSGI for Rust.
//!
//! PEP 3333's shape — `app(environ, start_response) -> iterable` — with the 2008 Web-SIG's
//! asynchronous extension done the Rust way: an application may `.await` anything (a query,
//! a socket, a timer) anywhere in its call chain, and the request suspends there without
//! holding a thread.
//!
//! | WSGI | here |
//! | --- | --- |
//! | `app(environ, start_response)` | [`Application::call`], or any `async fn(Environ, StartResponse) -> Result<Body, Error>` |
//! | `environ` dict | [`Environ`]: typed accessors, and [`Environ::get`] for the CGI view |
//! | `start_response(status, headers, exc_info)` | [`StartResponse::start`], [`StartResponse::start_with_exc_info`] |
//! | `write(data)` | [`Write::write`] (async) |
//! | the returned iterable, `close()` | [`Body`], a stream; dropping it is `close()` |
//! | `wsgi.input`, `wsgi.errors` | [`Input`], [`Errors`] |
//! | `x-wsgiorg.fdevent.readable/writable` | [`fdevent::readable`], [`fdevent::writable`], [`fdevent::timeout`] |
//! | `wsgiref.validate` | [`Validator`] |
//! | the server | [`AwsgiLayer`]/[`AwsgiService`]: a tower service over any `http_body::Body` request (axum, hyper) |
//!
//! This crate knows nothing of Postgres or of the applications built on it. It serves any
//! `http_body::Body` request and builds without axum; the `axum` feature reads axum's
//! extractors (routing arguments from `RawPathParams`, the mount prefix under
//! `nest_service` from `OriginalUri`, the peer from `ConnectInfo`).
//!
//! # A worked example
//!
//! An application that streams a countdown, suspending a second between lines, mounted on
//! axum beside a native route:
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use futures_util::stream;
//! use awsgi::{fdevent, AwsgiLayer, Body, Environ, Error, StartResponse};
//! use tower::Layer;
//!
//! async fn countdown(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
//!     let from: u32 = environ.query("from").and_then(|n| n.parse().ok()).unwrap_or(3);
//!     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
//!     let lines = stream::unfold(from, |n| async move {
//!         if n == 0 {
//!             return None;
//!         }
//!         fdevent::sleep(Duration::from_secs(1)).await;
//!         Some((Ok::<_, Error>(format!("{n}\n")), n - 1))
//!     });
//!     Ok(Body::from_stream(lines))
//! }
//!
//! let router: Router = Router::new()
//!     .route("/healthz", get(|| async { "ok" }))
//!     .route_service("/countdown", AwsgiLayer::new().layer(countdown));
//! ```
//!
//! # The rules
//!
//! 1. **environ** holds the CGI variables of the request (`SCRIPT_NAME` is the mount prefix
//!    when nested, `PATH_INFO` is percent-decoded, repeated headers are joined with `", "`).
//! 2. **start_response** takes `"NNN Reason"` and valid, non-hop-by-hop headers; a breach
//!    answers a plain 500 with the detail in the log.
//! 3. **Deferred commit**: nothing is sent until the body's first non-empty chunk (or its
//!    end); until then `start_with_exc_info` replaces the response. After the commit it
//!    re-raises, and the connection is aborted.
//! 4. **Body**: empty chunks are skipped; a declared `Content-Length` is never exceeded, and
//!    a short body aborts the connection. A whole body is sent with its `Content-Length`.
//! 5. **close()** is dropping the [`Body`] (or the application's future): at the end of the
//!    response *and* when the client goes away.
//! 6. **write()** output goes before the body's chunks and commits the headers.
//! 7. **wsgi.input** streams the request body as it arrives, with a limit answered by 413.
//! 8. **fdevent** waits on any descriptor (or none: a timeout) without a thread, and without
//!    disturbing the descriptor's owner.
//! 9. **Faults** — an `Err` or a panic — give a 500 before the commit and an aborted
//!    connection after it; the server goes on.
//! 10. **Validator** checks both sides at runtime, and keeps a whole body's exact length, so
//!     validated tests see the framing production sends.

#![warn(
    missing_docs,
    unreachable_pub,
    rust_2018_idioms,
    missing_debug_implementations
)]
// One justified site, in `fdevent`, allows it locally with its SAFETY note.
#![deny(unsafe_code)]

use std::future::Future;

mod body;
mod environ;
mod error;
mod errors;
mod exchange;
mod extract;
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let waited = awsgi::fdevent::timeout(Duration::from_millis(1)).await.unwrap();
/// assert_eq!(waited, awsgi::fdevent::Readiness::TimedOut);
/// # }
/// ```
pub mod fdevent;
mod future;
mod head;
mod input;
mod layer;
mod response_body;
mod service;
mod start_response;
mod validate;
mod write;

pub use body::Body;
pub use environ::{Environ, EnvironBuilder, VARIABLES};
pub use error::{BoxError, ContractError, Error, RequestError};
pub use errors::Errors;
pub use future::ResponseFuture;
pub use head::StartResponseError;
pub use input::{Input, InputError};
pub use layer::{AwsgiLayer, DEFAULT_BODY_LIMIT, ErrorResponder};
pub use response_body::ResponseBody;
pub use service::AwsgiService;
pub use start_response::StartResponse;
pub use validate::{ValidationError, Validator, check_environ};
pub use write::{Write, WriteError};

/// An application on the contract: WSGI's `app(environ, start_response)`, asynchronous.
///
/// Implement it on a type that carries configuration, or write a plain
/// `async fn(Environ, StartResponse) -> Result<Body, Error>`: every such function is an
/// `Application` already.
///
/// ```
/// use awsgi::{Application, Body, Environ, Error, StartResponse};
///
/// struct Greeter {
///     greeting: String,
/// }
///
/// impl Application for Greeter {
///     async fn call(&self, environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
///         let name = environ.query("name").unwrap_or_else(|| "world".into());
///         start_response.start("200 OK", [("Content-Type", "text/plain; charset=utf-8")])?;
///         Ok(Body::from(format!("{}, {name}!\n", self.greeting)))
///     }
/// }
/// # let _ = awsgi::AwsgiService::new(Greeter { greeting: "Hello".into() });
/// ```
pub trait Application: Send + Sync + 'static {
    /// Handles one request. It may await before it returns, and the returned [`Body`] may
    /// await between chunks.
    fn call(
        &self,
        environ: Environ,
        start_response: StartResponse,
    ) -> impl Future<Output = Result<Body, Error>> + Send;
}

impl<F, Fut> Application for F
where
    F: Fn(Environ, StartResponse) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Body, Error>> + Send,
{
    fn call(
        &self,
        environ: Environ,
        start_response: StartResponse,
    ) -> impl Future<Output = Result<Body, Error>> + Send {
        self(environ, start_response)
    }
}
