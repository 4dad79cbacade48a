//! Counting and timing every request for `/metrics`, and the log line of a request whose
//! client hung up before the response head (tower-http's `TraceLayer` logs only the
//! responses it sees): one layer, with its own future — no box and no clone of the inner
//! service per request, which two `axum::middleware::from_fn`s cost.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::response::Response;
use http::{Method, Request};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::metrics::Metrics;

/// Status logged for a request whose client went away first (nginx's 499).
pub(crate) const ABANDONED_STATUS: u16 = 499;

/// Wraps a service in [`Observe`], recording into `metrics`.
#[derive(Debug, Clone)]
pub(crate) struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Records each answered request's method, status and duration in the registry; logs
/// `finished processing request` with `status=499 abandoned=true` for one dropped before
/// its response (under the request span, like the line `TraceLayer` writes for the others).
#[derive(Debug, Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let watch = Watch {
            method: request.method().clone(),
            started: Instant::now(),
            metrics: self.metrics.clone(),
            span: tracing::Span::current(),
        };
        ObserveFuture {
            inner: self.inner.call(request),
            watch: Some(watch),
        }
    }
}

/// What a request in flight needs to be recorded when it ends, or logged if it is dropped.
#[derive(Debug)]
struct Watch {
    method: Method,
    started: Instant,
    metrics: Arc<Metrics>,
    span: tracing::Span,
}

pin_project! {
    /// The future of [`Observe`].
    #[derive(Debug)]
    pub(crate) struct ObserveFuture<F> {
        #[pin]
        inner: F,
        watch: Option<Watch>,
    }

    impl<F> PinnedDrop for ObserveFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let Some(watch) = this.project().watch.take() else {
                return;
            };
            let latency = format!("{} ms", watch.started.elapsed().as_millis());
            tracing::info!(
                parent: &watch.span,
                %latency,
                status = ABANDONED_STATUS,
                abandoned = true,
                "finished processing request"
            );
        }
    }
}

impl<F, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Some(watch) = this.watch.take()
            && let Ok(response) = &output
        {
            watch
                .metrics
                .record(&watch.method, response.status(), watch.started.elapsed());
        }
        Poll::Ready(output)
    }
}
