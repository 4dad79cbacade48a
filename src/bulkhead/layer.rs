//! [`BulkheadLayer`] / [`Bulkhead`] / [`ResponseFuture`]: a route held to its class's share.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt};

use super::{Admitted, Bulkheads, RouteClass};
use crate::server::{Connection, Evictable};

/// Holds a route to the share of its [`RouteClass`] (see [`Bulkheads`]): refuses it when
/// the share is full, marks its connection evictable at the cap when the class says so,
/// and keeps its places until its response body ends.
///
/// ```
/// # use std::time::Duration;
/// use pgbridge::bulkhead::{BulkheadConfig, Bulkheads, RouteClass};
///
/// # let bulkheads = Bulkheads::new(BulkheadConfig {
/// #     anonymous_db: 4, stream_opening: 4, open_wait: Duration::from_secs(1), long_per_address: 0,
/// # });
/// let route = axum::routing::get(|| async { "slept" })
///     .route_layer(bulkheads.layer(RouteClass::AnonymousLong));
/// # let _: axum::routing::MethodRouter = route;
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    bulkheads: Bulkheads,
    class: RouteClass,
}

impl BulkheadLayer {
    /// The layer for routes of `class`.
    pub fn new(bulkheads: Bulkheads, class: RouteClass) -> Self {
        Self { bulkheads, class }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead {
            inner,
            bulkheads: self.bulkheads.clone(),
            class: self.class,
        }
    }
}

/// The service of [`BulkheadLayer`].
#[derive(Debug, Clone)]
pub struct Bulkhead<S> {
    inner: S,
    bulkheads: Bulkheads,
    class: RouteClass,
}

impl<S> Service<Request<Body>> for Bulkhead<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is checked on the clone that serves the request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let peer: Option<IpAddr> = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let address = self.bulkheads.client_addr(peer, request.headers());
        let connection = request.extensions().get::<Connection>().cloned();
        let inner = self.inner.clone();
        let bulkheads = self.bulkheads.clone();
        let class = self.class;
        ResponseFuture {
            inner: Box::pin(async move {
                let admitted = match bulkheads.admit(class, address).await {
                    Ok(admitted) => admitted,
                    Err(refused) => return Ok(refused),
                };
                let Admitted {
                    until_head,
                    until_end,
                } = admitted;
                let evictable = connection
                    .filter(|_| class.is_evictable())
                    .map(|connection| connection.evictable());
                let response = inner.oneshot(request).await?;
                drop(until_head);
                Ok(response.map(|body| {
                    Body::new(Held {
                        inner: body,
                        _held: (until_end, evictable),
                    })
                }))
            }),
        }
    }
}

/// The future of [`Bulkhead`].
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

type Places = (
    Option<crate::keyed_limit::KeyedPermit<IpAddr>>,
    Option<Evictable>,
);

pin_project! {
    /// A response body holding its request's places until it ends (or is dropped).
    struct Held {
        #[pin]
        inner: Body,
        _held: Places,
    }
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
