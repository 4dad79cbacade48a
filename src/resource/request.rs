//! Reading a resource request: the item id, text filters and the `Idempotency-Key`, each
//! checked into a clear 4xx.

use crate::error::ApiError;
use awsgi::Environ;

use super::input;

/// A text filter from the query string: absent or empty is none; U+0000 is a 400.
///
/// ```
/// use pgbridge::awsgi::Environ;
/// use pgbridge::resource::request::text_query;
///
/// let environ = Environ::builder(http::Request::get("/notes?tag=a&q=").body(()).unwrap()).build();
/// assert_eq!(text_query(&environ, "tag").unwrap().as_deref(), Some("a"));
/// assert_eq!(text_query(&environ, "q").unwrap(), None);
/// ```
pub fn text_query(environ: &Environ, name: &str) -> Result<Option<String>, ApiError> {
    match environ.query(name) {
        Some(value) if input::has_nul(&value) => Err(ApiError::bad_request(format!(
            "{name} {}",
            input::NUL_MESSAGE
        ))),
        value => Ok(value.filter(|v| !v.is_empty())),
    }
}

/// The item id in a path: a positive integer, else a 404 naming the `noun`.
///
/// ```
/// use pgbridge::resource::request::item_id;
///
/// assert_eq!(item_id("7", "note").unwrap(), 7);
/// assert_eq!(item_id("x", "note").unwrap_err().status(), 404);
/// ```
pub fn item_id(raw: &str, noun: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found(format!("no {noun} with id {raw:?}")))
}

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters, else a 400.
///
/// ```
/// use pgbridge::awsgi::Environ;
/// use pgbridge::resource::request::idempotency_key;
///
/// let request = http::Request::post("/notes").header("Idempotency-Key", "k1").body(()).unwrap();
/// assert_eq!(idempotency_key(&Environ::builder(request).build()).unwrap().as_deref(), Some("k1"));
/// ```
pub fn idempotency_key(environ: &Environ) -> Result<Option<String>, ApiError> {
    let Some(value) = environ.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key.to_owned())),
        _ => Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}
