//! [`ResponseFuture`]: what [`AwsgiService`](crate::AwsgiService) returns.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;

use crate::exchange::Exchange;
use crate::layer::Config;
use crate::service::respond;
use crate::{Error, ResponseBody};

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
    /// Refused before the application ran: the error responder answers when polled. The
    /// error is held rather than the response, so that this variant does not make every
    /// `ResponseFuture` (moved through each service above) as large as a response.
    Refused {
        error: Option<Error>,
        config: Arc<Config>,
    },
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

    pub(crate) fn refused(error: Error, config: Arc<Config>) -> Self {
        Self {
            inner: Inner::Refused {
                error: Some(error),
                config,
            },
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
            Inner::Refused { error, config } => {
                let error = error
                    .take()
                    .expect("ResponseFuture polled after it completed");
                Poll::Ready(Ok((config.error_responder)(&error)))
            }
            Inner::Boxed(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
