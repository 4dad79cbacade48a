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

use axum::Router;

use crate::config::Config;
use crate::db::Db;
use crate::db::listener::Tap;
use crate::metrics::Metrics;
use crate::resource::feed::{Feed, Feeds};

/// The input rules every resource shares, where the applications have always found them.
pub use crate::resource::input::{bounded_query, require_media_type};

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
    /// Every resource's change feed: the one `LISTEN` connection, the open streams, the
    /// pruners and their gauges. A resource's routes take their feed from it when the
    /// router is built ([`Feeds::feed`]).
    pub feeds: Feeds,
    /// The notes' feed (the `LISTEN` connection and the streams are every feed's).
    pub notes: Feed,
}

impl Apps {
    /// Starts every application's background work. Needs a tokio runtime.
    pub fn start(db: &Db, config: &Config) -> Self {
        Self::start_with(db, config, Vec::new())
    }

    /// [`start`](Self::start), with `taps`: other channels the process listens on, heard on
    /// the feeds' `LISTEN` connection (one per process; the session cache's revocations
    /// come this way, see [`crate::auth::cache`]).
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
        let feeds = Feeds::spawn_with(db, config, taps);
        Self {
            notes: feeds.feed(notes::events::FEED),
            feeds,
        }
    }

    /// Adds each application's state to every environ (as an extension): none today —
    /// each resource's feed route holds its own [`Feed`], taken from [`Feeds`] when the
    /// router is built. An application with state of its own adds it here
    /// (`router.layer(Extension(…))`).
    pub fn layer(&self, router: Router) -> Router {
        router
    }

    /// Registers each application's gauges with `/metrics`.
    pub fn register_metrics(&self, metrics: &mut Metrics) {
        metrics.register_collector(self.feeds.clone());
    }

    /// Stops the background work (graceful shutdown): the event streams end.
    pub fn stop(&self) {
        self.feeds.stop();
    }
}
