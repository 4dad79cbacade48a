//! [`AwsgiService`]: an [`Application`] served as a tower `Service` — refuse what cannot
//! become an environ, build the environ, run the exchange up to its commit, and answer.

use std::convert::Infallible;
use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, header};
use tower::{Layer, Service};

use crate::exchange::Exchange;
use crate::head::content_length;
use crate::layer::Config;
use crate::{
    Application, AwsgiLayer, BoxError, ContractError, EnvironBuilder, Error, Input, InputError,
    RequestError, ResponseBody, ResponseFuture, StartResponse, extract,
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
        ResponseFuture::new(serve(self.app.clone(), self.config.clone(), request))
    }
}

async fn serve<A, B>(
    app: Arc<A>,
    config: Arc<Config>,
    request: Request<B>,
) -> Response<ResponseBody>
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
        return (config.error_responder)(&err);
    }

    let routing_args = match extract::routing_args(&mut parts).await {
        Ok(args) => args,
        Err(refused) => {
            let RequestError::InvalidPathParam { detail } = &refused;
            tracing::info!(error = %refused, %detail, "refused before the application ran");
            let err = Error::from(refused);
            return (config.error_responder)(&err);
        }
    };
    // A body that is over before it starts (most GETs) is not boxed: an empty one is free.
    let input = if body.is_end_stream() {
        Input::new(http_body_util::Empty::<Bytes>::new(), config.body_limit)
    } else {
        Input::new(body, config.body_limit)
    };
    let environ = build_environ(parts, input, &config, routing_args);

    let start_response = StartResponse::new();
    let call = {
        let start_response = start_response.clone();
        async move { app.call(environ, start_response).await }
    };
    let mut exchange = Exchange::new(call, start_response);

    let first = match poll_fn(|cx| exchange.poll_chunk(cx)).await {
        Ok(first) => first,
        Err(err) => return fail_before_commit(&config, &err),
    };
    let head = match exchange.start_response.commit() {
        Ok(head) => head,
        Err(err) => return fail_before_commit(&config, &err.into()),
    };
    let declared = match head.headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(value) => match content_length(value) {
            Some(len) => Some(len),
            None => {
                let err = ContractError::InvalidContentLength(
                    String::from_utf8_lossy(value.as_bytes()).into(),
                );
                return fail_before_commit(&config, &err.into());
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
    let https = parts.uri.scheme_str() == Some("https");

    let mut builder = EnvironBuilder::from_parts(parts)
        .server(config.server_name.clone(), config.server_port)
        .https(https)
        .routing_args(routing_args)
        .input(input);
    if let Some(prefix) = prefix {
        builder = builder.script_name(&prefix);
    }
    if let Some(addr) = remote {
        builder = builder.remote_addr(addr);
    }
    builder.build()
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
