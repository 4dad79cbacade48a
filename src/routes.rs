//! The route table: every route the service serves, declared once — methods, path and a
//! one-line summary beside the handler — and read twice: [`crate::router`] mounts it, and
//! the index at `GET /` lists it. A route that is served is listed, and the other way round.
//!
//! The table is also read a third time: each route carries its part of the API document
//! ([`Route::documented`]), and [`document`] joins them into the `/openapi.json` the router
//! serves.
//!
//! Each application module declares its own table (`pub fn routes() -> Vec<Route>`), and
//! [`crate::routes()`] joins them. To add a resource, declare its routes and add the table
//! to that list:
//!
//! ```no_run
//! use http::Method;
//! use pgbridge::awsgi::{Body, Environ, Error, StartResponse};
//! use pgbridge::routes::Route;
//!
//! async fn todos(_environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
//!     start_response.start("200 OK", [("Content-Type", "application/json")])?;
//!     Ok(Body::from("[]"))
//! }
//!
//! /// The todo routes (GET also answers HEAD; other methods are a 405 with `Allow`).
//! pub fn routes() -> Vec<Route> {
//!     vec![
//!         Route::app(&[Method::GET, Method::POST], "/todos", "list and create todos", todos)
//!             .query("limit=N"),
//!         Route::handler(&[Method::GET], "/todos/ping", "a native axum handler", || async {
//!             "pong"
//!         }),
//!     ]
//! }
//! ```

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter, on};
use http::Method;
use serde::Serialize;
use tower::Layer;

use crate::bulkhead::RouteClass;
use crate::state::AppState;
use awsgi::{Application, AwsgiLayer, Validator};

/// Builds a route's axum service when the router is built.
type Build = Box<dyn FnOnce(&Mount<'_>) -> MethodRouter + Send>;

/// One route: the methods it answers, its path, what it does, and what serves it.
///
/// `GET` also answers `HEAD`; any method not listed is a 405 with `Allow`, answered by the
/// router before the handler runs.
pub struct Route {
    /// The methods served (HEAD rides along with GET).
    pub methods: Vec<Method>,
    /// The axum path, with `{name}` parameters.
    pub path: &'static str,
    /// The query string the index shows after the path (`delay=SECONDS`), or empty.
    pub query: &'static str,
    /// What it does, in one line (the index's `description`).
    pub summary: &'static str,
    /// What it costs while it runs: the share it is held to (see [`crate::bulkhead`]).
    pub class: RouteClass,
    /// What the route adds to the API document (`GET /openapi.json`): its operations and the
    /// schemas they name ([`documented`](Self::documented)).
    pub docs: Vec<Document>,
    build: Build,
}

pub use crate::api_doc::Document;

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("methods", &self.methods)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("summary", &self.summary)
            .field("class", &self.class)
            .field("docs", &self.docs.len())
            .finish_non_exhaustive()
    }
}

impl Route {
    /// An application on the contract, served through the [`AwsgiLayer`] (and the
    /// [`Validator`] when `VALIDATE_APPS` is on).
    ///
    /// ```
    /// use http::Method;
    /// use pgbridge::routes::Route;
    ///
    /// let route = Route::app(
    ///     &[Method::GET],
    ///     "/seed/poll-sleep",
    ///     "sleeps through fdevent timeouts",
    ///     pgbridge::apps::poll_sleep::app,
    /// );
    /// assert_eq!(route.label(), "GET /seed/poll-sleep");
    /// ```
    pub fn app<A: Application>(
        methods: &[Method],
        path: &'static str,
        summary: &'static str,
        app: A,
    ) -> Self {
        Self::with(methods, path, summary, move |mount| mount.app(app))
    }

    /// A native axum handler (it may extract [`axum::Extension`]s the router adds).
    ///
    /// ```
    /// use http::Method;
    /// use pgbridge::routes::Route;
    ///
    /// let route = Route::handler(&[Method::GET], "/ping", "answers pong", || async { "pong" });
    /// assert_eq!(route.path, "/ping");
    /// ```
    pub fn handler<H, T>(
        methods: &[Method],
        path: &'static str,
        summary: &'static str,
        handler: H,
    ) -> Self
    where
        H: Handler<T, ()>,
        T: 'static,
    {
        Self::with(methods, path, summary, move |mount| {
            on(mount.methods(), handler)
        })
    }

    /// Anything else: `build` makes the route's [`MethodRouter`] when the router is built,
    /// from the [`Mount`] (the service's state, the methods as a filter, the layer). It
    /// must serve exactly [`Mount::methods`].
    ///
    /// ```
    /// use axum::routing::on;
    /// use http::Method;
    /// use pgbridge::routes::Route;
    ///
    /// let route = Route::with(&[Method::GET], "/limit", "the body limit", |mount| {
    ///     let limit = mount.state().config.body_limit_bytes;
    ///     on(mount.methods(), move || async move { limit.to_string() })
    /// });
    /// assert_eq!(route.summary, "the body limit");
    /// ```
    pub fn with<F>(methods: &[Method], path: &'static str, summary: &'static str, build: F) -> Self
    where
        F: FnOnce(&Mount<'_>) -> MethodRouter + Send + 'static,
    {
        Self {
            methods: methods.to_vec(),
            path,
            query: "",
            summary,
            class: RouteClass::Short,
            docs: Vec::new(),
            build: Box::new(build),
        }
    }

    /// A route served by one application per method, declared here and nowhere else: start
    /// with [`Route::methods`], then add each method with [`on`](Self::on). The router
    /// answers any other method with a 405 whose `Allow` lists these (HEAD rides along with
    /// GET), before an application runs, so applications dispatch on nothing.
    ///
    /// ```
    /// use http::Method;
    /// use pgbridge::awsgi::{Body, Environ, Error, StartResponse};
    /// use pgbridge::routes::Route;
    ///
    /// async fn list(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     start_response.start("200 OK", [("Content-Type", "application/json")])?;
    ///     Ok(Body::from("[]"))
    /// }
    /// async fn create(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     start_response.start("201 Created", [("Content-Type", "application/json")])?;
    ///     Ok(Body::from("{}"))
    /// }
    ///
    /// let route = Route::methods("/todos", "list and create todos")
    ///     .on(Method::GET, list)
    ///     .on(Method::POST, create);
    /// assert_eq!(route.label(), "GET|POST /todos");
    /// ```
    pub fn methods(path: &'static str, summary: &'static str) -> Self {
        Self::with(&[], path, summary, |_| MethodRouter::new())
    }

    /// Serves `method` on this route with `app` (through the [`AwsgiLayer`], and the
    /// [`Validator`] when `VALIDATE_APPS` is on), adding it to the route's methods. Mounting
    /// panics if axum cannot route `method` (a mistake in the table, found by the first
    /// test).
    pub fn on<A: Application>(mut self, method: Method, app: A) -> Self {
        self.methods.push(method.clone());
        let path = self.path;
        let previous = self.build;
        self.build = Box::new(move |mount| {
            let Ok(filter) = MethodFilter::try_from(method.clone()) else {
                panic!("route {path}: axum cannot route the method {method}");
            };
            mount.add_app(previous(mount), filter, app)
        });
        self
    }

    /// Sets the query string the index shows after the path (`"seconds=N"`).
    pub fn query(mut self, query: &'static str) -> Self {
        self.query = query;
        self
    }

    /// Declares the route's class, which holds it to its share of the pool and of long
    /// requests ([`crate::bulkhead`]); routes are [`RouteClass::Short`] unless they say.
    ///
    /// ```
    /// use http::Method;
    /// use pgbridge::bulkhead::RouteClass;
    /// use pgbridge::routes::Route;
    ///
    /// let route = Route::handler(&[Method::GET], "/slow", "sleeps", || async { "" })
    ///     .class(RouteClass::AnonymousLong);
    /// assert_eq!(route.class, RouteClass::AnonymousLong);
    /// ```
    pub fn class(mut self, class: RouteClass) -> Self {
        self.class = class;
        self
    }

    /// Documents the route: `doc` adds its operations (and the schemas they name) to the
    /// API document that `GET /openapi.json` serves ([`document`]), written with utoipa's
    /// builders and the shortcuts of [`crate::api_doc::parts`]. A route may carry several.
    ///
    /// ```
    /// use http::Method;
    /// use pgbridge::api_doc::parts;
    /// use pgbridge::routes::{self, Route};
    /// use utoipa::openapi::OpenApi;
    ///
    /// fn ping(doc: &mut OpenApi) {
    ///     let operation = parts::operation("ping", "Answers pong")
    ///         .response("200", parts::text("Pong.", "text/plain"));
    ///     parts::add(doc, "/ping", parts::Method::Get, operation);
    /// }
    ///
    /// let route = Route::handler(&[Method::GET], "/ping", "answers pong", || async { "pong" })
    ///     .documented(ping);
    /// let doc = routes::document(&[route]);
    /// assert!(doc.paths.get_path_item("/ping").is_some());
    /// ```
    pub fn documented(mut self, doc: Document) -> Self {
        self.docs.push(doc);
        self
    }

    /// The index's `route`: methods joined by `|`, the path, and the query if any
    /// (`GET|POST /notes`, `GET /seed/poll-sleep?seconds=N`).
    pub fn label(&self) -> String {
        let methods: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        let mut label = format!("{} {}", methods.join("|"), self.path);
        if !self.query.is_empty() {
            label.push('?');
            label.push_str(self.query);
        }
        label
    }

    /// The methods as axum's filter (an empty list serves nothing).
    fn filter(&self) -> Option<MethodFilter> {
        self.methods
            .iter()
            .filter_map(|m| MethodFilter::try_from(m.clone()).ok())
            .reduce(MethodFilter::or)
    }
}

/// What a route's builder gets: the service's state, the route's methods and the layer
/// that serves applications.
pub struct Mount<'a> {
    state: &'a AppState,
    layer: &'a AwsgiLayer,
    validate: bool,
    methods: MethodFilter,
}

impl fmt::Debug for Mount<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mount")
            .field("validate", &self.validate)
            .finish_non_exhaustive()
    }
}

impl Mount<'_> {
    /// The service's state.
    pub fn state(&self) -> &AppState {
        self.state
    }

    /// The route's methods, as axum's filter.
    pub fn methods(&self) -> MethodFilter {
        self.methods
    }

    /// Serves `app` on the route's methods through the layer (under the [`Validator`] when
    /// configured).
    pub fn app<A: Application>(&self, app: A) -> MethodRouter {
        self.add_app(MethodRouter::new(), self.methods, app)
    }

    /// `router`, serving `app` on `methods` too (through the layer, as [`app`](Self::app)).
    fn add_app<A: Application>(
        &self,
        router: MethodRouter,
        methods: MethodFilter,
        app: A,
    ) -> MethodRouter {
        if self.validate {
            router.on_service(methods, self.layer.layer(Validator::new(app)))
        } else {
            router.on_service(methods, self.layer.layer(app))
        }
    }
}

/// One line of the index at `/`: `{"route": "GET /healthz", "description": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Entry {
    /// The methods, the path and the query if any (`GET /seed/poll-sleep?seconds=N`), as
    /// `Route::label` writes them.
    pub route: String,
    /// What the route does, in one line (its `summary`).
    pub description: &'static str,
}

/// Every route of the router, in table order: an environ extension the index reads.
#[derive(Debug, Clone, Default)]
pub struct Listing(pub Arc<[Entry]>);

impl Listing {
    /// The listing of `table`.
    pub fn of(table: &[Route]) -> Self {
        Self(
            table
                .iter()
                .map(|route| Entry {
                    route: route.label(),
                    description: route.summary,
                })
                .collect(),
        )
    }
}

/// The API document of `table`: the [base](crate::api_doc::base()), then each route's
/// [`docs`](Route::docs) in table order (see [`crate::api_doc`]).
///
/// ```
/// let doc = pgbridge::routes::document(&pgbridge::routes());
/// assert!(doc.paths.get_path_item("/openapi.json").is_some());
/// ```
pub fn document(table: &[Route]) -> utoipa::openapi::OpenApi {
    crate::api_doc::build(table.iter().flat_map(|route| route.docs.iter().copied()))
}

/// Mounts every route of `table` on one router, with the layer for applications, and
/// returns it with its [`Listing`]. Panics on a route with no method, or on two routes with
/// one path (as axum does): both are mistakes in the table, found by the first test.
pub(crate) fn mount(
    table: Vec<Route>,
    state: &AppState,
    layer: &AwsgiLayer,
    validate: bool,
) -> (Router, Listing) {
    let listing = Listing::of(&table);
    let mut router = Router::new();
    for route in table {
        let Some(methods) = route.filter() else {
            panic!("route {} lists no method", route.path);
        };
        let mount = Mount {
            state,
            layer,
            validate,
            methods,
        };
        let served = (route.build)(&mount);
        let served = match route.class {
            RouteClass::Short => served,
            class => served.route_layer(state.bulkheads.layer(class)),
        };
        router = router.route(route.path, served);
    }
    (router, listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_join_methods_and_add_the_query() {
        let route = Route::handler(
            &[Method::GET, Method::PATCH, Method::DELETE],
            "/notes/{id}",
            "one note",
            || async { "" },
        );
        assert_eq!(route.label(), "GET|PATCH|DELETE /notes/{id}");
        let route = Route::handler(&[Method::GET], "/seed", "", || async { "" }).query("n=1");
        assert_eq!(route.label(), "GET /seed?n=1");
        let listing = Listing::of(&[route]);
        assert_eq!(listing.0[0].route, "GET /seed?n=1");
    }

    #[test]
    fn the_filter_is_the_methods() {
        let route = Route::handler(&[Method::POST], "/x", "", || async { "" });
        assert_eq!(route.filter(), Some(MethodFilter::POST));
        let none = Route::handler(&[], "/x", "", || async { "" });
        assert_eq!(none.filter(), None);
    }
}
