//! ETags and conditional requests (RFC 9110 §8.8.3, §13), and the opaque pagination cursor.
//!
//! Entity tags are opaque: `"v1"` and `"v01"` are different tags, compared octet by octet.
//! [`Preconditions::from_headers`] reads `If-Match`, `If-None-Match` (lists, `*`, `W/`,
//! repeated header lines) and `If-Modified-Since`; [`Preconditions::evaluate`] applies them
//! in RFC 9110 §13.2.2's order to the target's current validators.
//!
//! ```
//! use http::{HeaderMap, Method};
//! use pgbridge::http::conditional::{Outcome, Preconditions, Validators};
//!
//! let mut headers = HeaderMap::new();
//! headers.append("if-match", "\"v9\", \"v1\"".parse().unwrap());
//! let pre = Preconditions::from_headers(&headers).unwrap();
//! let current = Validators { etag: "\"v1\"", last_modified: None };
//! assert_eq!(pre.evaluate(&Method::PATCH, Some(&current)), Outcome::Proceed);
//! let older = Validators { etag: "\"v01\"", last_modified: None };
//! assert_eq!(pre.evaluate(&Method::PATCH, Some(&older)), Outcome::PreconditionFailed);
//! ```

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, header};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The ETag of a note version: a strong validator.
pub fn etag(version: i32) -> String {
    format!("\"v{version}\"")
}

/// The strong ETag of a page of a listing: a digest of its notes' ids and versions and
/// of where the next page starts, so it changes whenever the page's content does (every
/// change to a note bumps its version).
pub fn list_etag(notes: impl IntoIterator<Item = (i64, i32)>, next_after: Option<i64>) -> String {
    let mut hash = Sha256::new();
    for (id, version) in notes {
        hash.update(id.to_be_bytes());
        hash.update(version.to_be_bytes());
    }
    match next_after {
        Some(next) => {
            hash.update([1]);
            hash.update(next.to_be_bytes());
        }
        None => hash.update([0]),
    }
    let digest = hash.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut tag = String::with_capacity(27);
    tag.push_str("\"l");
    for b in &digest[..12] {
        tag.push(char::from(HEX[usize::from(b >> 4)]));
        tag.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    tag.push('"');
    tag
}

/// An `HTTP-date` (IMF-fixdate) for `Last-Modified`, from seconds since the Unix epoch.
pub fn http_date(epoch_secs: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(epoch_secs.max(0) as u64);
    httpdate::fmt_http_date(at)
}

/// One entity tag: `W/"opaque"` or `"opaque"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    /// Whether it carries the `W/` prefix.
    pub weak: bool,
    /// The opaque tag with its quotes, e.g. `"v1"`.
    pub opaque: Vec<u8>,
}

impl EntityTag {
    /// Parses one entity tag (as sent in an `ETag` field). `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        match parse_list(text.as_bytes())? {
            TagList::Tags(mut tags) if tags.len() == 1 => tags.pop(),
            _ => None,
        }
    }

    /// Strong comparison (RFC 9110 §8.8.3.2): neither weak, same opaque tag.
    pub fn strong_eq(&self, other: &Self) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// Weak comparison: the same opaque tag, weak or not.
    pub fn weak_eq(&self, other: &Self) -> bool {
        self.opaque == other.opaque
    }
}

/// An `If-Match` or `If-None-Match` that is neither `*` nor a list of entity tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not * or a list of entity tags")]
pub struct MalformedTags;

/// The value of `If-Match` or `If-None-Match`: `*` or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagList {
    /// `*`: any current representation.
    Any,
    /// The listed tags (possibly none).
    Tags(Vec<EntityTag>),
}

impl TagList {
    /// Reads every line of the header `name`, as one comma-separated list.
    /// `Ok(None)` when absent; `Err` when it is not `*` or a list of entity tags.
    pub fn from_headers(
        headers: &HeaderMap,
        name: &header::HeaderName,
    ) -> Result<Option<Self>, MalformedTags> {
        let mut lines = headers.get_all(name).iter().peekable();
        if lines.peek().is_none() {
            return Ok(None);
        }
        let mut joined = Vec::new();
        for (i, line) in lines.enumerate() {
            if i > 0 {
                joined.push(b',');
            }
            joined.extend_from_slice(line.as_bytes());
        }
        parse_list(&joined).map(Some).ok_or(MalformedTags)
    }

    /// `If-Match`'s test: `*` matches any current representation, tags by strong
    /// comparison; nothing matches when there is no current representation.
    pub fn matches_strong(&self, current: Option<&EntityTag>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Self::Any, Some(_)) => true,
            (Self::Tags(tags), Some(current)) => tags.iter().any(|t| t.strong_eq(current)),
        }
    }

    /// `If-None-Match`'s test (true means "a listed tag matches"): `*` matches any current
    /// representation, tags by weak comparison.
    pub fn matches_weak(&self, current: Option<&EntityTag>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Self::Any, Some(_)) => true,
            (Self::Tags(tags), Some(current)) => tags.iter().any(|t| t.weak_eq(current)),
        }
    }
}

/// Parses `"*" / #entity-tag` (RFC 9110 §13.1.1, with §5.6.1's empty list elements).
fn parse_list(input: &[u8]) -> Option<TagList> {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let trimmed = {
        let start = input.iter().position(|b| !is_ows(b)).unwrap_or(input.len());
        let end = input
            .iter()
            .rposition(|b| !is_ows(b))
            .map_or(start, |e| e + 1);
        &input[start..end]
    };
    if trimmed == b"*" {
        return Some(TagList::Any);
    }
    let mut tags = Vec::new();
    let mut rest = input;
    loop {
        // Skip OWS and empty list elements.
        while let Some((first, tail)) = rest.split_first() {
            if is_ows(first) || *first == b',' {
                rest = tail;
            } else {
                break;
            }
        }
        if rest.is_empty() {
            return Some(TagList::Tags(tags));
        }
        let weak = rest.starts_with(b"W/");
        if weak {
            rest = &rest[2..];
        }
        let (&open, tail) = rest.split_first()?;
        if open != b'"' {
            return None;
        }
        // etagc = %x21 / %x23-7E / obs-text
        let len = tail
            .iter()
            .position(|b| !(*b == 0x21 || (0x23..=0x7e).contains(b) || *b >= 0x80))?;
        if tail[len] != b'"' {
            return None;
        }
        tags.push(EntityTag {
            weak,
            opaque: rest[..len + 2].to_vec(),
        });
        rest = &tail[len + 1..];
        // After a tag: OWS, then a comma or the end.
        while let Some((first, tail)) = rest.split_first() {
            if is_ows(first) {
                rest = tail;
            } else {
                break;
            }
        }
        match rest.split_first() {
            None => return Some(TagList::Tags(tags)),
            Some((b',', tail)) => rest = tail,
            Some(_) => return None,
        }
    }
}

/// What a resource's current representation is validated by.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// Its strong ETag, quotes included.
    pub etag: &'a str,
    /// Its last change, in whole seconds since the Unix epoch, if it has one.
    pub last_modified: Option<i64>,
}

/// What the preconditions say to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Perform the request.
    Proceed,
    /// Answer 304 with the validators (GET and HEAD only).
    NotModified,
    /// Answer 412.
    PreconditionFailed,
}

/// A request's preconditions: `If-Match`, `If-None-Match`, `If-Modified-Since`.
/// (`If-Unmodified-Since` and `If-Range` are not evaluated.)
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    /// `If-Match`, if sent.
    pub if_match: Option<TagList>,
    /// `If-None-Match`, if sent.
    pub if_none_match: Option<TagList>,
    /// `If-Modified-Since` in seconds since the epoch, if sent and a valid HTTP-date.
    pub if_modified_since: Option<i64>,
}

impl Preconditions {
    /// Reads them; a malformed `If-Match` or `If-None-Match` is a 400 (an invalid
    /// `If-Modified-Since` is ignored, as RFC 9110 §13.1.3 requires).
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let tags = |name: header::HeaderName| {
            TagList::from_headers(headers, &name).map_err(|MalformedTags| {
                ApiError::bad_request(format!(
                    "{name} must be * or a list of quoted entity tags, e.g. \"v1\""
                ))
            })
        };
        let if_modified_since = headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        Ok(Self {
            if_match: tags(header::IF_MATCH)?,
            if_none_match: tags(header::IF_NONE_MATCH)?,
            if_modified_since,
        })
    }

    /// Evaluates them (RFC 9110 §13.2.2) for `method` against the current representation
    /// (`None`: there is none).
    pub fn evaluate(&self, method: &Method, current: Option<&Validators<'_>>) -> Outcome {
        // The current tag is parsed only when a precondition compares it.
        let tag = if self.if_match.is_some() || self.if_none_match.is_some() {
            current.and_then(|c| EntityTag::parse(c.etag))
        } else {
            None
        };
        let read = method == Method::GET || method == Method::HEAD;
        if let Some(if_match) = &self.if_match
            && !if_match.matches_strong(tag.as_ref())
        {
            return Outcome::PreconditionFailed;
        }
        if let Some(if_none_match) = &self.if_none_match {
            if if_none_match.matches_weak(tag.as_ref()) {
                return if read {
                    Outcome::NotModified
                } else {
                    Outcome::PreconditionFailed
                };
            }
        } else if let (true, Some(since), Some(modified)) = (
            read,
            self.if_modified_since,
            current.and_then(|c| c.last_modified),
        ) && modified <= since
        {
            return Outcome::NotModified;
        }
        Outcome::Proceed
    }

    /// Whether any precondition was sent that names entity tags (not only `*`).
    pub fn names_tags(&self) -> bool {
        [&self.if_match, &self.if_none_match]
            .into_iter()
            .any(|t| matches!(t, Some(TagList::Tags(_))))
    }
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
        .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn tag(weak: bool, opaque: &str) -> EntityTag {
        EntityTag {
            weak,
            opaque: opaque.as_bytes().to_vec(),
        }
    }

    fn list(text: &str) -> Option<TagList> {
        parse_list(text.as_bytes())
    }

    fn headers(lines: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    fn pre(lines: &[(&'static str, &[u8])]) -> Preconditions {
        Preconditions::from_headers(&headers(lines)).unwrap()
    }

    fn v(etag: &str) -> Validators<'_> {
        Validators {
            etag,
            last_modified: Some(1_000),
        }
    }

    #[test]
    fn parses_star_lists_and_weak_tags() {
        assert_eq!(list("*"), Some(TagList::Any));
        assert_eq!(list("  *  "), Some(TagList::Any));
        assert_eq!(list(""), Some(TagList::Tags(vec![])));
        assert_eq!(list(" , ,"), Some(TagList::Tags(vec![])));
        assert_eq!(
            list(r#""v9", W/"v1""#),
            Some(TagList::Tags(vec![
                tag(false, "\"v9\""),
                tag(true, "\"v1\"")
            ]))
        );
        assert_eq!(
            list(r#" "a" ,, "" ,"#),
            Some(TagList::Tags(vec![tag(false, "\"a\""), tag(false, "\"\"")]))
        );
        // A comma is an etagc, so a quoted tag may hold one.
        assert_eq!(
            list(r#""a,b", "c""#),
            Some(TagList::Tags(vec![
                tag(false, "\"a,b\""),
                tag(false, "\"c\"")
            ]))
        );
    }

    #[test]
    fn refuses_what_is_not_an_entity_tag() {
        for bad in [
            "v1",
            "\"v1",
            "w/\"v1\"",
            "W/ \"v1\"",
            "\"v1\" \"v2\"",
            "*, \"v1\"",
            "\"v1\", *",
            "\"a b\"",
            "\"v1\"x",
            "**",
        ] {
            assert_eq!(list(bad), None, "{bad}");
        }
        assert!(
            TagList::from_headers(&headers(&[("if-match", b"v1")]), &header::IF_MATCH).is_err()
        );
    }

    #[test]
    fn opaque_tags_compare_as_strings() {
        assert!(!tag(false, "\"v01\"").strong_eq(&tag(false, "\"v1\"")));
        assert!(tag(false, "\"v1\"").strong_eq(&tag(false, "\"v1\"")));
        assert!(!tag(true, "\"v1\"").strong_eq(&tag(false, "\"v1\"")));
        assert!(!tag(true, "\"v1\"").strong_eq(&tag(true, "\"v1\"")));
        assert!(tag(true, "\"v1\"").weak_eq(&tag(false, "\"v1\"")));
        assert!(!tag(false, "\"V1\"").weak_eq(&tag(false, "\"v1\"")));
    }

    #[test]
    fn obs_text_is_opaque_too() {
        let tags = TagList::from_headers(
            &headers(&[("if-none-match", b"\"caf\xc3\xa9\"")]),
            &header::IF_NONE_MATCH,
        )
        .unwrap()
        .unwrap();
        assert_eq!(tags, TagList::Tags(vec![tag(false, "\"café\"")]));
    }

    #[test]
    fn if_match_is_strong_and_takes_lists_and_lines() {
        let patch = Method::PATCH;
        let current = v("\"v1\"");
        for ok in [
            &[("if-match", &b"\"v1\""[..])][..],
            &[("if-match", b"\"v9\", \"v1\"")],
            &[("if-match", b"\"v9\""), ("if-match", b"\"v1\"")],
            &[("if-match", b"*")],
        ] {
            assert_eq!(
                pre(ok).evaluate(&patch, Some(&current)),
                Outcome::Proceed,
                "{ok:?}"
            );
        }
        for refused in [
            &[("if-match", &b"\"v01\""[..])][..],
            &[("if-match", b"W/\"v1\"")],
            &[("if-match", b"\"v2\"")],
            &[("if-match", b"")],
        ] {
            assert_eq!(
                pre(refused).evaluate(&patch, Some(&current)),
                Outcome::PreconditionFailed,
                "{refused:?}"
            );
        }
        // `*` needs a current representation.
        assert_eq!(
            pre(&[("if-match", b"*")]).evaluate(&patch, None),
            Outcome::PreconditionFailed
        );
        // On a GET too (RFC 9110 §13.1.1).
        assert_eq!(
            pre(&[("if-match", b"\"v2\"")]).evaluate(&Method::GET, Some(&current)),
            Outcome::PreconditionFailed
        );
    }

    #[test]
    fn if_none_match_is_weak_304_on_reads_412_on_writes() {
        let current = v("\"v7\"");
        let p = pre(&[("if-none-match", b"\"v1\", W/\"v7\"")]);
        assert_eq!(
            p.evaluate(&Method::GET, Some(&current)),
            Outcome::NotModified
        );
        assert_eq!(
            p.evaluate(&Method::HEAD, Some(&current)),
            Outcome::NotModified
        );
        assert_eq!(
            p.evaluate(&Method::PATCH, Some(&current)),
            Outcome::PreconditionFailed
        );
        let p = pre(&[("if-none-match", b"\"v07\"")]);
        assert_eq!(p.evaluate(&Method::GET, Some(&current)), Outcome::Proceed);
        let star = pre(&[("if-none-match", b"*")]);
        assert_eq!(
            star.evaluate(&Method::POST, Some(&current)),
            Outcome::PreconditionFailed
        );
        assert_eq!(star.evaluate(&Method::POST, None), Outcome::Proceed);
        // If-Match is evaluated first.
        let both = pre(&[("if-match", b"\"v8\""), ("if-none-match", b"\"v7\"")]);
        assert_eq!(
            both.evaluate(&Method::GET, Some(&current)),
            Outcome::PreconditionFailed
        );
    }

    #[test]
    fn if_modified_since_only_without_if_none_match() {
        let current = v("\"v1\""); // modified at 1,000 s
        let at = |secs: u64| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
        let ims = |secs| pre(&[("if-modified-since", at(secs).as_bytes())]);
        assert_eq!(
            ims(1_000).evaluate(&Method::GET, Some(&current)),
            Outcome::NotModified
        );
        assert_eq!(
            ims(2_000).evaluate(&Method::GET, Some(&current)),
            Outcome::NotModified
        );
        assert_eq!(
            ims(999).evaluate(&Method::GET, Some(&current)),
            Outcome::Proceed
        );
        assert_eq!(
            ims(2_000).evaluate(&Method::PATCH, Some(&current)),
            Outcome::Proceed
        );
        let with_inm = pre(&[
            ("if-modified-since", at(2_000).as_bytes()),
            ("if-none-match", b"\"v0\""),
        ]);
        assert_eq!(
            with_inm.evaluate(&Method::GET, Some(&current)),
            Outcome::Proceed
        );
        let garbage = pre(&[("if-modified-since", b"yesterday")]);
        assert_eq!(garbage.if_modified_since, None);
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn malformed_conditionals_are_400() {
        for (name, value) in [("if-match", &b"v1"[..]), ("if-none-match", b"\"v1\" junk")] {
            let err = Preconditions::from_headers(&headers(&[(name, value)])).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn list_etags_change_with_the_page() {
        let a = list_etag([(3, 1), (2, 1)], None);
        assert_eq!(a, list_etag([(3, 1), (2, 1)], None));
        assert_ne!(a, list_etag([(3, 2), (2, 1)], None));
        assert_ne!(a, list_etag([(3, 1)], None));
        assert_ne!(a, list_etag([(3, 1), (2, 1)], Some(2)));
        assert!(EntityTag::parse(&a).is_some_and(|t| !t.weak));
        assert_ne!(list_etag([], None), list_etag([], Some(1)));
    }

    #[test]
    fn note_etags_parse() {
        assert_eq!(EntityTag::parse(&etag(7)), Some(tag(false, "\"v7\"")));
        assert_eq!(EntityTag::parse("*"), None);
    }

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        for bad in [
            "",
            "!!",
            "bjE6",
            "eHg6MQ",
            &URL_SAFE_NO_PAD.encode("n1:-3"),
            &URL_SAFE_NO_PAD.encode("n1:+3"),
            &URL_SAFE_NO_PAD.encode("n1:3\0"),
        ] {
            assert_eq!(decode_cursor(bad).unwrap_err().status(), 400, "{bad}");
        }
    }
}
