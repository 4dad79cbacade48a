//! `GET /healthz`, `GET /readyz` and `GET /metrics`: native axum handlers beside the
//! contract's apps. The metrics registry itself is [`crate::metrics`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use utoipa::openapi::OpenApi;
use utoipa::openapi::schema::{ObjectBuilder, Type};

use crate::api_doc::parts::{self, Method};
use crate::db::failover::Sign;
use crate::db::{Db, Ready};
use crate::metrics::Metrics;
use crate::routes::Route;

/// The routes `/healthz` and `/readyz`.
pub fn routes() -> Vec<Route> {
    vec![
        Route::handler(
            &[http::Method::GET],
            "/healthz",
            "liveness: the process answers (no database)",
            healthz,
        )
        .documented(document_healthz),
        Route::with(
            &[http::Method::GET],
            "/readyz",
            "readiness: Postgres answers within the ready timeout",
            |mount| {
                let state = mount.state();
                let readiness = Readiness {
                    db: state.db.clone(),
                    listener_up: {
                        let listener = state.apps.notes.listener.clone();
                        Arc::new(move || listener.is_connected())
                    },
                    timeout: state.config.ready_timeout(),
                    draining: state.draining.clone(),
                };
                axum::routing::on(mount.methods(), readyz).with_state(readiness)
            },
        )
        .documented(document_readyz),
    ]
}

fn document_healthz(doc: &mut OpenApi) {
    let operation = parts::operation("healthz", "Liveness: the process answers (no database)")
        .response(
            "200",
            parts::json("Alive.", parts::constant("status", "ok")),
        );
    parts::add(doc, "/healthz", Method::Get, operation);
}

fn document_readyz(doc: &mut OpenApi) {
    let word = |values: &[&str], description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.to_vec()))
            .description(Some(description))
    };
    let ready = ObjectBuilder::new()
        .schema_type(Type::Object)
        .required("status")
        .property(
            "status",
            word(
                &["ready", "busy"],
                "`busy`: every pooled connection is checked out (still ready).",
            ),
        )
        .property("database", word(&["writable"], "The database takes writes."))
        .property(
            "listener",
            word(
                &["up", "down"],
                "The event feed's `LISTEN` connection (down alone does not make the service unready).",
            ),
        );
    let operation = parts::operation(
        "readyz",
        "Readiness: Postgres answers within the ready timeout",
    )
    .response("200", parts::json("Ready.", ready))
    .response(
        "503",
        parts::error(
            "The database does not answer (`database_unavailable`) or takes no writes \
             (`database_read_only`), both with `Retry-After`; or the service is shutting down \
             (`draining`).",
        ),
    );
    parts::add(doc, "/readyz", Method::Get, operation);
}

/// What `/readyz` needs.
#[derive(Clone)]
pub struct Readiness {
    /// The pool to ping.
    pub db: Db,
    /// Whether the `LISTEN` connection (the event feed's) is up.
    pub listener_up: Arc<dyn Fn() -> bool + Send + Sync>,
    /// How long the ping may take.
    pub timeout: Duration,
    /// Set when a graceful shutdown began.
    pub draining: Arc<AtomicBool>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("db", &self.db)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How long after a failover sign (a `25006` or a lost connection, see
/// [`crate::db::failover`]) `/readyz` reports it.
const RECENT_SIGN: Duration = Duration::from_secs(60);

/// Liveness: the process is up and serving. Touches no database. The body is a constant
/// (`{"status":"ok"}`), written as it is: no JSON value built and serialized per request.
pub async fn healthz() -> impl IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )],
        HEALTHY,
    )
}

/// What `/healthz` answers.
const HEALTHY: &str = r#"{"status":"ok"}"#;

/// Readiness: Postgres answers within the ready timeout, and takes writes. 503 (JSON
/// error shape) when it does not, so a load balancer stops sending traffic until it does.
///
/// The JSON says what is going on: `status` is `ready`, `busy`, `read_only` (the server
/// answers but refuses writes: a standby, a failover under way) or `unavailable`;
/// `database` is `writable`, `read_only` or `unavailable`; `listener` is `up` or `down`
/// (the event feed's `LISTEN` connection: while it is down, event streams get events
/// only by catching up); and `last_failover_sign`, for a minute after a statement failed
/// with `25006` or on a closed connection, says which and how many seconds ago. A
/// listener that is down alone does not make the replica unready (`status` stays `ready`).
///
/// A pool with every connection checked out is **busy, not down**: it answers 200 with
/// `"status": "busy"`. Every replica's pool fills under the same load spike, so reporting
/// that as unready would make a load balancer pull all replicas at once — turning load into
/// an outage. The alternative, a dedicated connection per probe, would cost a Postgres
/// backend fork per probe and add connections exactly when the server is most loaded.
/// A database that is really gone still shows: its connections fail and leave the pool,
/// so the next probe opens a new one and gets the connection error (503).
///
/// From the start of a graceful shutdown, 503 with code `draining`, so a load balancer
/// stops choosing this replica before it stops answering.
pub async fn readyz(State(ready): State<Readiness>) -> Response {
    if ready.draining.load(Ordering::Relaxed) {
        return crate::error::error_response(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "shutting down; use another replica",
        );
    }
    let listener = if (ready.listener_up)() { "up" } else { "down" };
    let sign = ready
        .db
        .failover()
        .last()
        .filter(|(_, ago)| *ago < RECENT_SIGN)
        .map(|(sign, ago)| {
            serde_json::json!({
                "sign": match sign {
                    Sign::ReadOnly => "read_only",
                    Sign::ConnectionLost => "connection_lost",
                },
                "seconds_ago": ago.as_secs(),
            })
        });
    let (status, database, error) = match ready.db.check_ready(ready.timeout).await {
        Ok(Ready::Answered) => ("ready", "writable", None),
        Ok(Ready::Busy) => ("busy", "writable", None),
        Ok(Ready::ReadOnly) => {
            // Connections opened until now may lead to the old primary: not reused.
            ready.db.failover().mark(Sign::ReadOnly);
            crate::unavailable_log::warn("database is read-only (failing over?)");
            (
                "read_only",
                "read_only",
                Some((
                    "database_read_only",
                    "the database is read-only (a failover may be under way); retry shortly",
                )),
            )
        }
        Err(err) => {
            crate::unavailable_log::warn_error("not ready", &err);
            (
                "unavailable",
                "unavailable",
                Some((
                    "database_unavailable",
                    "the database is unavailable; retry shortly",
                )),
            )
        }
    };
    let mut body = match error {
        Some((code, message)) => crate::error::error_body(code, message),
        None => serde_json::json!({}),
    };
    body["status"] = status.into();
    body["database"] = database.into();
    body["listener"] = listener.into();
    if let Some(sign) = sign {
        body["last_failover_sign"] = sign;
    }
    if error.is_some() {
        let mut response = (http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        response
    } else {
        Json(body).into_response()
    }
}

/// `GET /metrics`.
pub async fn metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    let mut response = metrics.render().into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
    );
    response
}

/// The route `/metrics`, behind `METRICS_TOKEN` when that is set.
pub fn metrics_routes() -> Vec<Route> {
    vec![Route::with(
        &[http::Method::GET],
        "/metrics",
        "counters in the Prometheus text format; needs Authorization: Bearer <METRICS_TOKEN> when that is set",
        |mount| {
            let state = mount.state();
            let token = crate::auth::AuthSettings::from_config(&state.config).metrics_token;
            axum::routing::on(mount.methods(), metrics)
                .with_state(state.metrics.clone())
                .route_layer(axum::middleware::from_fn_with_state(
                    token,
                    crate::auth::require_metrics_token,
                ))
        },
    )
    .documented(document_metrics)]
}

fn document_metrics(doc: &mut OpenApi) {
    let operation = parts::operation("metrics", "Counters in the Prometheus text format")
        .description(Some(
            "Requests by method and status, request durations, the pool, open event streams, \
             the `LISTEN` connection, queries cancelled because their client left. When the \
             service has a `METRICS_TOKEN`, it needs `Authorization: Bearer <METRICS_TOKEN>`; \
             without one it is open.",
        ))
        .response(
            "200",
            parts::text("Prometheus text exposition format 0.0.4.", "text/plain"),
        )
        .response(
            "401",
            parts::json(
                "`METRICS_TOKEN` is set and the request does not carry it.",
                parts::schema_ref(parts::ERROR),
            )
            .header("WWW-Authenticate", parts::www_authenticate()),
        )
        .security(parts::scheme("metricsToken"))
        .security(utoipa::openapi::security::SecurityRequirement::default());
    parts::add(doc, "/metrics", Method::Get, operation);
}
