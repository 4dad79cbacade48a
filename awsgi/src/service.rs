//! [`AwsgiService`]: an [`Application`] served as a tower `Service` — refuse what cannot
//! become an environ, build the environ, run the exchange up to its commit (in
//! [`ResponseFuture`]), and answer.

use std::convert::Infallible;
use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response, header};
use tower::{Layer, Service};

use crate::environ::layer_environ;
use crate::exchange::Exchange;
use crate::head::content_length;
use crate::layer::Config;
use crate::{
    Application, AwsgiLayer, BoxError, ContractError, Error, Input, InputError, RequestError,
    ResponseBody, ResponseFuture, StartResponse, extract,
};

/// An [`Application`] served as a tower `Service<http::Request<B>>`, for any request body
/// `B` (axum's `Body`, hyper's `Incoming`, …).
///
/// Mount it with axum's `route_service` or `nest_service`, or serve it with hyper; it never
/// fails as a service (`Error = Infallible`): application failures become responses or
/// aborted connections.
///
/// ```
/// use awsgi::{AwsgiService, Body, Environ, Error, StartResponse};
/// use tower::ServiceExt;
///
/// async fn app(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
///     Ok(Body::from("ok"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let request = http::Request::get("/").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
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
    ///
    /// ```
    /// use awsgi::{AwsgiService, Body, Environ, Error, StartResponse};
    ///
    /// async fn app(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     start_response.start("204 No Content", Vec::<(String, String)>::new())?;
    ///     Ok(Body::empty())
    /// }
    /// let service = AwsgiService::new(app);
    /// # let _ = service;
    /// ```
    pub fn new(app: A) -> Self {
        AwsgiLayer::new().layer(app)
    }

    pub(crate) fn with_config(app: A, config: Arc<Config>) -> Self {
        Self {
            app: Arc::new(app),
            config,
        }
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

impl<A, B> Service<Request<B>> for AwsgiService<A>
where
    A: Application,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        start(&self.app, &self.config, request)
    }
}

/// Everything before the application's first poll, done in `call`: refuse what cannot
/// become an environ, build it, and hand the exchange to the future — whose only
/// allocation is the application's future (the exchange), not a box around itself.
fn start<A, B>(app: &Arc<A>, config: &Arc<Config>, request: Request<B>) -> ResponseFuture
where
    A: Application,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();

    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(content_length);
    if declared.is_some_and(|len| len > config.body_limit as u64) {
        let err = Error::from(InputError::TooLarge {
            limit: config.body_limit,
        });
        tracing::info!(error = %err, "refused before the application ran");
        return ResponseFuture::refused(err, config.clone());
    }

    // Reading the router's parameters never waits (axum's extractor is async in name only);
    // if it ever does, the request takes the general, boxed path.
    let args = {
        let routing = std::pin::pin!(extract::routing_args(&mut parts));
        routing.now_or_never()
    };
    let Some(args) = args else {
        return ResponseFuture::boxed(serve(app.clone(), config.clone(), parts, body));
    };
    match begin(app, config, parts, body, args) {
        Ok(exchange) => ResponseFuture::exchange(exchange, config.clone()),
        Err(refused) => ResponseFuture::refused(refused, config.clone()),
    }
}

/// The general path, in one boxed future: what `start` does, for a router whose
/// parameters are not ready at once.
async fn serve<A, B>(
    app: Arc<A>,
    config: Arc<Config>,
    mut parts: http::request::Parts,
    body: B,
) -> Response<ResponseBody>
where
    A: Application,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let args = extract::routing_args(&mut parts).await;
    let mut exchange = match begin(&app, &config, parts, body, args) {
        Ok(exchange) => exchange,
        Err(refused) => return (config.error_responder)(&refused),
    };
    let first = poll_fn(|cx| exchange.poll_chunk(cx)).await;
    respond(&config, exchange, first)
}

/// The environ and the exchange that will run the application, or the refusal (logged;
/// the error responder answers it).
fn begin<A, B>(
    app: &Arc<A>,
    config: &Config,
    parts: http::request::Parts,
    body: B,
    routing_args: Result<Vec<(String, String)>, RequestError>,
) -> Result<Exchange, Error>
where
    A: Application,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let routing_args = match routing_args {
        Ok(args) => args,
        Err(refused) => {
            let RequestError::InvalidPathParam { detail } = &refused;
            tracing::info!(error = %refused, %detail, "refused before the application ran");
            return Err(Error::from(refused));
        }
    };
    // A body that is over before it starts (most GETs) is not boxed: an empty one is free.
    let input = if body.is_end_stream() {
        Input::new(http_body_util::Empty::<Bytes>::new(), config.body_limit)
    } else {
        Input::new(body, config.body_limit)
    };
    let environ = build_environ(parts, input, config, routing_args);

    let start_response = StartResponse::new();
    let call = {
        let (app, start_response) = (app.clone(), start_response.clone());
        async move { app.call(environ, start_response).await }
    };
    Ok(Exchange::new(call, start_response))
}

/// The response, once the exchange has given its first chunk (or its end, or its failure):
/// the committed head over the rest of the exchange, or the error responder's answer.
pub(crate) fn respond(
    config: &Config,
    exchange: Exchange,
    first: Result<Option<Bytes>, Error>,
) -> Response<ResponseBody> {
    let first = match first {
        Ok(first) => first,
        Err(err) => return fail_before_commit(config, &err),
    };
    let head = match exchange.start_response.commit() {
        Ok(head) => head,
        Err(err) => return fail_before_commit(config, &err.into()),
    };
    let declared = match head.headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(value) => match content_length(value) {
            Some(len) => Some(len),
            None => {
                let err = ContractError::InvalidContentLength(
                    String::from_utf8_lossy(value.as_bytes()).into(),
                );
                return fail_before_commit(config, &err.into());
            }
        },
    };
    let finished = exchange.is_finished();
    let body = ResponseBody::exchange(first, (!finished).then_some(exchange), declared);
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

fn build_environ(
    mut parts: http::request::Parts,
    input: Input,
    config: &Config,
    routing_args: Vec<(String, String)>,
) -> crate::Environ {
    let prefix = extract::mount_prefix(&mut parts);
    let remote = extract::remote_addr(&parts);
    let server = (config.server_name.clone(), config.server_port);
    layer_environ(
        parts,
        server,
        remote,
        routing_args,
        input,
        prefix.as_deref(),
    )
}

/// The error responder's answer, logged by the status it chose (the application's error
/// may carry its status only in a type the responder knows): a 5xx at ERROR with the cause
/// chain, except a 503 — the application said it is unavailable for now (its database is
/// down or failing over), which is expected and logged by the application as it sees fit
/// (rate-limited, not once per request) — at DEBUG; a 4xx, the client's doing, at DEBUG
/// (the request's own log line shows its status).
fn fail_before_commit(config: &Config, err: &Error) -> Response<ResponseBody> {
    let response = (config.error_responder)(err);
    let status = response.status();
    if status == http::StatusCode::SERVICE_UNAVAILABLE {
        tracing::debug!(error = %err, %status, "application unavailable for now");
    } else if status.is_server_error() {
        tracing::error!(error = %err, %status, "application failed before its response started");
    } else {
        tracing::debug!(error = %err, %status, "request refused");
    }
    response
}
