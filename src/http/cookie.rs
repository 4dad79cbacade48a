//! Reading the request's `Cookie` headers (RFC 6265 §5.4): `name=value` pairs separated by
//! `;`, in one or several headers. The one parser the service has: the session cookie
//! ([`crate::auth`]) and the read-your-writes cookie ([`crate::request::consistency`]) both go
//! through it.
//!
//! ```
//! use http::HeaderMap;
//! use pgbridge::http::cookie;
//!
//! let mut headers = HeaderMap::new();
//! headers.append("cookie", "a=1; b=\"2\"".parse().unwrap());
//! headers.append("cookie", "a=3".parse().unwrap());
//! assert_eq!(cookie::values(&headers, "a").collect::<Vec<_>>(), ["1", "3"]);
//! assert_eq!(cookie::first(&headers, "b"), Some("2"));
//! assert_eq!(cookie::first(&headers, "c"), None);
//! ```

use http::HeaderMap;
use http::header::COOKIE;

/// Every value of the cookie `name` the request carries, in the order sent: names match
/// exactly (case-sensitive), whitespace around pairs is ignored, and a value in double
/// quotes is given without them. Headers that are not visible ASCII and pairs without `=`
/// are skipped.
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(k, _)| k.trim() == name)
        .map(|(_, v)| unquote(v.trim()))
}

/// The first value of the cookie `name`, if the request carries it ([`values`]).
pub fn first<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    values(headers, name).next()
}

/// `"v"` as `v` (RFC 6265's quoted cookie-value); anything else as it is.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(COOKIE, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn pairs_across_headers_in_order() {
        let h = headers(&["a=1;b=2", " a = 3 ; c=4"]);
        assert_eq!(values(&h, "a").collect::<Vec<_>>(), ["1", "3"]);
        assert_eq!(first(&h, "c"), Some("4"));
    }

    #[test]
    fn names_are_exact_and_quotes_are_removed() {
        let h = headers(&["Session=x; session=\"y\"; sessionx=z"]);
        assert_eq!(values(&h, "session").collect::<Vec<_>>(), ["y"]);
        assert_eq!(first(&h, "Session"), Some("x"));
        assert_eq!(first(&h, "sess"), None);
    }

    #[test]
    fn malformed_pairs_and_lone_quotes_are_handled() {
        let h = headers(&["novalue; ; =v; a=\"; b=="]);
        assert_eq!(first(&h, "novalue"), None);
        assert_eq!(first(&h, ""), Some("v"));
        assert_eq!(first(&h, "a"), Some("\""));
        assert_eq!(first(&h, "b"), Some("="));
        assert_eq!(first(&HeaderMap::new(), "a"), None);
    }

    #[test]
    fn values_keep_equals_signs() {
        let h = headers(&["t=abc==; u=a=b"]);
        assert_eq!(first(&h, "t"), Some("abc=="));
        assert_eq!(first(&h, "u"), Some("a=b"));
    }
}
