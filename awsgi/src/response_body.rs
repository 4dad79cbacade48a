//! The response body: the committed exchange streamed to the client with the declared
//! `Content-Length` enforced both ways, or the error responder's body.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use crate::exchange::Exchange;
use crate::{BoxError, ContractError, Error};

/// The body of every response an [`AwsgiService`](crate::AwsgiService) sends: the
/// application's output, streamed, or the [error responder](crate::AwsgiLayer::error_responder)'s
/// answer. Its [`size_hint`](http_body::Body::size_hint) is exact whenever the length is
/// known, so the server sends `Content-Length` rather than chunks.
///
/// ```
/// use awsgi::{AwsgiService, Body, Environ, Error, StartResponse};
/// use http_body::Body as _;
/// use tower::ServiceExt;
///
/// async fn app(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
///     Ok(Body::from("four"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let request = http::Request::get("/").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
/// let response = AwsgiService::new(app).oneshot(request).await.unwrap();
/// let body: &awsgi::ResponseBody = response.body();
/// assert_eq!(body.size_hint().exact(), Some(4));
/// # }
/// ```
pub struct ResponseBody {
    kind: Kind,
}

enum Kind {
    Exchange(ExchangeBody),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl ResponseBody {
    /// Any other body, boxed: what an error responder answers.
    pub(crate) fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            kind: Kind::Boxed(body.map_err(Into::into).boxed_unsync()),
        }
    }

    /// The body of a committed exchange: `first` goes out first, then the rest.
    pub(crate) fn exchange(
        first: Option<Bytes>,
        exchange: Option<Exchange>,
        declared: Option<u64>,
    ) -> Self {
        let mut body = ExchangeBody {
            first: None,
            exchange,
            declared,
            sent: 0,
            done: false,
            unflushed: false,
            abort: None,
        };
        body.first = first.map(|first| body.clip(first));
        Self {
            kind: Kind::Exchange(body),
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Exchange(_) => "exchange",
            Kind::Boxed(_) => "boxed",
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match &mut self.get_mut().kind {
            Kind::Exchange(body) => body.poll_frame(cx),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx).map_err(Error::new),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Exchange(body) => body.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Exchange(body) => body.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

/// The committed response's body: the first chunk, then the rest of the exchange, with the
/// declared `Content-Length` enforced both ways.
struct ExchangeBody {
    first: Option<Bytes>,
    exchange: Option<Exchange>,
    /// The application's `Content-Length`, if it declared one.
    declared: Option<u64>,
    /// Bytes accepted for sending so far, `first` included.
    sent: u64,
    done: bool,
    /// Data went out since this body last returned `Pending`: hyper may still hold it in
    /// its write buffer, which it discards when the body fails.
    unflushed: bool,
    /// An abort held back for one poll, so that what was sent before it reaches the client.
    abort: Option<Error>,
}

impl ExchangeBody {
    /// Never more than declared: cut the chunk at the limit, and close the application's
    /// body once the declared length is reached.
    fn clip(&mut self, mut chunk: Bytes) -> Bytes {
        if let Some(declared) = self.declared {
            let allowed = declared - self.sent;
            let len = chunk.len() as u64;
            if len >= allowed {
                if len > allowed {
                    tracing::error!(
                        declared,
                        excess = len - allowed,
                        "application sent more than its Content-Length; the excess is dropped"
                    );
                    chunk.truncate(allowed as usize);
                }
                self.exchange = None;
            }
        }
        self.sent += chunk.len() as u64;
        chunk
    }

    fn abort(
        &mut self,
        err: Error,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        tracing::error!(error = %err, "application failed after its response started; aborting the connection");
        self.exchange = None;
        self.done = true;
        if std::mem::take(&mut self.unflushed) {
            // Yield once: hyper flushes what it buffered, then the error closes the
            // connection, so the client sees the cut body rather than nothing.
            self.abort = Some(err);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(err)))
    }

    fn data(&mut self, chunk: Bytes) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.unflushed = true;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn owes_bytes(&self) -> bool {
        self.declared.is_some_and(|declared| self.sent < declared)
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Some(err) = self.abort.take() {
            return Poll::Ready(Some(Err(err)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(first) = self.first.take() {
            return self.data(first);
        }
        if let Some(exchange) = &mut self.exchange {
            if let Some(rejected) = exchange.start_response.rejected() {
                return self.abort(ContractError::Rejected(rejected.to_string()).into(), cx);
            }
            match exchange.poll_chunk(cx) {
                Poll::Pending => {
                    self.unflushed = false;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(Some(chunk))) => {
                    let chunk = self.clip(chunk);
                    return self.data(chunk);
                }
                Poll::Ready(Ok(None)) => self.exchange = None,
                Poll::Ready(Err(err)) => return self.abort(err, cx),
            }
        }
        // The end: fewer bytes than declared must not look like a whole body.
        if let Some(declared) = self.declared.filter(|_| self.owes_bytes()) {
            let sent = self.sent;
            return self.abort(ContractError::ShortBody { declared, sent }.into(), cx);
        }
        self.done = true;
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        (self.done && self.abort.is_none())
            || (self.first.is_none() && self.exchange.is_none() && !self.owes_bytes())
    }

    fn size_hint(&self) -> SizeHint {
        let pending = self.first.as_ref().map_or(0, |b| b.len() as u64);
        match (self.declared, &self.exchange) {
            (Some(declared), _) => SizeHint::with_exact(declared - self.sent + pending),
            (None, None) => SizeHint::with_exact(pending),
            (None, Some(_)) => SizeHint::default(),
        }
    }
}
