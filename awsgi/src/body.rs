//! [`Body`]: the response iterable of WSGI, as a stream of byte chunks.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use crate::Error;

type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send + 'static>>;

/// The response body an application returns: WSGI's iterable, made asynchronous.
///
/// A body is a stream of byte chunks, and may await between them (a query, a timer, a
/// socket). Empty chunks are allowed and skipped by the server. Nothing is sent until the
/// first non-empty chunk arrives or the body ends (WSGI's deferred commit).
///
/// **Dropping the body is WSGI's `close()`.** The server drops it when the response is
/// finished *and* when the client goes away mid-response, so whatever the stream owns (a
/// pooled connection, a query in flight, a file) is released then. [`Body::on_close`] runs
/// a callback at that moment.
///
/// ```
/// use futures_util::stream;
/// use awsgi::{Body, Error};
///
/// let whole = Body::from("hello\n");
/// let chunks = Body::from_stream(stream::iter([
///     Ok::<_, Error>("one "),
///     Ok(""), // empty chunks are skipped
///     Ok("two\n"),
/// ]));
/// let _ = (whole, chunks);
/// ```
pub struct Body {
    kind: Kind,
    on_close: Option<Box<dyn FnOnce() + Send + 'static>>,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(BoxStream),
}

impl Body {
    /// A body with no bytes.
    ///
    /// ```
    /// let body = awsgi::Body::empty();
    /// assert_eq!(body.exact_len(), Some(0));
    /// ```
    pub fn empty() -> Self {
        Self::from_kind(Kind::Full(None))
    }

    /// A body from a stream of chunks. Each chunk is anything that becomes [`Bytes`]
    /// (`&'static str`, `String`, `Vec<u8>`, …); each error anything that becomes [`Error`].
    ///
    /// ```
    /// use futures_util::stream;
    /// use awsgi::{Body, Error};
    ///
    /// let lines = stream::iter(["one\n", "two\n"].map(Ok::<_, Error>));
    /// let body = Body::from_stream(lines);
    /// assert_eq!(body.exact_len(), None);
    /// ```
    pub fn from_stream<S, B, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: Into<Bytes> + 'static,
        E: Into<Error> + 'static,
    {
        use futures_util::TryStreamExt;
        Self::from_kind(Kind::Stream(Box::pin(
            stream.map_ok(Into::into).map_err(Into::into),
        )))
    }

    /// Runs `f` when the body is dropped: WSGI's `close()`.
    ///
    /// It runs once, whether the response finished or the client went away.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
    /// use awsgi::Body;
    ///
    /// let closed = Arc::new(AtomicBool::new(false));
    /// let flag = closed.clone();
    /// let body = Body::from("bye").on_close(move || flag.store(true, Ordering::SeqCst));
    /// drop(body);
    /// assert!(closed.load(Ordering::SeqCst));
    /// ```
    pub fn on_close(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        let previous = self.on_close.take();
        self.on_close = Some(Box::new(move || {
            if let Some(previous) = previous {
                previous();
            }
            f();
        }));
        self
    }

    /// The exact length, when the body is one known chunk.
    ///
    /// ```
    /// assert_eq!(awsgi::Body::from("four").exact_len(), Some(4));
    /// ```
    pub fn exact_len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Full(bytes) => Some(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(_) => None,
        }
    }

    fn from_kind(kind: Kind) -> Self {
        Self {
            kind,
            on_close: None,
        }
    }
}

impl Stream for Body {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(Ok)),
            Kind::Stream(stream) => stream.as_mut().poll_next(cx),
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // Release what the stream holds first, then tell the application.
        self.kind = Kind::Full(None);
        if let Some(close) = self.on_close.take() {
            close();
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => f.debug_tuple("Body").field(bytes).finish(),
            Kind::Stream(_) => f.debug_tuple("Body").field(&"<stream>").finish(),
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

macro_rules! body_from {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Body {
            fn from(value: $ty) -> Self {
                Self::from_kind(Kind::Full(Some(Bytes::from(value))))
            }
        }
    )*};
}

body_from!(Bytes, String, Vec<u8>, &'static str, &'static [u8]);

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{StreamExt, stream};

    #[tokio::test]
    async fn full_body_yields_once() {
        let mut body = Body::from("abc");
        assert_eq!(body.exact_len(), Some(3));
        assert_eq!(body.next().await.unwrap().unwrap(), "abc");
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn stream_body_passes_errors_through() {
        let mut body = Body::from_stream(stream::iter([Ok("a"), Err(std::io::Error::other("x"))]));
        assert_eq!(body.exact_len(), None);
        assert_eq!(body.next().await.unwrap().unwrap(), "a");
        assert_eq!(body.next().await.unwrap().unwrap_err().to_string(), "x");
    }

    #[test]
    fn on_close_callbacks_run_once_in_order() {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a, b) = (log.clone(), log.clone());
        let body = Body::empty()
            .on_close(move || a.lock().unwrap().push(1))
            .on_close(move || b.lock().unwrap().push(2));
        drop(body);
        assert_eq!(*log.lock().unwrap(), vec![1, 2]);
    }
}
