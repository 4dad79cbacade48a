//! The CGI spellings: header names as `HTTP_*`, percent-decoding, the protocol string,
//! `Host` split into name and port.

use http::Version;
use percent_encoding::percent_decode_str;

/// `example.com:8080` → (`example.com`, 8080); `[::1]:80` → (`[::1]`, 80).
pub(super) fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(end) = host.rfind(']') {
        let port = host[end + 1..]
            .strip_prefix(':')
            .and_then(|p| p.parse().ok());
        return (&host[..=end], port);
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, port.parse().ok()),
        None => (host, None),
    }
}

/// `Accept-Language` → `HTTP_ACCEPT_LANGUAGE`.
pub(super) fn cgi_name(header: &str) -> String {
    let mut name = String::with_capacity(header.len() + 5);
    name.push_str("HTTP_");
    name.extend(header.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    name
}

pub(super) fn decode_path(path: &str) -> String {
    percent_decode_str(path).decode_utf8_lossy().into_owned()
}

pub(super) fn form_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

pub(super) fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}
