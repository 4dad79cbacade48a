//! Keeping the password of a connection string out of messages, whatever the string's
//! shape: a URL of any scheme (`mysql://user:pw@host`), a URL missing its `//`
//! (`postgres:pw@host`), several hosts, `?password=` in the query, libpq key=value pairs
//! with `password=` quoted or not — and each of them percent-encoded or not.
//!
//! [`secrets`] finds every substring that may be the password (generously: a false
//! positive only hides a harmless fragment of a message); [`redact`] replaces them.

/// What a redacted secret is shown as.
pub const MASK: &str = "********";

/// `text` with every possible password of `url` masked.
///
/// ```
/// use pgbridge::db::connect::redact;
/// let url = "mysql://postgres:S3cret@db:5432/app";
/// let message = format!("missing \"=\" after {url:?}");
/// assert!(!redact(&message, url).contains("S3cret"));
/// assert_eq!(redact(url, url), "mysql://postgres:********@db:5432/app");
/// ```
pub fn redact(text: &str, url: &str) -> String {
    let mut text = text.to_owned();
    for secret in secrets(url) {
        text = text.replace(&secret, MASK);
    }
    text
}

/// The substrings of `url` that may be its password, raw and decoded (percent-encoding,
/// quotes and `\` escapes), longest first.
pub fn secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    // user:password@host, after "//", after a space, or from the start: at every '@'.
    for (at, _) in url.match_indices('@') {
        let before = &url[..at];
        let after_slashes = [
            before.rfind("//").map(|i| i + 2),
            before.find("://").map(|i| i + 3),
        ];
        // With no "//": from a space, or from the start (`postgres:pw@host`).
        let bare = [before.rfind(char::is_whitespace).map(|i| i + 1), Some(0)]
            .into_iter()
            .flatten()
            .filter(|&start| !before[start..].contains("//"));
        for start in after_slashes.into_iter().flatten().chain(bare) {
            if let Some((_, password)) = before[start..].split_once(':') {
                found.push(password.to_owned());
            }
        }
    }
    // password=value: key=value pairs, or a URL's query.
    let lower = url.to_ascii_lowercase();
    for (key, _) in lower.match_indices("password") {
        let rest = url[key + "password".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted.find('\'').unwrap_or(quoted.len());
            found.push(quoted[..end].to_owned());
            // With `\` escapes, the value runs to the first unescaped quote.
            let mut value = String::new();
            let mut chars = quoted.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
            found.push(value);
        } else {
            for end in [
                rest.find(char::is_whitespace),
                rest.find(|c: char| c == '&' || c.is_whitespace()),
            ] {
                found.push(rest[..end.unwrap_or(rest.len())].to_owned());
            }
        }
    }
    let decoded: Vec<String> = found
        .iter()
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    found.extend(decoded);
    found.retain(|s| !s.is_empty());
    found.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::connect::PgConnect;

    /// Malformed connection strings of every shape: the password never appears in the
    /// error, nor in its debug form.
    #[test]
    fn no_configuration_error_shows_the_password() {
        let cases = [
            // Wrong or missing scheme.
            "mysql://postgres:S3cret@db.example.com:5432/app",
            "postgres:S3cret@db.example.com/app",
            "postgress://postgres:S3cret@db/app",
            "//postgres:S3cret@db/app",
            // Missing host, bad port, bad percent-encoding.
            "postgres://postgres:S3cret@/app?host=&port=x",
            "postgres://postgres:S3cret@:x/app",
            "postgres://postgres:S3cret@db:99999/app",
            "postgres://postgres:S3cret@db:port/app",
            "postgres://post%FFgres:S3cret@db/app",
            "postgres://postgres:S3cret%41@db/a%FFpp",
            "postgres://postgres:S3cret@db/app?sslmode=%FF",
            "postgres://postgres:S3cret@db/app?sslmode=bogus",
            "postgres://postgres:S3cret@db/app?sslrootcert=/nonexistent/S3cret.pem&sslmode=verify-full",
            "postgres://postgres:S3cret@db/app?bogus_option=1",
            "postgres://postgres:S3%63ret@db/app?connect_timeout=x",
            // Passwords holding '@', ':' or '/'.
            "postgres://postgres:S3cret@x@db/app?port=x",
            "postgres://postgres:S3cret:x@db:x/app",
            // Several hosts.
            "postgres://postgres:S3cret@db1:5432,db2:x/app",
            "postgres://postgres:S3cret@db1,db2/app?target_session_attrs=bogus",
            // The password in the query.
            "postgres://db/app?user=postgres&password=S3cret&port=x",
            // key=value.
            "host=db password=S3cret port=x",
            "host=db password = 'S3cret' dbname",
            "host=db password='S3cret",
            "host=db password=S3cret sslmode=bogus",
            "host=db password=S3cret bogus=1",
            "host=db PASSWORD=S3cret port=",
            r"host=db password='S3\cret' port=x",
        ];
        let mut parsed = Vec::new();
        for url in cases {
            let Err(err) = PgConnect::parse(url) else {
                parsed.push(url);
                continue;
            };
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains("S3cret"), "{url}: {shown}");
                assert!(!shown.contains("S3%63ret"), "{url}: {shown}");
            }
        }
        assert!(parsed.is_empty(), "not malformed: {parsed:?}");
    }

    #[test]
    fn the_message_for_a_foreign_scheme_names_the_scheme_only() {
        let err = PgConnect::parse("mysql://postgres:S3cret@db/app").unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("\"mysql\""), "{shown}");
        assert!(!shown.contains("@db"), "{shown}");
    }

    #[test]
    fn secrets_are_found_in_every_shape() {
        assert_eq!(secrets("postgres://u:p%40ss@h/d"), ["p%40ss", "p@ss"]);
        assert!(secrets("host=h password='it\\'s' x=1").contains(&"it's".to_owned()));
        assert!(secrets("postgres://h/d?password=a&b=c").contains(&"a".to_owned()));
        assert!(secrets("postgres://u@h/d").is_empty());
    }
}
