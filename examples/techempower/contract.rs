//! The routes through the contract: WSGI-shaped applications behind `AwsgiLayer`.

use awsgi::{Body, Environ, Error, StartResponse};
use pgbridge::db::Db;

use crate::data::*;

pub(crate) const JSON: [(&str, &str); 2] =
    [("Content-Type", "application/json"), ("Server", "pgbridge")];

pub(crate) fn pool(environ: &Environ) -> Result<Db, Error> {
    environ
        .extensions()
        .get::<Db>()
        .cloned()
        .ok_or_else(|| Error::msg("no Db extension"))
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

pub(crate) async fn db(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let world = one_world(&pool(&environ)?).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&world)?))
}

pub(crate) async fn queries(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    let worlds = many_worlds(&pool(&environ)?, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

pub(crate) async fn shared_queries(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    let worlds = many_worlds_shared(&pool(&environ)?, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

pub(crate) async fn pooled_queries(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    let worlds = many_worlds_pooled(&pool(&environ)?, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

pub(crate) async fn sequential_queries(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    let worlds = many_worlds_sequentially(&pool(&environ)?, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

pub(crate) async fn updates(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let n = query_count(environ.query("queries").as_deref());
    let worlds = update_worlds(&pool(&environ)?, n).await?;
    sr.start("200 OK", JSON)?;
    Ok(Body::from(serde_json::to_vec(&worlds)?))
}

pub(crate) async fn fortunes(environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let html = fortunes_html(&pool(&environ)?).await?;
    sr.start(
        "200 OK",
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Server", "pgbridge"),
        ],
    )?;
    Ok(Body::from(html))
}
