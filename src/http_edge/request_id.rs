//! `X-Request-Id`: a client's safe id kept, else a fresh one, set on the request (where the
//! request span reads it) and echoed on the response unless the response has its own —
//! what tower-http's `SetRequestIdLayer` and `PropagateRequestIdLayer` did, in one layer
//! and without their `RequestId` copies in the request's and the response's extensions
//! (nothing read them; the response's cost a map and two boxes per request).
//!
//! Fresh ids are random (version 4) UUIDs, as tower-http's `MakeRequestUuid` makes them,
//! but drawn from a generator seeded once per thread instead of a `getrandom` system call
//! per request (one of the three system calls a `/healthz` answer made).
//!
//! A request id only has to be unique, not secret: clients may send their own. The
//! generator is SplitMix64 over a per-thread state seeded from the operating system, and
//! each id takes 122 of its bits (the version and variant bits are fixed).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use http::{HeaderValue, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{REQUEST_ID, drop_unsafe_request_id};

/// Wraps a service in [`SetRequestId`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = SetRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId { inner }
    }
}

/// Gives each request an `X-Request-Id` (see the module).
#[derive(Debug, Clone)]
pub(crate) struct SetRequestId<S> {
    inner: S,
}

impl<S, B> Service<Request> for SetRequestId<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let mut request = drop_unsafe_request_id(request);
        let id = match request.headers().get(&REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = fresh();
                request.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        RequestIdFuture {
            inner: self.inner.call(request),
            id: Some(id),
        }
    }
}

pin_project! {
    /// The future of [`SetRequestId`]: the response, with the request's id unless it has one.
    #[derive(Debug)]
    pub(crate) struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().entry(REQUEST_ID).or_insert(id);
        }
        Poll::Ready(Ok(response))
    }
}

/// A fresh id: a random UUID, hyphenated, lower case.
fn fresh() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

/// A random (version 4) UUID from this thread's generator.
pub(crate) fn new_v4() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&next_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&next_u64().to_le_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// The thread's seed from the operating system; should that fail, the clock and the
/// thread's address mixed (still unique enough for ids: the ids of two threads differ).
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    nanos ^ (&local as *const u8 as u64).rotate_left(32)
}

/// SplitMix64's next output.
fn next_u64() -> u64 {
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_4_uuids_and_differ() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_v4()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
    }

    #[test]
    fn fresh_ids_are_header_values_in_the_uuid_form() {
        let id = fresh();
        let text = id.to_str().expect("ASCII");
        assert!(uuid::Uuid::parse_str(text).is_ok(), "{text}");
        assert_eq!(text.len(), 36);
    }
}
