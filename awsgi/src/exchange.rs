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
///
/// The `write()` queue is a mutex the application's `Write` handles share; a request that
/// never writes takes it once, when the application returns (closing it and finding it
/// empty), and the exchange remembers what it found rather than asking again.
pub(crate) struct Exchange {
    app: Option<AppFuture>,
    body: Option<Body>,
    /// Chunks left in the (closed) queue after the application returned.
    queued: bool,
    /// The queue is closed (the application returned): `Drop` need not close it again.
    writes_closed: bool,
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
            queued: false,
            writes_closed: false,
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
                match catch_unwind(AssertUnwindSafe(|| app.as_mut().poll(cx))) {
                    Ok(Poll::Pending) => {
                        // Output written before or during that poll goes out now. Looking
                        // (and registering for more) only after the poll still sees every
                        // write: one made later, from another task, finds this task's waker.
                        return match self.start_response.poll_written(cx) {
                            Poll::Ready(Some(bytes)) => Poll::Ready(Ok(Some(bytes))),
                            _ => Poll::Pending,
                        };
                    }
                    Ok(Poll::Ready(Ok(body))) => {
                        self.app = None;
                        self.body = Some(body);
                        // Later writes fail; the ones already queued still go out, first.
                        let (first, more) = self.start_response.close_writes_and_take();
                        self.writes_closed = true;
                        self.queued = more;
                        if let Some(bytes) = first {
                            return Poll::Ready(Ok(Some(bytes)));
                        }
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
            if self.queued {
                if let Some(bytes) = self.start_response.take_written() {
                    return Poll::Ready(Ok(Some(bytes)));
                }
                self.queued = false;
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
        self.app.is_none() && self.body.is_none() && !self.queued
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // The response is over (or the client is gone): a writer elsewhere must not wait.
        if !self.writes_closed {
            self.start_response.close_writes();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Wake, Waker};

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A write made by another task while the application waits wakes the exchange, and
    /// goes out before the application returns.
    #[test]
    fn a_write_from_another_task_wakes_a_waiting_exchange() {
        let start_response = StartResponse::new();
        let write = start_response.start("200 OK", [("Content-Type", "text/plain")]);
        let write = write.expect("a valid head");
        let mut exchange = Exchange::new(std::future::pending(), start_response);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(exchange.poll_chunk(&mut cx).is_pending());

        let noop = futures_util::task::noop_waker();
        let mut written = std::pin::pin!(write.write("elsewhere"));
        let done = written.as_mut().poll(&mut Context::from_waker(&noop));
        assert!(matches!(done, Poll::Ready(Ok(()))));
        assert!(
            flag.0.load(Ordering::SeqCst),
            "the write must wake the exchange"
        );
        match exchange.poll_chunk(&mut cx) {
            Poll::Ready(Ok(Some(chunk))) => assert_eq!(chunk, "elsewhere"),
            other => panic!(
                "expected the written chunk, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
        assert!(!exchange.is_finished());
    }
}
