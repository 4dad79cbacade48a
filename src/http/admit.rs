//! [`AdmitLayer`]: a synchronous check in front of a service that may answer a request
//! itself (a 501 for a transfer coding the server does not decode, a 503 while draining)
//! before the service sees it. The check runs in `call`, so an admitted request costs no
//! box and no clone of the inner service — what `axum::middleware::from_fn` costs on every
//! request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::Response;
use http::Request;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// Wraps a service in [`Admit`]: `check` sees every request first, and a `Some(response)`
/// is the answer, the inner service never called.
///
/// ```
/// use axum::{Router, body::Body, response::Response, routing::get};
/// use http::{Request, StatusCode};
/// use pgbridge::http::admit::AdmitLayer;
/// use tower::ServiceExt;
///
/// fn no_trace(request: &Request<Body>) -> Option<Response> {
///     let mut refused = Response::new(Body::empty());
///     *refused.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
///     (request.method() == http::Method::TRACE).then_some(refused)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let app = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .layer(AdmitLayer::new(no_trace));
/// let trace = Request::builder().method("TRACE").uri("/").body(Body::empty()).unwrap();
/// let answer = app.oneshot(trace).await.unwrap();
/// assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AdmitLayer<F> {
    check: F,
}

impl<F> AdmitLayer<F> {
    /// A layer running `check` on every request before the service it wraps.
    pub fn new(check: F) -> Self {
        Self { check }
    }
}

impl<S, F: Clone> Layer<S> for AdmitLayer<F> {
    type Service = Admit<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Admit {
            inner,
            check: self.check.clone(),
        }
    }
}

/// The service of [`AdmitLayer`].
#[derive(Debug, Clone)]
pub struct Admit<S, F> {
    inner: S,
    check: F,
}

impl<S, F, B> Service<Request<B>> for Admit<S, F>
where
    S: Service<Request<B>, Response = Response>,
    F: Fn(&Request<B>) -> Option<Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AdmitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match (self.check)(&request) {
            Some(answer) => AdmitFuture::Answered {
                answer: Some(answer),
            },
            None => AdmitFuture::Admitted {
                inner: self.inner.call(request),
            },
        }
    }
}

pin_project! {
    /// The future of [`Admit`]: the inner service's, or the check's answer.
    #[project = AdmitProj]
    #[derive(Debug)]
    #[allow(missing_docs)] // the variants' fields: the inner future, the answer until taken
    pub enum AdmitFuture<F> {
        /// The request was admitted: the inner service answers.
        Admitted {
            #[pin]
            inner: F,
        },
        /// The check answered.
        Answered {
            answer: Option<Response>,
        },
    }
}

impl<F, E> Future for AdmitFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmitProj::Admitted { inner } => inner.poll(cx),
            AdmitProj::Answered { answer } => match answer.take() {
                Some(answer) => Poll::Ready(Ok(answer)),
                None => panic!("AdmitFuture polled after it completed"),
            },
        }
    }
}
