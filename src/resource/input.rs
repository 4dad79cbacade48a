//! The input rules every resource shares: the media type, query numbers, and a JSON
//! object read field by field ([`Form`]) so that one 422 names every bad field — unknown
//! fields, wrong types, U+0000 (which Postgres `text` cannot store), missing required
//! fields, and whatever the resource [`check`](Form::check)s. The body's size is bounded
//! before any of this, by the layer (`BODY_LIMIT_BYTES`, 413).

use serde_json::{Map, Value};

use crate::error::{ApiError, FieldError};
use awsgi::Environ;

/// What a 422 or 400 says of text holding U+0000, which Postgres `text` cannot store.
pub const NUL_MESSAGE: &str = "must not contain the NUL character (\\u0000)";

/// Whether `text` holds U+0000.
///
/// ```
/// assert!(pgbridge::resource::input::has_nul("a\0b"));
/// ```
pub fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

/// Refuses a body whose media type (`Content-Type` without its parameters, any case) is not
/// one of `accepted`, with 415 and the accepted types in the message.
///
/// ```
/// use pgbridge::resource::input::require_media_type;
/// use pgbridge::awsgi::Environ;
///
/// let request = http::Request::post("/notes")
///     .header("Content-Type", "Application/JSON; charset=utf-8")
///     .body(())
///     .unwrap();
/// let environ = Environ::builder(request).build();
/// assert!(require_media_type(&environ, &["application/json"]).is_ok());
/// assert!(require_media_type(&environ, &["text/plain"]).is_err());
/// ```
pub fn require_media_type(environ: &Environ, accepted: &[&str]) -> Result<(), ApiError> {
    let media = environ.content_type().map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match media {
        Some(media) if accepted.contains(&media.as_str()) => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "send the body as {}",
            accepted.join(" or ")
        ))),
    }
}

/// A number from the query string, within `min..=max`; absent gives `default`.
/// Anything else is a 400 that says what is allowed.
///
/// ```
/// use pgbridge::awsgi::Environ;
/// use pgbridge::resource::input::bounded_query;
///
/// let environ = Environ::builder(http::Request::get("/?limit=5").body(()).unwrap()).build();
/// assert_eq!(bounded_query(&environ, "limit", 1, 200, 50).unwrap(), 5);
/// ```
pub fn bounded_query<T>(
    environ: &Environ,
    name: &str,
    min: T,
    max: T,
    default: T,
) -> Result<T, ApiError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = environ.query(name) else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(value) if value >= min && value <= max => Ok(value),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a number from {min} to {max}, got {raw:?}"
        ))),
    }
}

/// A value a [`Form`] field may hold: how it is read from JSON, and what a wrong one is told.
pub trait FieldValue: Sized {
    /// The message for a value of another type (`must be a string`).
    const EXPECTED: &'static str;
    /// The value, if `json` is one.
    fn from_json(json: &Value) -> Option<Self>;
    /// Whether it holds U+0000 (text only).
    fn has_nul(&self) -> bool {
        false
    }
}

impl FieldValue for String {
    const EXPECTED: &'static str = "must be a string";
    fn from_json(json: &Value) -> Option<Self> {
        json.as_str().map(str::to_owned)
    }
    fn has_nul(&self) -> bool {
        has_nul(self)
    }
}

impl FieldValue for bool {
    const EXPECTED: &'static str = "must be true or false";
    fn from_json(json: &Value) -> Option<Self> {
        json.as_bool()
    }
}

impl FieldValue for i64 {
    const EXPECTED: &'static str = "must be an integer";
    fn from_json(json: &Value) -> Option<Self> {
        json.as_i64()
    }
}

impl FieldValue for Vec<String> {
    const EXPECTED: &'static str = "must be an array of strings";
    fn from_json(json: &Value) -> Option<Self> {
        json.as_array()?
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect()
    }
    fn has_nul(&self) -> bool {
        self.iter().any(|s| has_nul(s))
    }
}

/// A JSON object body read field by field, every problem collected, for one 422 that
/// names every bad field.
///
/// ```
/// use pgbridge::resource::input::Form;
///
/// let mut form = Form::parse(br#"{"title":"", "colour":"red"}"#, &["title", "done"], "task").unwrap();
/// let title: Option<String> = form.take("title", None, None);
/// let done: Option<bool> = form.take("done", None, Some(false));
/// form.check("title", title.as_deref().is_some_and(|t| !t.is_empty()), "must not be empty");
/// let err = form.finish(|| Some((title?, done?))).unwrap_err();
/// assert_eq!(err.status(), 422); // `colour` is not a field of a task; `title` must not be empty
/// ```
#[derive(Debug)]
pub struct Form {
    object: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Form {
    /// Parses `bytes` as a JSON object (else a 400), noting every key that is not one of
    /// `known` as "is not a field of a `noun`".
    pub fn parse(bytes: &[u8], known: &[&str], noun: &str) -> Result<Self, ApiError> {
        let object = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                return Err(ApiError::bad_request(
                    "the request body must be a JSON object",
                ));
            }
            Err(err) => return Err(ApiError::bad_request(format!("malformed JSON: {err}"))),
        };
        let errors = object
            .keys()
            .filter(|key| !known.contains(&key.as_str()))
            .map(|key| field(key, &format!("is not a field of a {noun}")))
            .collect();
        Ok(Self { object, errors })
    }

    /// The field `name`. Absent: `current` (a merge patch keeps what is), else `cleared`
    /// (a creation's default), else "is required". `null`: `cleared` (a merge patch clears
    /// it), else a type error. A value of the wrong type, or text holding U+0000, is noted
    /// (the text is still returned, so further checks can name more).
    pub fn take<T: FieldValue>(
        &mut self,
        name: &str,
        current: Option<T>,
        cleared: Option<T>,
    ) -> Option<T> {
        let value = match self.object.get(name) {
            None => match current.or(cleared) {
                Some(value) => return Some(value),
                None => Err("is required"),
            },
            Some(Value::Null) => cleared.ok_or(T::EXPECTED),
            Some(json) => T::from_json(json).ok_or(T::EXPECTED),
        };
        match value {
            Ok(value) => {
                if value.has_nul() {
                    self.errors.push(field(name, NUL_MESSAGE));
                }
                Some(value)
            }
            Err(message) => {
                self.errors.push(field(name, message));
                None
            }
        }
    }

    /// Notes `message` for `name` unless `ok`.
    pub fn check(&mut self, name: &str, ok: bool, message: &str) {
        if !ok {
            self.errors.push(field(name, message));
        }
    }

    /// The value `build` makes, if no field was refused; else a 422 naming each refusal.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        match build() {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(ApiError::Invalid(self.errors)),
        }
    }
}

/// One refused field.
///
/// ```
/// let error = pgbridge::resource::input::field("title", "is required");
/// assert_eq!(error.field, "title");
/// ```
pub fn field(name: &str, message: &str) -> FieldError {
    FieldError {
        field: name.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environ(query: &str) -> Environ {
        Environ::builder(http::Request::get(format!("/?{query}")).body(()).unwrap()).build()
    }

    #[test]
    fn bounded_query_rules() {
        assert_eq!(bounded_query(&environ(""), "n", 0, 30, 1).unwrap(), 1);
        assert_eq!(bounded_query(&environ("n=30"), "n", 0, 30, 1).unwrap(), 30);
        assert_eq!(
            bounded_query(&environ("n=2.5"), "n", 0.0, 10.0, 1.0).unwrap(),
            2.5
        );
        for bad in ["n=31", "n=-1", "n=abc", "n=", "n=NaN"] {
            let err = bounded_query(&environ(bad), "n", 0.0, 30.0, 1.0).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
            assert!(err.to_string().contains("from 0 to 30"), "{err}");
        }
    }

    #[test]
    fn a_form_names_every_bad_field() {
        let mut form = Form::parse(br#"{"a":1,"b":null,"x":true}"#, &["a", "b", "c"], "t").unwrap();
        assert_eq!(form.take::<String>("a", None, None), None);
        assert_eq!(
            form.take::<String>("b", None, Some("d".into())).as_deref(),
            Some("d")
        );
        assert_eq!(form.take::<bool>("c", Some(true), None), Some(true));
        assert_eq!(form.take::<bool>("c", None, None), None);
        let ApiError::Invalid(errors) = form.finish(|| Some(())).unwrap_err() else {
            panic!("not a 422");
        };
        let named: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(named, ["x", "a", "c"]);
        assert_eq!(errors[0].message, "is not a field of a t");
        assert_eq!(errors[2].message, "is required");
    }

    #[test]
    fn malformed_json_is_400() {
        for bad in [&b"{"[..], b"[]", b"\"title\"", b""] {
            assert_eq!(Form::parse(bad, &[], "t").unwrap_err().status(), 400);
        }
    }
}
