//! The native axum twins of the contract's routes, over the same data functions.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use pgbridge::db::{Db, DbError};
use serde::Deserialize;

use crate::data::*;

#[derive(Deserialize)]
pub(crate) struct Count {
    queries: Option<String>,
}

pub(crate) struct Failure(DbError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        eprintln!("database error: {}", self.0);
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

impl From<DbError> for Failure {
    fn from(err: DbError) -> Self {
        Self(err)
    }
}

pub(crate) fn server(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("pgbridge"));
    response
}

pub(crate) async fn native_plaintext() -> Response {
    server(([(header::CONTENT_TYPE, "text/plain")], "Hello, World!").into_response())
}

pub(crate) async fn native_json() -> Response {
    server(Json(serde_json::json!({ "message": "Hello, World!" })).into_response())
}

pub(crate) async fn native_db(State(db): State<Arc<Db>>) -> Result<Response, Failure> {
    Ok(server(Json(one_world(&db).await?).into_response()))
}

pub(crate) async fn native_queries(
    State(db): State<Arc<Db>>,
    Query(q): Query<Count>,
) -> Result<Response, Failure> {
    let n = query_count(q.queries.as_deref());
    Ok(server(Json(many_worlds(&db, n).await?).into_response()))
}

pub(crate) async fn native_updates(
    State(db): State<Arc<Db>>,
    Query(q): Query<Count>,
) -> Result<Response, Failure> {
    let n = query_count(q.queries.as_deref());
    Ok(server(Json(update_worlds(&db, n).await?).into_response()))
}

pub(crate) async fn native_fortunes(State(db): State<Arc<Db>>) -> Result<Response, Failure> {
    Ok(server(Html(fortunes_html(&db).await?).into_response()))
}
