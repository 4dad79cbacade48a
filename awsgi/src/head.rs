//! Head validation: the status and header rules `start_response` applies (PEP 3333,
//! RFC 9110), and the [`Head`] it keeps.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// Why a `start_response` call was refused.
///
/// Each of these is the application's bug. The call returns the error so the application
/// can see it; if the application carries on regardless, the server still answers a plain
/// 500 and logs this detail, never sending it to the client.
///
/// ```
/// use awsgi::{Body, Environ, Error, StartResponse, StartResponseError};
///
/// async fn app(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     let refused = start_response.start("200 OK", [("Connection", "close")]).unwrap_err();
///     assert!(matches!(refused, StartResponseError::HopByHop(_)));
///     Err(refused.into()) // the server answers a plain 500 either way
/// }
/// # let _ = awsgi::AwsgiService::new(app);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartResponseError {
    /// The status is not `"NNN Reason"`.
    #[error("invalid status {0:?}: expected \"NNN Reason\", e.g. \"200 OK\"")]
    InvalidStatus(String),
    /// A header name is not an HTTP token.
    #[error("invalid header name {0:?}")]
    InvalidHeaderName(String),
    /// A header value holds CR, LF or another control byte.
    #[error("invalid value for header {0:?}: control characters are not allowed")]
    InvalidHeaderValue(String),
    /// A hop-by-hop header, which belongs to the server, not the application.
    #[error("hop-by-hop header {0:?} is the server's to set")]
    HopByHop(String),
    /// `start_response` was called a second time without `exc_info`.
    #[error("start_response called twice without exc_info")]
    AlreadyStarted,
}

/// The response head an application has chosen.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
}

/// Headers a response head has room for beyond the application's own.
pub(crate) const RESPONSE_HEADROOM: usize = 4;

pub(crate) fn parse_head<I, K, V>(status: &str, headers: I) -> Result<Head, StartResponseError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let status = parse_status(status)?;
    let headers = headers.into_iter();
    // Room for what the server's layers add to every response (`Content-Length`, a request
    // id, …): a map sized to the application's headers alone grows (a new table, every
    // entry hashed again) on its way out.
    let mut map = HeaderMap::with_capacity(headers.size_hint().0 + RESPONSE_HEADROOM);
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        let header = match well_known_name(name) {
            Some(header) => header,
            None => {
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| StartResponseError::InvalidHeaderName(name.to_owned()))?;
                if is_hop_by_hop(&header) {
                    return Err(StartResponseError::HopByHop(name.to_owned()));
                }
                header
            }
        };
        let value = match well_known(value) {
            Some(value) => value,
            None => HeaderValue::from_bytes(value.as_bytes())
                .map_err(|_| StartResponseError::InvalidHeaderValue(name.to_owned()))?,
        };
        map.append(header, value);
    }
    Ok(Head {
        status,
        headers: map,
    })
}

/// The names applications send most, spelled as they usually are: the constant, without
/// `HeaderName::from_bytes`' case folding and table search, and without the hop-by-hop
/// check (none of them is). Any other spelling takes the general path.
fn well_known_name(name: &str) -> Option<HeaderName> {
    use http::header;
    Some(match name {
        "Content-Type" | "content-type" => header::CONTENT_TYPE,
        "Content-Length" | "content-length" => header::CONTENT_LENGTH,
        "Server" | "server" => header::SERVER,
        "Cache-Control" | "cache-control" => header::CACHE_CONTROL,
        "Location" | "location" => header::LOCATION,
        "Set-Cookie" | "set-cookie" => header::SET_COOKIE,
        "ETag" | "etag" => header::ETAG,
        "Last-Modified" | "last-modified" => header::LAST_MODIFIED,
        "Vary" | "vary" => header::VARY,
        "Date" | "date" => header::DATE,
        "X-Content-Type-Options" | "x-content-type-options" => header::X_CONTENT_TYPE_OPTIONS,
        _ => return None,
    })
}

/// The common values, as static `HeaderValue`s: sent without copying them per response.
/// Each is a constant, checked once at compile time: `HeaderValue::from_static` called at
/// run time checks its bytes on every call.
fn well_known(value: &str) -> Option<HeaderValue> {
    macro_rules! known {
        ($value:expr; $($text:literal),* $(,)?) => {
            match $value {
                $($text => {
                    const VALUE: HeaderValue = HeaderValue::from_static($text);
                    VALUE
                })*
                _ => return None,
            }
        };
    }
    Some(known!(value;
        "application/json",
        "application/json; charset=utf-8",
        "application/problem+json",
        "application/octet-stream",
        "text/plain",
        "text/plain; charset=utf-8",
        "text/html",
        "text/html; charset=utf-8",
        "text/event-stream",
        "no-cache",
        "no-store",
        "nosniff",
    ))
}

fn parse_status(status: &str) -> Result<StatusCode, StartResponseError> {
    if status == "200 OK" {
        return Ok(StatusCode::OK);
    }
    let invalid = || StartResponseError::InvalidStatus(status.to_owned());
    let (code, reason) = status.split_once(' ').ok_or_else(invalid)?;
    let well_formed = code.len() == 3
        && code.bytes().all(|b| b.is_ascii_digit())
        && !reason.is_empty()
        && reason.trim() == reason
        && !reason.bytes().any(|b| b.is_ascii_control());
    if !well_formed {
        return Err(invalid());
    }
    StatusCode::from_bytes(code.as_bytes())
        .ok()
        .filter(|s| s.as_u16() >= 200)
        .ok_or_else(invalid)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1, PEP 3333): the server's, not the application's.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "trailers"
    ) || name.as_str().starts_with("proxy-")
}

/// A `Content-Length` value as a number of bytes; `None` if it is not one. The one parser
/// of the header in this crate: request and response heads, the environ, the Validator.
pub(crate) fn content_length(value: &HeaderValue) -> Option<u64> {
    value.to_str().ok().and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path names exactly what the general path would, and nothing hop-by-hop.
    #[test]
    fn well_known_names_match_the_general_parse() {
        for name in [
            "Content-Type",
            "content-type",
            "Content-Length",
            "content-length",
            "Server",
            "server",
            "Cache-Control",
            "cache-control",
            "Location",
            "location",
            "Set-Cookie",
            "set-cookie",
            "ETag",
            "etag",
            "Last-Modified",
            "last-modified",
            "Vary",
            "vary",
            "Date",
            "date",
            "X-Content-Type-Options",
            "x-content-type-options",
        ] {
            let fast = well_known_name(name).expect("a well-known spelling");
            assert_eq!(
                fast,
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "{name}"
            );
            assert!(!is_hop_by_hop(&fast), "{name}");
        }
        assert_eq!(well_known_name("CONTENT-TYPE"), None);
        for value in ["application/json", "text/html; charset=utf-8", "nosniff"] {
            assert_eq!(well_known(value).expect("a well-known value"), value);
        }
        assert_eq!(well_known("pgbridge"), None);
        assert_eq!(parse_status("200 OK"), Ok(StatusCode::OK));
    }

    /// A head has room for the server's own headers: adding them does not grow the map.
    #[test]
    fn a_head_has_room_for_the_servers_headers() {
        let head = parse_head(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("ETag", "\"1\""),
                ("Cache-Control", "no-cache"),
                ("Pgbridge-Served-By", "primary"),
            ],
        )
        .unwrap();
        assert!(head.headers.capacity() >= head.headers.len() + RESPONSE_HEADROOM);
    }
}
