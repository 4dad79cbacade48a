//! [`ResponseFuture`]: what [`AwsgiService`](crate::AwsgiService) returns.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;

use crate::ResponseBody;
use crate::exchange::Exchange;
use crate::layer::Config;
use crate::service::respond;

type BoxFuture = Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send + 'static>>;

/// The future [`AwsgiService`](crate::AwsgiService) returns: resolves once the response is
/// committed (its head chosen and its first chunk, or its end, known).
///
/// Dropping it before then drops the application's future: WSGI's `close()` for a client
/// that went away before the response started.
///
/// ```
/// use awsgi::{AwsgiService, Body, Environ, Error, StartResponse};
/// use tower::Service;
///
/// async fn app(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
///     Ok(Body::from("ok"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut service = AwsgiService::new(app);
/// let request = http::Request::get("/").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
/// let future: awsgi::ResponseFuture = service.call(request);
/// let response = future.await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
pub struct ResponseFuture {
    inner: Inner,
}

enum Inner {
    /// The usual case: the exchange, polled here until its first chunk, then answered.
    Exchange {
        exchange: Option<Exchange>,
        config: Arc<Config>,
    },
    /// Answered before the application ran (a refusal).
    Ready(Option<Response<ResponseBody>>),
    /// The general path, boxed whole.
    Boxed(BoxFuture),
}

impl ResponseFuture {
    pub(crate) fn exchange(exchange: Exchange, config: Arc<Config>) -> Self {
        Self {
            inner: Inner::Exchange {
                exchange: Some(exchange),
                config,
            },
        }
    }

    pub(crate) fn ready(response: Response<ResponseBody>) -> Self {
        Self {
            inner: Inner::Ready(Some(response)),
        }
    }

    pub(crate) fn boxed(
        inner: impl Future<Output = Response<ResponseBody>> + Send + 'static,
    ) -> Self {
        Self {
            inner: Inner::Boxed(Box::pin(inner)),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            Inner::Exchange { exchange, config } => {
                let Some(running) = exchange else {
                    panic!("ResponseFuture polled after it completed");
                };
                let first = ready!(running.poll_chunk(cx));
                let Some(running) = exchange.take() else {
                    unreachable!("the exchange was there a moment ago");
                };
                Poll::Ready(Ok(respond(config, running, first)))
            }
            Inner::Ready(response) => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after it completed"))),
            Inner::Boxed(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
