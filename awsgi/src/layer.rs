//! [`AwsgiLayer`]: the settings an [`Application`] is served with, as a tower [`Layer`].
//!
//! The layer makes an [`AwsgiService`]; the service builds the [`Environ`](crate::Environ),
//! calls the application, and drives the exchange:
//!
//! 1. The application future and its body are polled until the first non-empty output —
//!    a [`Write`](crate::Write) or a body chunk — or the end of the body. Until then nothing
//!    is sent, so `start_with_exc_info` can still replace the response (**deferred commit**).
//! 2. Then the head chosen through [`StartResponse`](crate::StartResponse) is committed, and
//!    the response goes out with that chunk first; the rest of the body streams behind it,
//!    with a declared `Content-Length` enforced both ways.
//! 3. A failure or panic before the commit becomes an error response (500, or 413 for
//!    `wsgi.input` over its limit); after it, the connection is aborted. Dropping the
//!    response (the client went away) drops the application's future and body: WSGI's
//!    `close()`.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use tower::Layer;

use crate::{Application, AwsgiService, BoxError, Error, ResponseBody};

/// Turns an error that ended a request before its response started into the response the
/// client gets. The default answers [`Error::status`] with a plain-text reason phrase; set
/// another with [`AwsgiLayer::error_responder`].
///
/// ```
/// use awsgi::{AwsgiLayer, Error};
///
/// // Any `Fn(&Error) -> http::Response<B>` becomes the layer's `ErrorResponder`.
/// fn terse(err: &Error) -> http::Response<String> {
///     let mut response = http::Response::new(String::from("sorry\n"));
///     *response.status_mut() = err.status();
///     response
/// }
/// let layer = AwsgiLayer::new().error_responder(terse);
/// # let _ = layer;
/// ```
pub type ErrorResponder = Arc<dyn Fn(&Error) -> Response<ResponseBody> + Send + Sync>;

/// Default request body limit for `wsgi.input`: 1 MiB.
///
/// ```
/// let layer = awsgi::AwsgiLayer::new().body_limit(4 * awsgi::DEFAULT_BODY_LIMIT);
/// # let _ = layer;
/// ```
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// A tower [`Layer`] that serves an [`Application`] as an HTTP service.
///
/// ```
/// use axum::{Router, routing::get};
/// use awsgi::{AwsgiLayer, Body, Environ, Error, StartResponse};
/// use tower::Layer;
///
/// async fn hello(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
///     Ok(Body::from(format!("hello from {}\n", environ.path_info())))
/// }
///
/// let awsgi = AwsgiLayer::new().body_limit(64 * 1024);
/// let app: Router = Router::new()
///     .route("/native", get(|| async { "a plain axum handler\n" }))
///     .route_service("/hello", awsgi.layer(hello))
///     .nest_service("/mounted", awsgi.layer(hello));
/// ```
#[derive(Clone)]
pub struct AwsgiLayer {
    pub(crate) config: Arc<Config>,
}

/// What every service of one layer shares.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) body_limit: usize,
    pub(crate) server_name: Arc<str>,
    pub(crate) server_port: u16,
    pub(crate) error_responder: ErrorResponder,
}

impl AwsgiLayer {
    /// A layer with the defaults: a 1 MiB body limit, plain-text error responses.
    ///
    /// ```
    /// let layer = awsgi::AwsgiLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                body_limit: DEFAULT_BODY_LIMIT,
                server_name: Arc::from("localhost"),
                server_port: 80,
                error_responder: Arc::new(plain_error),
            }),
        }
    }

    /// The most bytes `wsgi.input` yields. A request that declares a longer
    /// `Content-Length` is answered 413 before the application runs; one that streams past
    /// the limit makes [`Input`](crate::Input) fail with
    /// [`InputError::TooLarge`](crate::InputError::TooLarge), answered 413.
    ///
    /// ```
    /// let layer = awsgi::AwsgiLayer::new().body_limit(64 * 1024);
    /// # let _ = layer;
    /// ```
    pub fn body_limit(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).body_limit = bytes;
        self
    }

    /// `SERVER_NAME` and `SERVER_PORT` for requests that carry no `Host`.
    ///
    /// ```
    /// let layer = awsgi::AwsgiLayer::new().server("api.example.com", 8080);
    /// # let _ = layer;
    /// ```
    pub fn server(mut self, name: impl Into<String>, port: u16) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.server_name = Arc::from(name.into());
        config.server_port = port;
        self
    }

    /// How errors that end a request before its response started are answered, e.g. in the
    /// service's JSON error shape. The responder may answer with any body type (axum's
    /// `Response` too); it must not put internal detail in the response: the error is
    /// logged separately.
    ///
    /// ```
    /// use awsgi::{AwsgiLayer, Error};
    ///
    /// let layer = AwsgiLayer::new().error_responder(|err: &Error| {
    ///     let status = err.status();
    ///     let body = format!(r#"{{"error":{{"status":{}}}}}"#, status.as_u16());
    ///     http::Response::builder()
    ///         .status(status)
    ///         .header("content-type", "application/json")
    ///         .body(http_body_util::Full::new(bytes::Bytes::from(body)))
    ///         .expect("a valid response")
    /// });
    /// # let _ = layer;
    /// ```
    pub fn error_responder<F, B>(mut self, responder: F) -> Self
    where
        F: Fn(&Error) -> Response<B> + Send + Sync + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Arc::make_mut(&mut self.config).error_responder =
            Arc::new(move |err: &Error| responder(err).map(ResponseBody::new));
        self
    }
}

impl Default for AwsgiLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for AwsgiLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsgiLayer")
            .field("body_limit", &self.config.body_limit)
            .field("server_name", &self.config.server_name)
            .field("server_port", &self.config.server_port)
            .finish_non_exhaustive()
    }
}

impl<A: Application> Layer<A> for AwsgiLayer {
    type Service = AwsgiService<A>;

    fn layer(&self, app: A) -> Self::Service {
        AwsgiService::with_config(app, self.config.clone())
    }
}

/// The default error responder: the status and its reason phrase, as plain text.
fn plain_error(err: &Error) -> Response<ResponseBody> {
    let status = err.status();
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = http_body_util::Full::new(Bytes::from(format!("{} {reason}\n", status.as_u16())));
    let mut response = Response::new(ResponseBody::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
