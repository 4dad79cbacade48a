//! Applications written against the contract, one file each, plus the native health
//! handlers. Each module declares its routes (`pub fn routes() -> Vec<Route>`, see
//! [`crate::routes`](mod@crate::routes)); [`crate::routes()`] joins those tables and [`crate::router`] mounts
//! them. An application that runs something for the life of the process (the notes' event
//! feed) keeps it in [`Apps`], which the root holds without knowing what is inside.

pub mod accounts;
pub mod health;
pub mod index;
pub mod notes;
pub mod poll_sleep;
pub mod postgres_async;
pub mod web;

use std::time::Duration;

use axum::{Extension, Router};

use crate::config::Config;
use crate::db::Db;
use crate::db::listener::{ListenConfig, Listener, Tap};
use crate::error::ApiError;
use crate::metrics::Metrics;
use awsgi::Environ;

/// Each application's long-lived state, started with the service: background tasks,
/// connections of their own, gauges. The root ([`crate::AppState`]) holds it and calls
/// [`start`](Self::start), [`layer`](Self::layer), [`register_metrics`](Self::register_metrics)
/// and [`stop`](Self::stop); what each application keeps is its own business.
///
/// A resource with nothing running in the background (most) needs nothing here: its
/// routes are enough. One that has (a queue consumer, a feed) adds a field, starts it in
/// `start`, hands it to its handlers as an environ extension in `layer`, and stops it in
/// `stop`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use pgbridge::apps::Apps;
/// use pgbridge::config::Config;
/// use pgbridge::db::Db;
///
/// let config = Config::new("postgres://postgres@localhost/app");
/// let apps = Apps::start(&Db::connect(&config.db())?, &config);
/// println!("{} event streams", apps.notes.listener.subscribers());
/// apps.stop();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Apps {
    /// The notes' event feed: its `LISTEN` connection, open streams and their gauges.
    pub notes: notes::events::Feed,
}

impl Apps {
    /// Starts every application's background work. Needs a tokio runtime.
    pub fn start(db: &Db, config: &Config) -> Self {
        Self::start_with(db, config, Vec::new())
    }

    /// [`start`](Self::start), with `taps`: other channels the process listens on, heard on
    /// the notes feed's `LISTEN` connection (one per process; the session cache's
    /// revocations come this way, see [`crate::auth::cache`]).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use pgbridge::apps::Apps;
    /// use pgbridge::auth::SessionCache;
    /// use pgbridge::config::Config;
    /// use pgbridge::db::Db;
    ///
    /// let config = Config::new("postgres://postgres@localhost/app");
    /// let cache = Arc::new(SessionCache::new(1000, std::time::Duration::from_secs(60)));
    /// let db = Db::connect(&config.db())?.attach(cache.clone());
    /// let apps = Apps::start_with(&db, &config, vec![cache.tap()]);
    /// // The cache answers once the sessions trigger is seen (as `AppState` does it).
    /// tokio::spawn(cache.arm_when_triggered(db.clone(), apps.notes.listener.stopped()));
    /// # Ok(()) }
    /// ```
    pub fn start_with(db: &Db, config: &Config, taps: Vec<Tap>) -> Self {
        let listener = Listener::spawn_with(
            ListenConfig {
                url: config.events_url().to_owned(),
                channel: notes::events::CHANNEL,
                capacity: config.events_buffer,
                connect_timeout: Duration::from_millis(config.db_connect_timeout_ms),
                max_backoff: Duration::from_secs(5),
                ping_interval: Duration::from_millis(config.events_listen_ping_ms),
            },
            notes::events::Broadcast::parse,
            taps,
        );
        Self {
            notes: notes::events::Feed::start(listener, db, config),
        }
    }

    /// Adds each application's state to every environ (as an extension).
    pub fn layer(&self, router: Router) -> Router {
        router.layer(Extension(self.notes.clone()))
    }

    /// Registers each application's gauges with `/metrics`.
    pub fn register_metrics(&self, metrics: &mut Metrics) {
        metrics.register_collector(self.notes.clone());
    }

    /// Stops the background work (graceful shutdown): the event streams end.
    pub fn stop(&self) {
        self.notes.stop();
    }
}

/// Refuses a body whose media type (`Content-Type` without its parameters, any case) is not
/// one of `accepted`, with 415 and the accepted types in the message.
///
/// ```
/// use pgbridge::apps::require_media_type;
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
