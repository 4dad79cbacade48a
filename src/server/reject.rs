//! Answers the server writes itself, before or instead of hyper and the router: the
//! refusal of a connection over its address's limit, and the replacement of hyper's own
//! bodiless 400/414/431. Each is a complete HTTP/1.1 response with the service's JSON
//! error shape, a fresh `X-Request-Id` (logged with it), and `Connection: close`.

use http::StatusCode;

/// The bytes of a closing response with `status` and the JSON error body
/// `{"error":{"code","message"}}`, plus `extra` headers; and its request id.
pub(crate) fn response(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: &[(&str, &str)],
) -> (Vec<u8>, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let body = crate::error::error_body(code, message).to_string();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nx-request-id: {id}\r\nx-content-type-options: nosniff\r\n\
         cache-control: no-store\r\ndate: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    );
    for (name, value) in extra {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    (bytes, id)
}

/// hyper's automatic answer to a request it could not parse, recognised in what it
/// writes: exactly `HTTP/1.1 400 Bad Request`, `414 URI Too Long` or `431 Request Header
/// Fields Too Large`, a head with `content-length: 0`, no `x-request-id` (every response of
/// the router has one) and nothing after the head. Returns the status.
pub(crate) fn hyper_error_status(written: &[u8]) -> Option<StatusCode> {
    const ANSWERS: [(&[u8], StatusCode); 3] = [
        (b"HTTP/1.1 400 Bad Request\r\n", StatusCode::BAD_REQUEST),
        (b"HTTP/1.1 414 URI Too Long\r\n", StatusCode::URI_TOO_LONG),
        (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
    ];
    let (_, status) = ANSWERS.iter().find(|(line, _)| written.starts_with(line))?;
    if written.len() > 1024 || !written.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = String::from_utf8_lossy(written).to_ascii_lowercase();
    let bodiless = head.contains("\r\ncontent-length: 0\r\n");
    let single = head.matches("\r\n\r\n").count() == 1;
    (bodiless && single && !head.contains("\r\nx-request-id:")).then_some(*status)
}

/// Our answer in place of hyper's bodiless `status`.
pub(crate) fn parse_error(status: StatusCode) -> (Vec<u8>, String) {
    let (code, message) = match status {
        StatusCode::URI_TOO_LONG => (
            "uri_too_long",
            "the request target is too long; send the data in the body",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            "the request's header section is too large or has too many fields",
        ),
        _ => (
            "bad_request",
            "the request could not be parsed as HTTP/1.1 (request line or a header is malformed)",
        ),
    };
    response(status, code, message, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_answers_are_recognised() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 23:00:00 GMT\r\n\r\n";
        assert_eq!(
            hyper_error_status(hyper),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: 1\r\n\r\n";
        assert_eq!(hyper_error_status(ours), None, "the router's own 400");
        let body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(hyper_error_status(body), None);
        assert_eq!(hyper_error_status(b"HTTP/1.1 200 OK\r\n\r\n"), None);
    }

    #[test]
    fn the_replacement_is_the_json_shape_with_an_id() {
        let (bytes, id) = parse_error(StatusCode::URI_TOO_LONG);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains(&format!("x-request-id: {id}")), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "uri_too_long");
    }
}
