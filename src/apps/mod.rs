//! Applications written against the contract, one file each, plus the native health
//! handlers. [`crate::router`] mounts them.

pub mod accounts;
pub mod consistency;
pub mod health;
pub mod index;
pub mod notes;
pub mod poll_sleep;
pub mod postgres_async;
pub mod web;

use crate::db::Db;
use crate::error::ApiError;
use awsgi::Environ;

/// The database handle from the environ's extensions.
pub fn db(environ: &Environ) -> Result<Db, ApiError> {
    environ.extensions().get::<Db>().cloned().ok_or_else(|| {
        tracing::error!("no Db in the environ: mount the app under the router's Extension layer");
        ApiError::Internal
    })
}

/// A number from the query string, within `min..=max`; absent gives `default`.
/// Anything else is a 400 that says what is allowed.
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
}
