//! Reading a notes request: the note id, query filters, the body's media type and the
//! `Idempotency-Key`, each checked into a clear 4xx.

use crate::error::ApiError;
use awsgi::Environ;

use super::input;

/// A text filter from the query string: absent or empty is none; U+0000 is a 400.
pub(super) fn text_query(environ: &Environ, name: &str) -> Result<Option<String>, ApiError> {
    match environ.query(name) {
        Some(value) if input::has_nul(&value) => Err(ApiError::bad_request(format!(
            "{name} {}",
            input::NUL_MESSAGE
        ))),
        value => Ok(value.filter(|v| !v.is_empty())),
    }
}

pub(super) fn note_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found(format!("no note with id {raw:?}")))
}

pub(super) fn idempotency_key(environ: &Environ) -> Result<Option<String>, ApiError> {
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
