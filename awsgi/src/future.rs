//! [`ResponseFuture`]: what [`AwsgiService`](crate::AwsgiService) returns.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use crate::ResponseBody;

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
    inner: BoxFuture,
}

impl ResponseFuture {
    pub(crate) fn new(
        inner: impl Future<Output = Response<ResponseBody>> + Send + 'static,
    ) -> Self {
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx).map(Ok)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
