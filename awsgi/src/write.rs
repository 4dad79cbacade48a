//! `write()`: the legacy imperative [`Write`] handle, and the small queue between it and
//! the server.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::StartResponse;
use bytes::Bytes;

/// How many `write()` chunks may wait for the client before `write` suspends.
pub(crate) const WRITE_BUFFER: usize = 8;

/// `write()` output waiting for the server: a small queue that allocates nothing until an
/// application actually writes (most never do).
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    writes: Mutex<Writes>,
}

#[derive(Debug, Default)]
struct Writes {
    queue: VecDeque<Bytes>,
    /// No more writes: the application returned, or the response is gone.
    closed: bool,
    /// The server, waiting for output.
    reader: Option<Waker>,
    /// Writers waiting for room.
    writers: Vec<Waker>,
}

impl WriteQueue {
    /// The next `write()` chunk: `Ready(Some)`, `Ready(None)` once closed and drained, or
    /// `Pending` (and a wake-up when a chunk comes).
    pub(crate) fn poll_written(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut writes = self.lock();
        match writes.pop() {
            Some(chunk) => Poll::Ready(Some(chunk)),
            None if writes.closed => Poll::Ready(None),
            None => {
                // The same task polls again and again: clone its waker only when it changes.
                if !writes
                    .reader
                    .as_ref()
                    .is_some_and(|reader| reader.will_wake(cx.waker()))
                {
                    writes.reader = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// The next `write()` chunk already queued, without waiting.
    pub(crate) fn take_written(&self) -> Option<Bytes> {
        self.lock().pop()
    }

    /// Ends `write()`: later writes fail; what is queued can still be taken.
    /// Closes the queue (later writes fail) and takes the first chunk still queued, under one
    /// lock; `true` beside it when more are queued behind it.
    pub(crate) fn close_and_take(&self) -> (Option<Bytes>, bool) {
        let mut writes = self.lock();
        writes.closed = true;
        for writer in writes.writers.drain(..) {
            writer.wake();
        }
        let first = writes.pop();
        (first, !writes.queue.is_empty())
    }

    pub(crate) fn close(&self) {
        let mut writes = self.lock();
        writes.closed = true;
        for writer in writes.writers.drain(..) {
            writer.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Writes> {
        // Never held across a call that can panic; a poisoned lock still holds a sound queue.
        self.writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Writes {
    fn pop(&mut self) -> Option<Bytes> {
        let chunk = self.queue.pop_front()?;
        // Room again: let blocked writers retry.
        for writer in self.writers.drain(..) {
            writer.wake();
        }
        Some(chunk)
    }
}

/// The legacy imperative `write` that `start_response` returns, for ported applications.
///
/// Bytes written go out before the body's own chunks, and the first non-empty write commits
/// the headers. `write` suspends while the client is slow (a small buffer sits between), and
/// fails with [`WriteError`] once the client is gone or the application has returned.
///
/// ```
/// use awsgi::{Body, Environ, Error, StartResponse};
///
/// async fn legacy(_environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     let write = start_response.start("200 OK", [("Content-Type", "text/plain")])?;
///     write.write("written first, ").await?;
///     Ok(Body::from("then the body\n"))
/// }
/// # let _ = awsgi::AwsgiService::new(legacy);
/// ```
#[derive(Debug, Clone)]
pub struct Write {
    /// The response this writes to; its queue is [`StartResponse::writes`].
    start_response: StartResponse,
}

/// `write()` was called after the response ended: the client went away, or the
/// application had already returned.
///
/// ```
/// use awsgi::{Body, Environ, Error, StartResponse};
///
/// async fn app(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     let write = start_response.start("200 OK", [("Content-Type", "text/plain")])?;
///     if write.write("hello\n").await.is_err() {
///         return Ok(Body::empty()); // the client is gone: nothing more to do
///     }
///     Ok(Body::empty())
/// }
/// # let _ = awsgi::AwsgiService::new(app);
/// ```
#[derive(Debug, thiserror::Error)]
#[error("write() after the response ended")]
pub struct WriteError;

impl Write {
    pub(crate) fn new(start_response: StartResponse) -> Self {
        Self { start_response }
    }

    /// Sends `data` to the client, committing the headers if this is the first output.
    ///
    /// ```
    /// use awsgi::{Body, Environ, Error, StartResponse};
    ///
    /// async fn app(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     let write = start_response.start("200 OK", [("Content-Type", "text/plain")])?;
    ///     for line in ["one\n", "two\n"] {
    ///         write.write(line).await?;
    ///     }
    ///     Ok(Body::empty())
    /// }
    /// # let _ = awsgi::AwsgiService::new(app);
    /// ```
    pub async fn write(&self, data: impl Into<Bytes>) -> Result<(), WriteError> {
        let mut data = Some(data.into()).filter(|d| !d.is_empty());
        poll_fn(|cx| {
            let mut writes = self.start_response.writes().lock();
            if writes.closed {
                return Poll::Ready(Err(WriteError));
            }
            let Some(chunk) = data.take() else {
                return Poll::Ready(Ok(()));
            };
            if writes.queue.len() < WRITE_BUFFER {
                writes.queue.push_back(chunk);
                if let Some(reader) = writes.reader.take() {
                    reader.wake();
                }
                Poll::Ready(Ok(()))
            } else {
                data = Some(chunk);
                writes.writers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
