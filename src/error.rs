//! The service's error type and its one JSON shape at the HTTP edge:
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::db::DbError;
use awsgi::InputError;

/// The one JSON error shape: `{"error": {"code": code, "message": message}}`.
///
/// [`ApiError::body`] starts from it, and so does every error a layer answers on its own
/// ([`error_response`]).
///
/// ```
/// let body = pgbridge::error::error_body("not_found", "no route for this path");
/// assert_eq!(
///     body.to_string(),
///     r#"{"error":{"code":"not_found","message":"no route for this path"}}"#
/// );
/// ```
pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "code": code, "message": message } })
}

/// A response with `status` and the [one JSON error shape](error_body), for errors that
/// are not an [`ApiError`] (a layer's own refusal, with a code of its own).
///
/// ```
/// use http::StatusCode;
///
/// let response = pgbridge::error::error_response(
///     StatusCode::SERVICE_UNAVAILABLE,
///     "draining",
///     "this replica is shutting down; retry",
/// );
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// ```
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(error_body(code, message))).into_response()
}

/// One field that failed validation, for 422 answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name in the request.
    pub field: String,
    /// What is wrong with it, for the person who sent it.
    pub message: String,
}

/// Everything the service answers with an error status.
///
/// Messages are written for the client; internal detail (SQL, driver text) is logged and
/// never put in a response.
///
/// ```
/// use pgbridge::error::ApiError;
///
/// let err = ApiError::bad_request("delay must be a number between 0 and 10");
/// assert_eq!(err.status(), 400);
/// assert_eq!(err.code(), "bad_request");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not; `allow` lists those that do.
    #[error("this path allows only {allow}")]
    MethodNotAllowed {
        /// The `Allow` header.
        allow: &'static str,
    },
    /// 409: the request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 412: `If-Match` names a version that is no longer current.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: the request is well-formed but its fields are invalid.
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    /// 428: the request must be conditional.
    #[error("{0}")]
    PreconditionRequired(String),
    /// 503: the database is unavailable or busy; retry shortly.
    #[error("the database is unavailable; retry shortly")]
    Unavailable,
    /// 401: no credentials, or not valid ones; answered with `WWW-Authenticate: Bearer`
    /// (with `error="invalid_token"` when a token was sent but is unknown, expired or
    /// revoked, as RFC 6750 says).
    #[error("{message}")]
    Unauthorized {
        /// For the client.
        message: String,
        /// A token was sent and refused.
        invalid_token: bool,
    },
    /// 429: too many failed attempts; `Retry-After` says when to try again.
    #[error("too many failed attempts; retry in {retry_after} seconds")]
    TooManyRequests {
        /// Seconds until the window ends.
        retry_after: u64,
    },
    /// 503: a limit of the service is reached (e.g. open event streams); retry after
    /// `retry_after_secs`.
    #[error("{message}")]
    Overloaded {
        /// What is full.
        message: String,
        /// The `Retry-After` header, in seconds.
        retry_after_secs: u32,
    },
    /// 429: the client has its most of something open at once (long requests from its
    /// address, event streams of its account); retry after `retry_after_secs`, or once one
    /// ends.
    #[error("{message}")]
    TooManyOpen {
        /// What the client has too many of.
        message: String,
        /// The `Retry-After` header, in seconds.
        retry_after_secs: u32,
    },
    /// 504: a statement ran past the database's statement timeout (or was cancelled).
    /// No `Retry-After`: the same request would most likely take as long again.
    #[error("the database did not answer in time")]
    DatabaseTimeout,
    /// 500: a bug. The detail is logged where it happened.
    #[error("internal server error")]
    Internal,
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// A 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            Self::Unavailable | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::DatabaseTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::TooManyRequests { .. } | Self::TooManyOpen { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PreconditionFailed(_) => "precondition_failed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Invalid(_) => "invalid_fields",
            Self::PreconditionRequired(_) => "precondition_required",
            Self::Unavailable => "database_unavailable",
            Self::Unauthorized { .. } => "unauthorized",
            Self::TooManyRequests { .. } => "too_many_requests",
            Self::TooManyOpen { .. } => "too_many_open",
            Self::Overloaded { .. } => "overloaded",
            Self::DatabaseTimeout => "database_timeout",
            Self::Internal => "internal",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = error_body(self.code(), &self.to_string());
        if let Self::Invalid(fields) = self {
            body["error"]["fields"] = serde_json::json!(fields);
        }
        body
    }

    /// The response headers besides `Content-Type`.
    fn extra_headers(&self) -> Option<(header::HeaderName, HeaderValue)> {
        match self {
            Self::Unavailable => Some((header::RETRY_AFTER, HeaderValue::from_static("1"))),
            Self::Overloaded {
                retry_after_secs, ..
            }
            | Self::TooManyOpen {
                retry_after_secs, ..
            } => Some((header::RETRY_AFTER, HeaderValue::from(*retry_after_secs))),
            Self::MethodNotAllowed { allow } => {
                Some((header::ALLOW, HeaderValue::from_static(allow)))
            }
            Self::Unauthorized { invalid_token, .. } => Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(if *invalid_token {
                    "Bearer realm=\"pgbridge\", error=\"invalid_token\""
                } else {
                    "Bearer realm=\"pgbridge\""
                }),
            )),
            Self::TooManyRequests { retry_after } => {
                Some((header::RETRY_AFTER, HeaderValue::from(*retry_after)))
            }
            _ => None,
        }
    }

    /// Answers through the contract: `start_response` (with `exc_info` if a response was
    /// already chosen but not sent) and the JSON body.
    pub fn respond(
        self,
        start_response: &awsgi::StartResponse,
    ) -> Result<awsgi::Body, awsgi::Error> {
        let status = self.status();
        let status_line = format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error")
        );
        let mut headers = vec![(
            String::from("Content-Type"),
            String::from("application/json"),
        )];
        if let Some((name, value)) = self.extra_headers() {
            headers.push((name.to_string(), value.to_str().unwrap_or_default().into()));
        }
        let body = self.body().to_string();
        if start_response.is_started() {
            start_response.start_with_exc_info(&status_line, headers, self.into())?;
        } else {
            start_response.start(&status_line, headers)?;
        }
        Ok(awsgi::Body::from(body))
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match &err {
            DbError::Unavailable(_)
            | DbError::ReadOnly(_)
            | DbError::ConnectionLost(_)
            | DbError::Connect(_) => {
                crate::unavailable_log::warn_error("database unavailable", &err);
                Self::Unavailable
            }
            DbError::Timeout(_) => {
                tracing::warn!(error = %err, "statement timed out");
                Self::DatabaseTimeout
            }
            DbError::Conflict { constraint, .. } => {
                tracing::info!(error = %err, "write refused by a constraint");
                Self::Conflict(format!(
                    "the write conflicts with existing data ({constraint})"
                ))
            }
            DbError::Query(_) | DbError::Config(_) => {
                tracing::error!(error = %err, "database error");
                Self::Internal
            }
        }
    }
}

impl From<InputError> for ApiError {
    fn from(err: InputError) -> Self {
        match err {
            InputError::TooLarge { limit } => Self::PayloadTooLarge { limit },
            other => Self::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if let Some((name, value)) = self.extra_headers() {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// The [`AwsgiLayer`](awsgi::AwsgiLayer) error responder: any error an application returns
/// before its response started, in the JSON shape. Known errors keep their meaning
/// ([`ApiError`], [`DbError`], [`InputError`]); anything else is a 500 with no detail.
pub fn awsgi_error_response(err: &awsgi::Error) -> Response {
    let api = if let Some(api) = err.downcast_ref::<ApiError>() {
        api.clone()
    } else if let Some(input) = err.downcast_ref::<InputError>() {
        match input {
            InputError::TooLarge { limit } => ApiError::PayloadTooLarge { limit: *limit },
            other => ApiError::BadRequest(other.to_string()),
        }
    } else if let Some(request) = err.downcast_ref::<awsgi::RequestError>() {
        ApiError::BadRequest(request.to_string())
    } else if let Some(db) = err.downcast_ref::<DbError>() {
        if matches!(db, DbError::Timeout(_)) {
            ApiError::DatabaseTimeout
        } else if db.is_unavailable() {
            // Expected while Postgres is down or failing over: one WARN now and then, not
            // a line per request (the contract's layer logs a 503 at DEBUG).
            crate::unavailable_log::warn_error("database unavailable", db);
            ApiError::Unavailable
        } else if matches!(db, DbError::Conflict { .. }) {
            ApiError::Conflict("the write conflicts with existing data".into())
        } else {
            ApiError::Internal
        }
    } else {
        ApiError::Internal
    };
    api.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shape_for_every_error() {
        let errors = [
            ApiError::bad_request("x"),
            ApiError::not_found("x"),
            ApiError::Unavailable,
            ApiError::Invalid(vec![FieldError {
                field: "title".into(),
                message: "must not be empty".into(),
            }]),
        ];
        for err in errors {
            let body = err.body();
            assert!(body["error"]["code"].is_string(), "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
        }
    }

    #[test]
    fn unknown_errors_leak_nothing() {
        let err = awsgi::Error::msg("password=hunter2 in SQL");
        let response = awsgi_error_response(&err);
        assert_eq!(response.status(), 500);
    }

    #[test]
    fn unavailable_says_when_to_retry() {
        let err = awsgi::Error::from(DbError::ReadOnly("cannot execute INSERT".into()));
        let response = awsgi_error_response(&err);
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = ApiError::Unavailable.into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn a_statement_timeout_is_a_504_with_no_retry_after() {
        let response = ApiError::DatabaseTimeout.into_response();
        assert_eq!(response.status(), 504);
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
    }
}
