//! [`AwsgiLayer`] / [`AwsgiService`]: serve an [`Application`] as a tower `Service` on axum.
//!
//! The service builds the [`Environ`], calls the application, and drives the exchange:
//!
//! 1. The application future and its body are polled until the first non-empty output —
//!    a [`Write`](super::Write) or a body chunk — or the end of the body. Until then nothing
//!    is sent, so `start_with_exc_info` can still replace the response (**deferred commit**).
//! 2. Then the head chosen through [`StartResponse`] is committed, and the response goes
//!    out with that chunk first; the rest of the body streams behind it, with a declared
//!    `Content-Length` enforced both ways.
//! 3. A failure or panic before the commit becomes an error response (500, or 413 for
//!    `wsgi.input` over its limit); after it, the connection is aborted. Dropping the
//!    response (the client went away) drops the application's future and body: WSGI's
//!    `close()`.

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{ConnectInfo, FromRequestParts, OriginalUri, RawPathParams};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Request, Response, header};
use http_body::{Frame, SizeHint};
use tower::{Layer, Service};

use super::{
    Application, Body, ContractError, Environ, EnvironBuilder, Error, Input, InputError,
    RequestError, StartResponse,
};

/// Turns an error that ended a request before its response started into the response the
/// client gets. The default answers [`Error::status`] with a plain-text reason phrase.
pub type ErrorResponder = Arc<dyn Fn(&Error) -> Response<axum::body::Body> + Send + Sync>;

/// Default request body limit for `wsgi.input`: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// A tower [`Layer`] that serves an [`Application`] as an HTTP service.
///
/// ```
/// use axum::{Router, routing::get};
/// use pgbridge::awsgi::{AwsgiLayer, Body, Environ, Error, StartResponse};
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
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    body_limit: usize,
    server_name: Arc<str>,
    server_port: u16,
    error_responder: ErrorResponder,
}

impl AwsgiLayer {
    /// A layer with the defaults: a 1 MiB body limit, plain-text error responses.
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
    /// the limit makes [`Input`] fail with [`InputError::TooLarge`], answered 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).body_limit = bytes;
        self
    }

    /// `SERVER_NAME` and `SERVER_PORT` for requests that carry no `Host`.
    pub fn server(mut self, name: impl Into<String>, port: u16) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.server_name = Arc::from(name.into());
        config.server_port = port;
        self
    }

    /// How errors that end a request before its response started are answered, e.g. in the
    /// service's JSON error shape. The responder must not put internal detail in the
    /// response: the error is logged separately.
    ///
    /// ```
    /// use pgbridge::awsgi::{AwsgiLayer, Error};
    ///
    /// let layer = AwsgiLayer::new().error_responder(|err: &Error| {
    ///     let status = err.status();
    ///     let body = format!(r#"{{"error":{{"status":{}}}}}"#, status.as_u16());
    ///     (status, [("content-type", "application/json")], body).into_response()
    /// });
    /// # use axum::response::IntoResponse;
    /// ```
    pub fn error_responder(
        mut self,
        responder: impl Fn(&Error) -> Response<axum::body::Body> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.config).error_responder = Arc::new(responder);
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
        AwsgiService {
            app: Arc::new(app),
            config: self.config.clone(),
        }
    }
}

/// An [`Application`] served as a tower `Service<http::Request<axum::body::Body>>`.
///
/// Mount it with axum's `route_service` or `nest_service`; it never fails as a service
/// (`Error = Infallible`): application failures become responses or aborted connections.
///
/// ```
/// use pgbridge::awsgi::{AwsgiService, Body, Environ, Error, StartResponse};
/// use tower::ServiceExt;
///
/// async fn app(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
///     Ok(Body::from("ok"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let request = http::Request::get("/").body(axum::body::Body::empty()).unwrap();
/// let response = AwsgiService::new(app).oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
pub struct AwsgiService<A> {
    app: Arc<A>,
    config: Arc<Config>,
}

impl<A: Application> AwsgiService<A> {
    /// Serves `app` with the default [`AwsgiLayer`] settings.
    pub fn new(app: A) -> Self {
        AwsgiLayer::new().layer(app)
    }
}

impl<A> Clone for AwsgiService<A> {
    fn clone(&self) -> Self {
        Self {
            app: self.app.clone(),
            config: self.config.clone(),
        }
    }
}

impl<A> fmt::Debug for AwsgiService<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsgiService")
            .field("app", &std::any::type_name::<A>())
            .finish_non_exhaustive()
    }
}

impl<A: Application> Service<Request<axum::body::Body>> for AwsgiService<A> {
    type Response = Response<axum::body::Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<axum::body::Body>) -> Self::Future {
        ResponseFuture {
            inner: Box::pin(serve(self.app.clone(), self.config.clone(), request)),
        }
    }
}

/// The future [`AwsgiService`] returns: resolves once the response is committed.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Response<axum::body::Body>> + Send + 'static>>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<axum::body::Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx).map(Ok)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

async fn serve<A: Application>(
    app: Arc<A>,
    config: Arc<Config>,
    request: Request<axum::body::Body>,
) -> Response<axum::body::Body> {
    let (mut parts, body) = request.into_parts();

    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > config.body_limit as u64) {
        let err = Error::from(InputError::TooLarge {
            limit: config.body_limit,
        });
        tracing::info!(error = %err, "refused before the application ran");
        return (config.error_responder)(&err);
    }

    // No parameters (a route without any, or a service mounted outside a router) is an
    // empty list; a parameter that does not decode is refused, never dropped.
    let routing_args = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(params) => params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        Err(RawPathParamsRejection::MissingPathParams(_)) => Vec::new(),
        Err(rejection) => {
            let err = Error::from(RequestError::InvalidPathParam {
                detail: rejection.body_text(),
            });
            tracing::info!(error = %err, detail = %rejection.body_text(), "refused before the application ran");
            return (config.error_responder)(&err);
        }
    };
    let environ = build_environ(parts, body, &config, routing_args);

    let start_response = StartResponse::new();
    let call = {
        let start_response = start_response.clone();
        async move { app.call(environ, start_response).await }
    };
    let mut exchange = Exchange {
        app: Some(Box::pin(call)),
        body: None,
        start_response,
    };

    let first = match poll_fn(|cx| exchange.poll_chunk(cx)).await {
        Ok(first) => first,
        Err(err) => return fail_before_commit(&config, &err),
    };
    let head = match exchange.start_response.commit() {
        Ok(head) => head,
        Err(err) => return fail_before_commit(&config, &err.into()),
    };
    let declared = match head.headers.get(header::CONTENT_LENGTH).map(content_length) {
        None => None,
        Some(Ok(len)) => Some(len),
        Some(Err(err)) => return fail_before_commit(&config, &err.into()),
    };
    let finished = exchange.is_finished();
    let mut body = ResponseBody {
        first,
        exchange: (!finished).then_some(exchange),
        declared,
        sent: 0,
        done: false,
        unflushed: false,
        abort: None,
    };
    if let Some(first) = body.first.take() {
        body.first = Some(body.clip(first));
    }
    let mut response = Response::new(axum::body::Body::new(body));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

fn build_environ(
    mut parts: http::request::Parts,
    body: axum::body::Body,
    config: &Config,
    routing_args: Vec<(String, String)>,
) -> Environ {
    // axum's nest_service strips the mount prefix from the URI; the original keeps it.
    // Put the original back and let the builder split it into SCRIPT_NAME + PATH_INFO.
    let mut prefix = None;
    if let Some(OriginalUri(original)) = parts.extensions.get::<OriginalUri>() {
        let (outer, inner) = (original.path(), parts.uri.path());
        if outer != inner {
            if let Some(stripped) = outer.strip_suffix(inner) {
                prefix = Some(stripped.to_owned());
            } else if inner == "/" {
                prefix = Some(outer.to_owned());
            }
            parts.uri = original.clone();
        }
    }
    let remote = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let https = parts.uri.scheme_str() == Some("https");

    let mut builder = EnvironBuilder::from_parts(parts)
        .server(config.server_name.clone(), config.server_port)
        .https(https)
        .routing_args(routing_args)
        .input(Input::new(body, config.body_limit));
    if let Some(prefix) = prefix {
        builder = builder.script_name(&prefix);
    }
    if let Some(addr) = remote {
        builder = builder.remote_addr(addr);
    }
    builder.build()
}

fn content_length(value: &HeaderValue) -> Result<u64, ContractError> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ContractError::InvalidContentLength(String::from_utf8_lossy(value.as_bytes()).into())
        })
}

/// The error responder's answer, logged by the status it chose (the application's error
/// may carry its status only in a type the responder knows): a 5xx at ERROR with the cause
/// chain; a 4xx, the client's doing, at DEBUG (the request's own log line shows its status).
fn fail_before_commit(config: &Config, err: &Error) -> Response<axum::body::Body> {
    let response = (config.error_responder)(err);
    let status = response.status();
    if status.is_server_error() {
        tracing::error!(error = %err, %status, "application failed before its response started");
    } else {
        tracing::debug!(error = %err, %status, "request refused");
    }
    response
}

fn plain_error(err: &Error) -> Response<axum::body::Body> {
    let status = err.status();
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut response = Response::new(axum::body::Body::from(format!(
        "{} {reason}\n",
        status.as_u16()
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

type AppFuture = Pin<Box<dyn Future<Output = Result<Body, Error>> + Send + 'static>>;

/// One request in flight: the application's future until it returns, its `write()` output,
/// then its body.
struct Exchange {
    app: Option<AppFuture>,
    body: Option<Body>,
    start_response: StartResponse,
}

impl Exchange {
    /// The next non-empty chunk (writes first, then the body), `None` at the end.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        loop {
            if let Some(app) = &mut self.app {
                // Registering for writes before polling the app means a write made during
                // that poll wakes this task again.
                if let Poll::Ready(Some(bytes)) = self.start_response.poll_written(cx) {
                    return Poll::Ready(Ok(Some(bytes)));
                }
                match catch_unwind(AssertUnwindSafe(|| app.as_mut().poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(Ok(body))) => {
                        self.app = None;
                        // Later writes fail; the ones already queued still go out.
                        self.start_response.close_writes();
                        self.body = Some(body);
                    }
                    Ok(Poll::Ready(Err(err))) => {
                        self.app = None;
                        return Poll::Ready(Err(err));
                    }
                    Err(panic) => {
                        self.app = None;
                        return Poll::Ready(Err(panicked(panic)));
                    }
                }
            }
            if let Some(bytes) = self.start_response.take_written() {
                return Poll::Ready(Ok(Some(bytes)));
            }
            let Some(body) = &mut self.body else {
                return Poll::Ready(Ok(None));
            };
            match catch_unwind(AssertUnwindSafe(|| body.poll_next_unpin(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(Some(Ok(chunk)))) => {
                    if !chunk.is_empty() {
                        if body.exact_len() == Some(0) {
                            // A whole body, now taken: close it and let the length be known.
                            self.body = None;
                        }
                        return Poll::Ready(Ok(Some(chunk)));
                    }
                }
                Ok(Poll::Ready(None)) => {
                    self.body = None;
                    return Poll::Ready(Ok(None));
                }
                Ok(Poll::Ready(Some(Err(err)))) => {
                    self.body = None;
                    return Poll::Ready(Err(err));
                }
                Err(panic) => {
                    self.body = None;
                    return Poll::Ready(Err(panicked(panic)));
                }
            }
        }
    }

    fn is_finished(&self) -> bool {
        self.app.is_none() && self.body.is_none() && !self.start_response.has_written()
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // The response is over (or the client is gone): a writer elsewhere must not wait.
        self.start_response.close_writes();
    }
}

fn panicked(payload: Box<dyn Any + Send>) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| String::from("non-string panic payload"));
    ContractError::Panicked(message).into()
}

/// The committed response's body: the first chunk, then the rest of the exchange, with the
/// declared `Content-Length` enforced both ways.
struct ResponseBody {
    first: Option<Bytes>,
    exchange: Option<Exchange>,
    /// The application's `Content-Length`, if it declared one.
    declared: Option<u64>,
    /// Bytes accepted for sending so far, `first` included.
    sent: u64,
    done: bool,
    /// Data went out since this body last returned `Pending`: hyper may still hold it in
    /// its write buffer, which it discards when the body fails.
    unflushed: bool,
    /// An abort held back for one poll, so that what was sent before it reaches the client.
    abort: Option<Error>,
}

impl ResponseBody {
    /// Never more than declared: cut the chunk at the limit, and close the application's
    /// body once the declared length is reached.
    fn clip(&mut self, mut chunk: Bytes) -> Bytes {
        if let Some(declared) = self.declared {
            let allowed = declared - self.sent;
            let len = chunk.len() as u64;
            if len >= allowed {
                if len > allowed {
                    tracing::error!(
                        declared,
                        excess = len - allowed,
                        "application sent more than its Content-Length; the excess is dropped"
                    );
                    chunk.truncate(allowed as usize);
                }
                self.exchange = None;
            }
        }
        self.sent += chunk.len() as u64;
        chunk
    }

    fn abort(
        &mut self,
        err: Error,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        tracing::error!(error = %err, "application failed after its response started; aborting the connection");
        self.exchange = None;
        self.done = true;
        if std::mem::take(&mut self.unflushed) {
            // Yield once: hyper flushes what it buffered, then the error closes the
            // connection, so the client sees the cut body rather than nothing.
            self.abort = Some(err);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(err)))
    }

    fn data(&mut self, chunk: Bytes) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.unflushed = true;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn owes_bytes(&self) -> bool {
        self.declared.is_some_and(|declared| self.sent < declared)
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if let Some(err) = this.abort.take() {
            return Poll::Ready(Some(Err(err)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            return this.data(first);
        }
        if let Some(exchange) = &mut this.exchange {
            if let Some(rejected) = exchange.start_response.rejected() {
                return this.abort(ContractError::Rejected(rejected.to_string()).into(), cx);
            }
            match exchange.poll_chunk(cx) {
                Poll::Pending => {
                    this.unflushed = false;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(Some(chunk))) => {
                    let chunk = this.clip(chunk);
                    return this.data(chunk);
                }
                Poll::Ready(Ok(None)) => this.exchange = None,
                Poll::Ready(Err(err)) => return this.abort(err, cx),
            }
        }
        // The end: fewer bytes than declared must not look like a whole body.
        if let Some(declared) = this.declared.filter(|_| this.owes_bytes()) {
            let sent = this.sent;
            return this.abort(ContractError::ShortBody { declared, sent }.into(), cx);
        }
        this.done = true;
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        (self.done && self.abort.is_none())
            || (self.first.is_none() && self.exchange.is_none() && !self.owes_bytes())
    }

    fn size_hint(&self) -> SizeHint {
        let pending = self.first.as_ref().map_or(0, |b| b.len() as u64);
        match (self.declared, &self.exchange) {
            (Some(declared), _) => SizeHint::with_exact(declared - self.sent + pending),
            (None, None) => SizeHint::with_exact(pending),
            (None, Some(_)) => SizeHint::default(),
        }
    }
}

impl From<Error> for Box<dyn std::error::Error + Send + Sync> {
    fn from(err: Error) -> Self {
        err.into_inner()
    }
}
