//! [`Stack`]: what the server serves — the service's whole middleware stack as one boxed,
//! cloneable service, with no `axum::Router` of its own around it.

use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll, Waker};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

/// The service a [`Server`](super::Server) hands each request to. Built from the stack
/// itself ([`Stack::new`], what [`crate::stack`] returns), a request costs one boxed clone
/// and the stack's own layers; an [`axum::Router`] converts too (`Stack::from(router)`),
/// at the price of its routing on every request (an outer `Router` whose only route is its
/// fallback still matches the path twice and wraps the answer in its own future).
///
/// ```
/// use pgbridge::server::Stack;
///
/// let from_router = Stack::from(axum::Router::new());
/// let direct = Stack::new(tower::service_fn(|_req: axum::extract::Request| async {
///     Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::empty()))
/// }));
/// # let _ = (from_router, direct);
/// ```
#[derive(Clone)]
pub struct Stack(BoxCloneSyncService<Request, Response, Infallible>);

impl Stack {
    /// Boxes `service` (which must always be ready, as axum's routers and tower-http's
    /// layers are), its answers turned into axum's [`Response`].
    pub fn new<S>(service: S) -> Self
    where
        S: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Response: IntoResponse + 'static,
        S::Future: Send + 'static,
    {
        Self(BoxCloneSyncService::new(
            service.map_response(IntoResponse::into_response),
        ))
    }
}

/// The future of a [`Stack`]'s answer: already boxed by the stack, so a connection keeps
/// only a pointer to it.
pub(crate) type StackFuture =
    <BoxCloneSyncService<Request, Response, Infallible> as Service<Request>>::Future;

impl Stack {
    /// Calls the stack for `request` in place: no clone of the stack (a boxed copy of every
    /// layer, dropped again after the request) when it is ready, as the service's layers
    /// always are; a stack that is not ready yet answers from a clone once it is.
    pub(crate) fn call_now(&mut self, request: Request) -> StackFuture {
        match self.0.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => self.0.call(request),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => Box::pin(self.0.clone().oneshot(request)),
        }
    }
}

impl From<Router> for Stack {
    fn from(router: Router) -> Self {
        Self::new(router)
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stack")
    }
}

impl Service<Request> for Stack {
    type Response = Response;
    type Error = Infallible;
    type Future = StackFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.0.call(request)
    }
}
