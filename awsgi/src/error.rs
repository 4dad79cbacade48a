//! Errors of the contract: what an application returns, and what the server detects.

use std::fmt;

use http::StatusCode;

use crate::InputError;

/// A boxed error, as carried inside [`Error`].
///
/// ```
/// let boxed: awsgi::BoxError = "not found".into();
/// let err = awsgi::Error::new(boxed);
/// assert_eq!(err.to_string(), "not found");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error an [`Application`](crate::Application) returns, or a body yields.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into it, so `?` works on
/// whatever an application awaits. Before the response is committed the server answers
/// it with an error response (500, or 413 for an over-long `wsgi.input`); after the commit
/// the connection is aborted, so the client never mistakes a cut body for a whole one.
///
/// Like `anyhow::Error`, this type does not itself implement `std::error::Error`; reach the
/// original with [`Error::downcast_ref`].
///
/// ```
/// use awsgi::Error;
///
/// let err: Error = std::io::Error::other("disk on fire").into();
/// assert_eq!(err.to_string(), "disk on fire");
/// assert!(err.downcast_ref::<std::io::Error>().is_some());
/// assert_eq!(err.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
/// ```
pub struct Error {
    inner: BoxError,
}

impl Error {
    /// Wraps any boxed error.
    ///
    /// ```
    /// let err = awsgi::Error::new("a plain message");
    /// assert_eq!(err.to_string(), "a plain message");
    /// ```
    pub fn new(err: impl Into<BoxError>) -> Self {
        Self { inner: err.into() }
    }

    /// An error from a message, for failures that have no error type of their own.
    ///
    /// ```
    /// let err = awsgi::Error::msg("no such widget");
    /// assert_eq!(err.to_string(), "no such widget");
    /// ```
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            inner: message.to_string().into(),
        }
    }

    /// The status the server answers with when this error ends a request before the
    /// response is committed: 413 for a `wsgi.input` over its limit, 400 for a request
    /// body the client broke off or a [`RequestError`], 500 for everything else.
    ///
    /// ```
    /// use awsgi::{Error, InputError};
    ///
    /// let err = Error::from(InputError::TooLarge { limit: 1024 });
    /// assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    /// assert_eq!(Error::msg("bug").status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    /// ```
    pub fn status(&self) -> StatusCode {
        if let Some(input) = self.downcast_ref::<InputError>() {
            input.status()
        } else if self.downcast_ref::<RequestError>().is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }

    /// The original error, if it is an `E`.
    ///
    /// ```
    /// let err = awsgi::Error::from(std::fmt::Error);
    /// assert!(err.downcast_ref::<std::fmt::Error>().is_some());
    /// ```
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.inner.downcast_ref::<E>()
    }

    /// The boxed original error.
    ///
    /// ```
    /// let boxed: awsgi::BoxError = awsgi::Error::msg("gone").into_inner();
    /// assert_eq!(boxed.to_string(), "gone");
    /// ```
    pub fn into_inner(self) -> BoxError {
        self.inner
    }
}

impl<E> From<E> for Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        Self {
            inner: Box::new(err),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)?;
        let mut source = self.inner.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<Error> for BoxError {
    fn from(err: Error) -> Self {
        err.into_inner()
    }
}

/// A request the server refuses before the application runs (answered 400 through the
/// layer's error responder), because no honest `environ` can be built from it.
///
/// ```
/// use awsgi::{Error, RequestError};
///
/// let err = Error::from(RequestError::InvalidPathParam { detail: "Invalid UTF-8 in `id`".into() });
/// assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A path parameter the router matched does not percent-decode to UTF-8 (`/notes/%FF`).
    /// Passing the application no routing arguments instead would make it serve another
    /// route's meaning (the collection for an item), so the request is refused.
    #[error("a path parameter is not valid percent-encoded UTF-8")]
    InvalidPathParam {
        /// The router's description, for the log.
        detail: String,
    },
}

/// A breach of the contract that the server detects on the application's side.
///
/// These are the application's bugs. The client sees a plain 500 (or an aborted connection
/// after the commit); the detail goes to the log.
///
/// ```
/// use awsgi::{ContractError, Error};
///
/// let err = Error::from(ContractError::NotStarted);
/// assert!(matches!(err.downcast_ref::<ContractError>(), Some(ContractError::NotStarted)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// The body produced data, or ended, before `start_response` was called.
    #[error("the body started before start_response was called")]
    NotStarted,
    /// A `start_response` call was rejected and the application carried on regardless.
    #[error("start_response was rejected earlier: {0}")]
    Rejected(String),
    /// The declared `Content-Length` is not a number.
    #[error("invalid Content-Length header {0:?}")]
    InvalidContentLength(String),
    /// The body ended before the declared `Content-Length` was sent.
    #[error("the body ended after {sent} of {declared} declared bytes")]
    ShortBody {
        /// Bytes the `Content-Length` header promised.
        declared: u64,
        /// Bytes the body produced.
        sent: u64,
    },
    /// The application panicked.
    #[error("the application panicked: {0}")]
    Panicked(String),
}
