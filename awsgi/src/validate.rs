//! [`Validator`]: `wsgiref.validate` for this contract — checks both sides at runtime.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{StatusCode, header};

use crate::head::content_length;
use crate::{Application, Body, Environ, Error, StartResponse};

/// A breach of the contract found by the [`Validator`].
///
/// ```
/// let request = http::Request::get("/").body(()).unwrap();
/// let environ = awsgi::Environ::builder(request).build();
/// assert_eq!(awsgi::check_environ(&environ), Ok(()));
/// let err = awsgi::ValidationError::Response("no Content-Type".into());
/// assert_eq!(err.to_string(), "invalid response: no Content-Type");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The server built an environ that breaks PEP 3333.
    #[error("invalid environ: {0}")]
    Environ(String),
    /// The application's response breaks PEP 3333 or HTTP.
    #[error("invalid response: {0}")]
    Response(String),
}

/// An [`Application`] that wraps another and checks both sides of the contract, as
/// Python's `wsgiref.validate.validator` does.
///
/// On the server's side it checks the environ (`SCRIPT_NAME`/`PATH_INFO` shape, no
/// `HTTP_CONTENT_TYPE`, a known `wsgi.url_scheme`, …). On the application's side it checks
/// that `start_response` was called before the body's first output, that the response
/// carries a `Content-Type` unless its status forbids a body (1xx, 204, 304 must not have
/// one), that no header is named `Status` or ends in `-`/`_`, and that the body matches a
/// declared `Content-Length`. A breach is logged at `ERROR` (target `wsgi.validate`) and
/// fails the request: 500 before the commit, an aborted connection after it.
///
/// A whole body ([`Body::from`] bytes) passes through unchanged once checked, so a
/// validated response is framed as production frames it: with its exact `Content-Length`.
///
/// Run it in tests and development; it costs a little per chunk.
///
/// ```
/// use awsgi::{AwsgiService, Body, Environ, Error, StartResponse, Validator};
/// use tower::ServiceExt;
///
/// async fn forgets_content_type(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     start_response.start("200 OK", Vec::<(String, String)>::new())?;
///     Ok(Body::from("what is this?"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = AwsgiService::new(Validator::new(forgets_content_type));
/// let request = http::Request::get("/").body(axum::body::Body::empty()).unwrap();
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 500);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Validator<A> {
    app: A,
}

impl<A: Application> Validator<A> {
    /// Wraps `app`.
    ///
    /// ```
    /// use awsgi::{AwsgiLayer, Body, Environ, Error, StartResponse, Validator};
    /// use tower::Layer;
    ///
    /// async fn app(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
    ///     Ok(Body::from("checked\n"))
    /// }
    /// let service = AwsgiLayer::new().layer(Validator::new(app));
    /// # let _ = service;
    /// ```
    pub fn new(app: A) -> Self {
        Self { app }
    }
}

impl<A: Application> Application for Validator<A> {
    async fn call(&self, environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
        check_environ(&environ).map_err(report)?;
        start_response.retain_head();
        let body = self.app.call(environ, start_response.clone()).await?;
        if let Some(len) = body.exact_len() {
            // A whole body: check it now and hand it on as it is, so its exact length — and
            // so the framing production sends (`Content-Length`, not chunks) — survives.
            // A body that breaks its declared length is left to the streaming checks below,
            // which fail it at the same point of the exchange as before.
            let head = start_response.head().ok_or_else(|| {
                report(ValidationError::Response(
                    "the body started before start_response was called".into(),
                ))
            })?;
            let declared = check_head(head.status, &head.headers).map_err(report)?;
            if declared.is_none_or(|declared| declared == len) {
                return Ok(body);
            }
        }
        Ok(Body::from_stream(CheckedBody {
            body,
            start_response,
            checked_head: false,
            declared: None,
            sent: 0,
        }))
    }
}

fn report(err: ValidationError) -> Error {
    tracing::error!(target: "wsgi.validate", error = %err, "contract breach");
    err.into()
}

/// The environ checks of `wsgiref.validate.check_environ`, on the typed environ.
///
/// ```
/// let request = http::Request::get("/items").body(()).unwrap();
/// let environ = awsgi::Environ::builder(request).build();
/// assert_eq!(awsgi::check_environ(&environ), Ok(()));
/// ```
pub fn check_environ(environ: &Environ) -> Result<(), ValidationError> {
    let fail = |msg: String| Err(ValidationError::Environ(msg));
    let (script, path) = (environ.script_name(), environ.path_info());
    if !script.is_empty() && !script.starts_with('/') {
        return fail(format!("SCRIPT_NAME {script:?} doesn't start with '/'"));
    }
    if script == "/" {
        return fail("SCRIPT_NAME cannot be '/'; it should be empty instead".into());
    }
    if !path.is_empty() && !path.starts_with('/') {
        return fail(format!("PATH_INFO {path:?} doesn't start with '/'"));
    }
    if script.is_empty() && path.is_empty() {
        return fail("one of SCRIPT_NAME or PATH_INFO is required".into());
    }
    for required in [
        "REQUEST_METHOD",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "wsgi.version",
        "wsgi.url_scheme",
    ] {
        if environ.get(required).is_none_or(|v| v.is_empty()) {
            return fail(format!("{required} is missing"));
        }
    }
    if !matches!(environ.url_scheme(), "http" | "https") {
        return fail(format!(
            "wsgi.url_scheme {:?} is unknown",
            environ.url_scheme()
        ));
    }
    if !environ
        .get("SERVER_PROTOCOL")
        .is_some_and(|p| p.starts_with("HTTP/"))
    {
        return fail("SERVER_PROTOCOL is not HTTP/x.y".into());
    }
    for forbidden in ["HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"] {
        if environ.get(forbidden).is_some() {
            return fail(format!(
                "{forbidden} must not be set; use {}",
                &forbidden[5..]
            ));
        }
    }
    if let Some(length) = environ.get("CONTENT_LENGTH") {
        if length.parse::<u64>().is_err() {
            return fail(format!("CONTENT_LENGTH {length:?} is not a number"));
        }
    }
    Ok(())
}

/// The response-head checks of `wsgiref.validate.check_headers`/`check_content_type`.
fn check_head(
    status: StatusCode,
    headers: &http::HeaderMap,
) -> Result<Option<u64>, ValidationError> {
    let fail = |msg: String| Err(ValidationError::Response(msg));
    for name in headers.keys() {
        if name == "status" {
            return fail("the Status header cannot be used; it conflicts with CGI".into());
        }
        if name.as_str().ends_with(['-', '_']) {
            return fail(format!("header name {name:?} ends with '-' or '_'"));
        }
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let has_type = headers.contains_key(header::CONTENT_TYPE);
    if bodiless && has_type {
        return fail(format!("a {status} response must not have a Content-Type"));
    }
    if !bodiless && !has_type {
        return fail(format!("a {status} response needs a Content-Type"));
    }
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => content_length(value).map(Some).ok_or_else(|| {
            ValidationError::Response(format!("Content-Length {value:?} is not a number"))
        }),
    }
}

struct CheckedBody {
    body: Body,
    start_response: StartResponse,
    checked_head: bool,
    declared: Option<u64>,
    sent: u64,
}

impl CheckedBody {
    fn check_head(&mut self) -> Result<(), ValidationError> {
        if self.checked_head {
            return Ok(());
        }
        self.checked_head = true;
        let head = self.start_response.head().ok_or_else(|| {
            ValidationError::Response("the body started before start_response was called".into())
        })?;
        self.declared = check_head(head.status, &head.headers)?;
        Ok(())
    }
}

impl Stream for CheckedBody {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = match this.body.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(next) => next,
        };
        if let Some(Ok(chunk)) = &next {
            if chunk.is_empty() {
                return Poll::Ready(Some(Ok(Bytes::new())));
            }
        }
        if !matches!(next, Some(Err(_))) {
            if let Err(err) = this.check_head() {
                return Poll::Ready(Some(Err(report(err))));
            }
        }
        match next {
            Some(Ok(chunk)) => {
                this.sent += chunk.len() as u64;
                if let Some(declared) = this.declared.filter(|d| this.sent > *d) {
                    let err = ValidationError::Response(format!(
                        "body is longer than its Content-Length of {declared}"
                    ));
                    return Poll::Ready(Some(Err(report(err))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            None => match this.declared.filter(|d| this.sent < *d) {
                Some(declared) => {
                    let err = ValidationError::Response(format!(
                        "body ended after {} of its {declared} declared bytes",
                        this.sent
                    ));
                    Poll::Ready(Some(Err(report(err))))
                }
                None => Poll::Ready(None),
            },
            Some(Err(err)) => Poll::Ready(Some(Err(err))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environ(uri: &str) -> Environ {
        Environ::builder(http::Request::get(uri).body(()).unwrap()).build()
    }

    #[test]
    fn a_plain_environ_passes() {
        assert_eq!(check_environ(&environ("/x?y=1")), Ok(()));
    }

    #[test]
    fn head_rules() {
        let typed = |ty: Option<&str>| {
            let mut h = http::HeaderMap::new();
            if let Some(ty) = ty {
                h.insert(header::CONTENT_TYPE, ty.parse().unwrap());
            }
            h
        };
        assert!(check_head(StatusCode::OK, &typed(Some("text/plain"))).is_ok());
        assert!(check_head(StatusCode::OK, &typed(None)).is_err());
        assert!(check_head(StatusCode::NO_CONTENT, &typed(None)).is_ok());
        assert!(check_head(StatusCode::NO_CONTENT, &typed(Some("text/plain"))).is_err());
        assert!(check_head(StatusCode::NOT_MODIFIED, &typed(Some("text/plain"))).is_err());
        let mut h = typed(Some("text/plain"));
        h.insert("x-bad-", "1".parse().unwrap());
        assert!(check_head(StatusCode::OK, &h).is_err());
        let mut h = typed(Some("text/plain"));
        h.insert("status", "200".parse().unwrap());
        assert!(check_head(StatusCode::OK, &h).is_err());
    }
}
