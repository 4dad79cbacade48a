//! ETags, `If-Match`/`If-None-Match`, and the opaque pagination cursor.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ApiError;

/// The ETag of a note version: a strong validator.
pub fn etag(version: i32) -> String {
    format!("\"v{version}\"")
}

/// The version an `If-Match` value names: `Some(None)` for `*` (any), `Some(Some(v))` for
/// one ETag, `None` when it names no version of ours.
pub fn if_match_version(header: &str) -> Option<Option<i32>> {
    let header = header.trim();
    if header == "*" {
        return Some(None);
    }
    parse_etag(header).map(Some)
}

/// Whether an `If-None-Match` value matches the current version.
pub fn none_match(header: &str, version: i32) -> bool {
    header.trim() == "*"
        || header
            .split(',')
            .filter_map(|tag| parse_etag(tag.trim().trim_start_matches("W/")))
            .any(|v| v == version)
}

fn parse_etag(tag: &str) -> Option<i32> {
    tag.strip_prefix("\"v")?.strip_suffix('"')?.parse().ok()
}

/// The opaque cursor for "after note `id`".
pub fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("n1:{id}"))
}

/// The note id a cursor stands for; a cursor we did not make is a 400.
pub fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::bad_request("cursor is not one this service returned");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    text.strip_prefix("n1:")
        .and_then(|id| id.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_round_trip() {
        assert_eq!(if_match_version(&etag(7)), Some(Some(7)));
        assert_eq!(if_match_version("*"), Some(None));
        assert_eq!(if_match_version("\"x\""), None);
        assert!(none_match("\"v1\", W/\"v7\"", 7));
        assert!(!none_match("\"v1\"", 7));
    }

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        for bad in ["", "!!", "bjE6", "eHg6MQ", &URL_SAFE_NO_PAD.encode("n1:-3")] {
            assert_eq!(decode_cursor(bad).unwrap_err().status(), 400, "{bad}");
        }
    }
}
