//! libpq's TLS parameters in a connection string: taken out of a URL's query or a
//! key=value string before tokio-postgres parses it ([`split_tls_params`]), and added
//! where the string has none ([`with_defaults`], how `PGSSLMODE`/`PGSSLROOTCERT` apply).

use super::ConnectError;

/// The libpq parameters taken out of the URL before tokio-postgres parses it.
const TLS_PARAMS: [&str; 2] = ["sslmode", "sslrootcert"];

/// libpq TLS parameters this crate does not implement: refused with a clear message rather
/// than tokio-postgres' "invalid connection string".
const UNSUPPORTED: [&str; 5] = ["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

/// `url` with `sslmode` and `sslrootcert` added where it has none — how `PGSSLMODE` and
/// `PGSSLROOTCERT` apply, as in libpq: the URL wins.
///
/// ```
/// use pgbridge::db::connect::with_defaults;
///
/// let url = with_defaults("postgres://app@db/app", Some("verify-full"), Some("/ca dir/ca.pem"));
/// assert_eq!(url, "postgres://app@db/app?sslmode=verify-full&sslrootcert=/ca%20dir/ca.pem");
/// let url = with_defaults("postgres://app@db/app?sslmode=disable", Some("require"), None);
/// assert_eq!(url, "postgres://app@db/app?sslmode=disable");
/// ```
pub fn with_defaults(url: &str, sslmode: Option<&str>, sslrootcert: Option<&str>) -> String {
    let present: Vec<String> = match split_tls_params(url) {
        Ok((_, params)) => params.into_iter().map(|(key, _)| key).collect(),
        // Unparseable: leave it for `parse` to report.
        Err(_) => return url.to_owned(),
    };
    let mut url = url.to_owned();
    let is_uri = is_uri(&url);
    for (key, value) in [("sslmode", sslmode), ("sslrootcert", sslrootcert)] {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            continue;
        };
        if present.iter().any(|k| k == key) {
            continue;
        }
        if is_uri {
            let separator = if url.contains('?') { '&' } else { '?' };
            let value = percent_encoding::utf8_percent_encode(value, QUERY_VALUE);
            url = format!("{url}{separator}{key}={value}");
        } else {
            let value = value.replace('\\', r"\\").replace('\'', r"\'");
            url = format!("{url} {key}='{value}'");
        }
    }
    url
}

/// What is percent-encoded in a query value appended to a URL: all but letters, digits and
/// `-._~/`.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn is_uri(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Takes `sslmode`, `sslrootcert` (and the unsupported `ssl*` file parameters) out of a
/// URL's query or a key=value string. Returns the rest and what was taken, in order.
pub(super) fn split_tls_params(url: &str) -> Result<(String, Vec<(String, String)>), ConnectError> {
    let taken = |key: &str| TLS_PARAMS.contains(&key) || UNSUPPORTED.contains(&key);
    let mut params = Vec::new();
    if is_uri(url) {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), params));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| ConnectError::config(format!("{key}: invalid percent-encoding")))
            };
            let key = decode(key)?;
            if taken(&key) {
                params.push((key, decode(value)?));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, params));
    }
    // key=value: keep the other pairs' text as it was.
    let mut kept = Vec::new();
    for (key, value, raw) in key_values(url)? {
        if taken(&key) {
            params.push((key, value));
        } else {
            kept.push(raw);
        }
    }
    Ok((kept.join(" "), params))
}

/// The message for a word without `=` in a key=value string. A word that looks like a URL
/// (another scheme, or a mistyped one) is not shown: it may hold a password; its scheme is.
fn missing_equals(key: &str) -> String {
    if let Some((scheme, _)) = key.split_once(':') {
        return format!(
            "invalid connection string: neither a postgres:// (or postgresql://) URL nor \
             key=value pairs; it begins with the scheme {scheme:?}"
        );
    }
    format!("invalid connection string: missing \"=\" after {key:?}")
}

/// libpq's key=value syntax: `key = value` pairs separated by spaces, values optionally in
/// single quotes with `\` escapes. Yields `(key, value, the pair's text)`.
fn key_values(s: &str) -> Result<Vec<(String, String, &str)>, ConnectError> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_spaces = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_spaces(i);
        if i >= bytes.len() {
            return Ok(out);
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = s[start..i].to_owned();
        i = skip_spaces(i);
        if i >= bytes.len() || bytes[i] != b'=' {
            return Err(ConnectError::config(missing_equals(&key)));
        }
        i = skip_spaces(i + 1);
        let mut value = Vec::new();
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(ConnectError::config(format!(
                            "invalid connection string: unterminated quoted value for {key:?}"
                        )));
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < bytes.len() => {
                        value.push(bytes[i + 1]);
                        i += 2;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                value.push(bytes[i]);
                i += 1;
            }
        }
        let value = String::from_utf8(value)
            .map_err(|_| ConnectError::config(format!("{key}: invalid UTF-8")))?;
        out.push((key, value, &s[start..i]));
    }
}
