//! `GET /seed/postgres-async?delay=SECONDS` — the port of the seed's `nginx-postgres-async`.
//!
//! The 2008 original drove psycopg2's asynchronous mode by hand: poll the connection, yield
//! to nginx with `fdevent.readable(conn.fileno())`, poll again. Every function between the
//! application and the query had to be a generator that passed those yields up. Here the
//! query is issued from [`report`] → [`sleep_in_postgres`], two calls deep, and each level is
//! an ordinary `async fn`: the request suspends on the Postgres socket through the whole
//! chain, and no thread waits for it.

use serde::Serialize;

use crate::db::{Db, DbError};
use awsgi::{Body, Environ, Error, StartResponse};

use super::bounded_query;
use crate::request::db;

/// The longest `delay` accepted, in seconds.
pub const MAX_DELAY: f64 = 10.0;

/// What one request reports: the rows Postgres returned after waiting.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SleepReport)]
pub struct Report {
    /// Seconds Postgres was asked to wait.
    pub delay: f64,
    /// The rows read after the wait.
    #[schema(inline)]
    pub rows: Vec<SleepRow>,
}

/// One row of the query.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SleepRow {
    /// The Postgres backend that ran the query.
    pub backend_pid: i32,
    /// When the statement started, by the server's clock.
    pub started_at: String,
    /// When the row was produced, after the wait.
    pub finished_at: String,
}

/// The route `/seed/postgres-async`.
pub fn routes() -> Vec<crate::routes::Route> {
    vec![
        crate::routes::Route::app(
            &[http::Method::GET],
            "/seed/postgres-async",
            "waits inside Postgres (pg_sleep, 0-10 s) and returns the rows it read; the request suspends on the socket",
            app,
        )
        .query("delay=SECONDS")
        // Anonymous, and it holds a pooled connection for up to 10 s: a bounded share.
        .class(crate::bulkhead::RouteClass::AnonymousDb)
        .documented(document),
    ]
}

fn document(doc: &mut utoipa::openapi::OpenApi) {
    use crate::api_doc::parts;
    use utoipa::openapi::schema::{ObjectBuilder, Type};

    parts::add_schema_of::<Report>(doc);
    let delay = ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(0))
        .maximum(Some(MAX_DELAY));
    let operation = parts::operation(
        "seedPostgresAsync",
        "Wait inside Postgres (pg_sleep) and return the rows read",
    )
    .description(Some(
        "The port of nginx-postgres-async: the request suspends on the Postgres socket; \
         hanging up cancels the query on the server.",
    ))
    .parameter(parts::query(
        "delay",
        &format!("Seconds to sleep in Postgres, 0 to {MAX_DELAY} (default 1)."),
        delay,
    ))
    .response(
        "200",
        parts::json(
            "The rows Postgres returned.",
            parts::schema_ref("SleepReport"),
        ),
    )
    .response(
        "400",
        parts::error(&format!("`delay` is not a number from 0 to {MAX_DELAY}.")),
    )
    .response("503", parts::unavailable());
    parts::add(doc, "/seed/postgres-async", parts::Method::Get, operation);
}

/// The application.
pub async fn app(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let delay = bounded_query(&environ, "delay", 0.0, MAX_DELAY, 1.0)?;
    let report = report(&db(&environ)?, delay).await?;
    start_response.start(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
        ],
    )?;
    Ok(Body::from(serde_json::to_vec(&report)?))
}

/// One level down: builds the report.
pub async fn report(db: &Db, delay: f64) -> Result<Report, DbError> {
    let rows = sleep_in_postgres(db, delay).await?;
    Ok(Report { delay, rows })
}

/// Two levels down: the query. It waits *inside* Postgres; the request waits on the socket.
/// If the request is dropped meanwhile, the query is cancelled on the server.
pub async fn sleep_in_postgres(db: &Db, delay: f64) -> Result<Vec<SleepRow>, DbError> {
    let conn = db.conn().await?;
    let rows = conn
        .query(
            concat!(
                "SELECT pg_backend_pid(), ",
                crate::utc_text!("statement_timestamp()"),
                ", ",
                crate::utc_text!("clock_timestamp()"),
                " FROM pg_sleep($1::float8)"
            ),
            &[&delay],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| SleepRow {
            backend_pid: row.get(0),
            started_at: row.get(1),
            finished_at: row.get(2),
        })
        .collect())
}
