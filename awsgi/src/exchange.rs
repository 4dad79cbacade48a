//! The exchange driver: one request in flight, polled for its next chunk — the
//! application's future until it returns, its `write()` output, then its body — with
//! panics caught and turned into errors.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::{Body, ContractError, Error, StartResponse};

type AppFuture = Pin<Box<dyn Future<Output = Result<Body, Error>> + Send + 'static>>;

/// One request in flight: the application's future until it returns, its `write()` output,
/// then its body.
pub(crate) struct Exchange {
    app: Option<AppFuture>,
    body: Option<Body>,
    pub(crate) start_response: StartResponse,
}

impl Exchange {
    /// An exchange that will poll `app`, whose `start_response` is `start_response`.
    pub(crate) fn new(
        app: impl Future<Output = Result<Body, Error>> + Send + 'static,
        start_response: StartResponse,
    ) -> Self {
        Self {
            app: Some(Box::pin(app)),
            body: None,
            start_response,
        }
    }

    /// The next non-empty chunk (writes first, then the body), `None` at the end.
    pub(crate) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, Error>> {
        loop {
            if let Some(app) = &mut self.app {
                // Registering for writes before polling the app means a write made during
                // that poll wakes this task again.
                if let Poll::Ready(Some(bytes)) = self.start_response.poll_written(cx) {
                    return Poll::Ready(Ok(Some(bytes)));
                }
                match catch_unwind(AssertUnwindSafe(|| app.as_mut().poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(Ok(body))) => {
                        self.app = None;
                        // Later writes fail; the ones already queued still go out.
                        self.start_response.close_writes();
                        self.body = Some(body);
                    }
                    Ok(Poll::Ready(Err(err))) => {
                        self.app = None;
                        return Poll::Ready(Err(err));
                    }
                    Err(panic) => {
                        self.app = None;
                        return Poll::Ready(Err(panicked(panic)));
                    }
                }
            }
            if let Some(bytes) = self.start_response.take_written() {
                return Poll::Ready(Ok(Some(bytes)));
            }
            let Some(body) = &mut self.body else {
                return Poll::Ready(Ok(None));
            };
            match catch_unwind(AssertUnwindSafe(|| body.poll_next_unpin(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(Some(Ok(chunk)))) => {
                    if !chunk.is_empty() {
                        if body.exact_len() == Some(0) {
                            // A whole body, now taken: close it and let the length be known.
                            self.body = None;
                        }
                        return Poll::Ready(Ok(Some(chunk)));
                    }
                }
                Ok(Poll::Ready(None)) => {
                    self.body = None;
                    return Poll::Ready(Ok(None));
                }
                Ok(Poll::Ready(Some(Err(err)))) => {
                    self.body = None;
                    return Poll::Ready(Err(err));
                }
                Err(panic) => {
                    self.body = None;
                    return Poll::Ready(Err(panicked(panic)));
                }
            }
        }
    }

    /// Nothing more to send: the application returned, its body ended, no write is queued.
    pub(crate) fn is_finished(&self) -> bool {
        self.app.is_none() && self.body.is_none() && !self.start_response.has_written()
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // The response is over (or the client is gone): a writer elsewhere must not wait.
        self.start_response.close_writes();
    }
}

fn panicked(payload: Box<dyn Any + Send>) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| String::from("non-string panic payload"));
    ContractError::Panicked(message).into()
}
