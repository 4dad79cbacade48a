//! The routes through the contract: WSGI-shaped applications behind `AwsgiLayer`.
//!
//! Each drops its environ once it has read what it needs, before it waits for Postgres, as
//! axum drops the request of a handler that extracts nothing: kept across the wait, the
//! environ's header map and extensions stay allocated through it, and with many requests
//! waiting glibc's per-thread caches run dry (`/db`: 27,790 instructions a request against
//! 26,806 with the drop; bench/RESULTS.md, stop 29).

use std::future::Future;
use std::sync::Arc;

use awsgi::{Application, Body, Environ, Error, StartResponse};
use pgbridge::db::Db;

use crate::data::*;

pub(crate) const JSON: [(&str, &str); 2] =
    [("Content-Type", "application/json"), ("Server", "pgbridge")];

/// A contract application over the `Db` it was built with, shared with each request as a
/// native handler's `State` is (one `Arc`, as the reference program's state; a `Db` clone
/// bumps several): no `Router::layer(Extension(…))`, which would wrap each of these routes in one
/// more boxed service per request than its native twin has.
pub(crate) fn with_db<F, Fut>(db: Arc<Db>, app: F) -> impl Application
where
    F: Fn(Arc<Db>, Environ, StartResponse) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Body, Error>> + Send,
{
    move |environ: Environ, sr: StartResponse| app(db.clone(), environ, sr)
}

pub(crate) async fn plaintext(_: Environ, sr: StartResponse) -> Result<Body, Error> {
    sr.start(
        "200 OK",
        [("Content-Type", "text/plain"), ("Server", "pgbridge")],
    )?;
    Ok(Body::from("Hello, World!"))
}

pub(crate) async fn json(_: Environ, sr: StartResponse) -> Result<Body, Error> {
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(
        &serde_json::json!({ "message": "Hello, World!" }),
    )?))
}

pub(crate) async fn db(db: Arc<Db>, environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    drop(environ);
    let world = one_world(&db).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&world)?))
}

pub(crate) async fn queries(
    db: Arc<Db>,
    environ: Environ,
    sr: StartResponse,
) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    drop(environ);
    let worlds = many_worlds(&db, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

pub(crate) async fn shared_queries(
    db: Arc<Db>,
    environ: Environ,
    sr: StartResponse,
) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    drop(environ);
    let worlds = many_worlds_shared(&db, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

pub(crate) async fn pooled_queries(
    db: Arc<Db>,
    environ: Environ,
    sr: StartResponse,
) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    drop(environ);
    let worlds = many_worlds_pooled(&db, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

pub(crate) async fn sequential_queries(
    db: Arc<Db>,
    environ: Environ,
    sr: StartResponse,
) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    drop(environ);
    let worlds = many_worlds_sequentially(&db, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

pub(crate) async fn updates(
    db: Arc<Db>,
    environ: Environ,
    sr: StartResponse,
) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    drop(environ);
    let worlds = update_worlds(&db, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

pub(crate) async fn fortunes(
    db: Arc<Db>,
    environ: Environ,
    sr: StartResponse,
) -> Result<Body, Error> {
    drop(environ);
    let html = fortunes_html(&db).await?;
    sr.start(
        "200 OK",
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Server", "pgbridge"),
        ],
    )?;
    Ok(Body::from(html))
}
