//! `wsgi.input`: the request body, streamed as it arrives, with a size limit.

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};

use crate::BoxError;

/// The request body, whatever the server's body type was.
type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// Why reading `wsgi.input` failed.
///
/// ```
/// use awsgi::{Body, Environ, Error, InputError, StartResponse};
///
/// async fn upload(mut environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     match environ.input().read_to_end().await {
///         Ok(bytes) => {
///             start_response.start("200 OK", [("Content-Type", "text/plain")])?;
///             Ok(Body::from(format!("{} bytes\n", bytes.len())))
///         }
///         Err(err @ InputError::TooLarge { .. }) => Err(err.into()), // answered 413
///         Err(err) => Err(err.into()),                              // answered 400
///     }
/// }
/// # let _ = awsgi::AwsgiService::new(upload);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The body passed the configured limit. The server answers 413.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The client broke off the body, or sent a malformed one. The server answers 400.
    #[error("reading the request body failed: {0}")]
    Read(#[source] BoxError),
}

impl InputError {
    /// The status the server answers when this error ends a request: 413 or 400.
    ///
    /// ```
    /// let err = awsgi::InputError::TooLarge { limit: 10 };
    /// assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// `wsgi.input`: the request body as an async stream of chunks.
///
/// Chunks are handed over as they arrive from the client; nothing is pre-read. Reading past
/// the configured limit (see [`AwsgiLayer::body_limit`](crate::AwsgiLayer::body_limit))
/// fails with [`InputError::TooLarge`], which the server answers with 413 when the
/// application returns it with `?`.
///
/// ```
/// use awsgi::{Body, Environ, Error, StartResponse};
///
/// async fn echo(mut environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     let body = environ.input().read_to_end().await?;
///     start_response.start("200 OK", [("Content-Type", "application/octet-stream")])?;
///     Ok(Body::from(body))
/// }
/// # let _ = awsgi::AwsgiService::new(echo);
/// ```
pub struct Input {
    body: Limited<RequestBody>,
    limit: usize,
    done: bool,
}

impl Input {
    /// `wsgi.input` over any request body (hyper's `Incoming`, axum's `Body`, a
    /// `Full<Bytes>` in a test), yielding at most `limit` bytes.
    ///
    /// ```
    /// use awsgi::Input;
    /// use http_body_util::Full;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut input = Input::new(Full::new(bytes::Bytes::from("hello")), 1024);
    /// assert_eq!(input.read_to_end().await.unwrap(), "hello");
    /// # }
    /// ```
    pub fn new<B>(body: B, limit: usize) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            body: Limited::new(body.map_err(Into::into).boxed_unsync(), limit),
            limit,
            done: false,
        }
    }

    /// An empty input, for environs built outside a server (tests, examples).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut input = awsgi::Input::empty();
    /// assert!(input.chunk().await.unwrap().is_none());
    /// # }
    /// ```
    pub fn empty() -> Self {
        Self::new(Empty::<Bytes>::new(), 0)
    }

    /// The next chunk of the body as it arrives, or `None` at the end.
    ///
    /// ```
    /// use awsgi::{Body, Environ, Error, StartResponse};
    ///
    /// async fn count(mut environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     let mut bytes = 0;
    ///     while let Some(chunk) = environ.input().chunk().await? {
    ///         bytes += chunk.len();
    ///     }
    ///     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
    ///     Ok(Body::from(format!("{bytes}\n")))
    /// }
    /// # let _ = awsgi::AwsgiService::new(count);
    /// ```
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, InputError> {
        while !self.done {
            match self.body.frame().await {
                None => self.done = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
                Some(Err(err)) => {
                    self.done = true;
                    return Err(if err.is::<LengthLimitError>() {
                        InputError::TooLarge { limit: self.limit }
                    } else {
                        InputError::Read(err)
                    });
                }
            }
        }
        Ok(None)
    }

    /// The whole (remaining) body.
    ///
    /// ```
    /// use http_body_util::Full;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut input = awsgi::Input::new(Full::new(bytes::Bytes::from("{}")), 1024);
    /// assert_eq!(input.read_to_end().await.unwrap(), "{}");
    /// # }
    /// ```
    pub async fn read_to_end(&mut self) -> Result<Bytes, InputError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// The configured limit, in bytes.
    ///
    /// ```
    /// assert_eq!(awsgi::Input::new(http_body_util::Empty::<bytes::Bytes>::new(), 64).limit(), 64);
    /// ```
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("limit", &self.limit)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_within_limit() {
        let mut input = Input::new(http_body_util::Full::new(Bytes::from("hello")), 5);
        assert_eq!(input.read_to_end().await.unwrap(), "hello");
        assert!(input.chunk().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn refuses_past_limit() {
        let mut input = Input::new(http_body_util::Full::new(Bytes::from("hello!")), 5);
        let err = input.read_to_end().await.unwrap_err();
        assert!(matches!(err, InputError::TooLarge { limit: 5 }));
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
