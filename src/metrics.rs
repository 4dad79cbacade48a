//! `GET /metrics`: the service's counters in Prometheus's text format.
//!
//! Requests are counted by method and status, and timed to their response head (a stream's
//! lifetime is not a latency). The pool, the event feed and cancel-on-drop are read when
//! scraped. The registry belongs to the [`AppState`](crate::AppState), not to the process,
//! so two services in one process (as in the tests) keep separate counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use crate::AppState;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The request counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    /// Client-connection counters, kept by [`crate::server`].
    pub connections: std::sync::Arc<crate::server::ConnectionStats>,
}

impl Metrics {
    /// Counts one request.
    pub fn record(&self, method: &Method, status: StatusCode, elapsed: Duration) {
        let method = method_label(method);
        *self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry((method, status.as_u16()))
            .or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The exposition, with the gauges read from `state` now.
    pub fn render(&self, state: &AppState) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str(
            "# HELP pgbridge_http_requests_total HTTP requests answered, by method and status.\n",
        );
        out.push_str("# TYPE pgbridge_http_requests_total counter\n");
        for ((method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "pgbridge_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP pgbridge_http_request_duration_seconds Time to the response head.\n");
        out.push_str("# TYPE pgbridge_http_request_duration_seconds histogram\n");
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "pgbridge_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "pgbridge_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "pgbridge_http_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "pgbridge_http_request_duration_seconds_count {count}");

        let pool = state.db.status();
        gauge(
            &mut out,
            "pgbridge_db_pool_max_connections",
            "Most pooled connections.",
            pool.max_size,
        );
        gauge(
            &mut out,
            "pgbridge_db_pool_connections",
            "Pooled connections open.",
            pool.size,
        );
        gauge(
            &mut out,
            "pgbridge_db_pool_idle_connections",
            "Pooled connections open and idle.",
            pool.available,
        );
        gauge(
            &mut out,
            "pgbridge_db_pool_waiting",
            "Requests waiting for a pooled connection.",
            pool.waiting,
        );
        let listener = &state.feed.listener;
        gauge(
            &mut out,
            "pgbridge_events_subscribers",
            "Open /notes/events streams.",
            listener.subscribers(),
        );
        gauge(
            &mut out,
            "pgbridge_events_listener_up",
            "1 while the LISTEN connection is up.",
            usize::from(listener.is_connected()),
        );
        let streams = &state.feed.streams;
        gauge(
            &mut out,
            "pgbridge_events_open_streams",
            "Open /notes/events streams under the cap (EVENTS_MAX_STREAMS).",
            streams.open_streams(),
        );
        gauge(
            &mut out,
            "pgbridge_events_catch_ups",
            "Event streams replaying from the table now.",
            streams.catch_ups(),
        );
        out.push_str("# HELP pgbridge_events_dropped_slow_total Event streams dropped because their client stopped reading.\n");
        out.push_str("# TYPE pgbridge_events_dropped_slow_total counter\n");
        let _ = writeln!(
            out,
            "pgbridge_events_dropped_slow_total {}",
            streams.dropped()
        );
        self.render_connections(&mut out);
        out.push_str("# HELP pgbridge_db_cancels_total Queries cancelled on the server because their request went away.\n");
        out.push_str("# TYPE pgbridge_db_cancels_total counter\n");
        let _ = writeln!(out, "pgbridge_db_cancels_total {}", state.db.cancels_sent());
        let (standby, primary) = crate::db::replica::reads_served();
        out.push_str(
            "# HELP pgbridge_db_reads_total Lag-tolerant reads, by the server that served them.\n",
        );
        out.push_str("# TYPE pgbridge_db_reads_total counter\n");
        let _ = writeln!(
            out,
            "pgbridge_db_reads_total{{served_by=\"standby\"}} {standby}"
        );
        let _ = writeln!(
            out,
            "pgbridge_db_reads_total{{served_by=\"primary\"}} {primary}"
        );
        render_shared(&mut out, state.db.shared());
        out
    }
}

impl Metrics {
    fn render_connections(&self, out: &mut String) {
        use crate::server::TimedOut;
        let c = &self.connections;
        let _ = writeln!(
            out,
            "# HELP pgbridge_http_connections_open Client connections open.\n\
             # TYPE pgbridge_http_connections_open gauge\n\
             pgbridge_http_connections_open {}",
            c.open()
        );
        counter(
            out,
            "pgbridge_http_connections_total",
            "Client connections accepted.",
            c.accepted(),
        );
        counter(
            out,
            "pgbridge_http_connections_refused_total",
            "Accepts that failed for lack of file descriptors (retried after a back-off).",
            c.refused(),
        );
        counter(
            out,
            "pgbridge_http_connections_cap_reached_total",
            "Times the connection cap was reached and accepting paused.",
            c.cap_reached(),
        );
        out.push_str("# HELP pgbridge_http_connections_timed_out_total Connections closed by the server: headers too slow, or idle.\n");
        out.push_str("# TYPE pgbridge_http_connections_timed_out_total counter\n");
        for (label, reason) in [("header", TimedOut::Header), ("idle", TimedOut::Idle)] {
            let _ = writeln!(
                out,
                "pgbridge_http_connections_timed_out_total{{reason=\"{label}\"}} {}",
                c.timed_out(reason)
            );
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// The shared, pipelined connections: per connection, statements in flight and whether
/// it is up; refusals (503) and statements abandoned without a cancel.
fn render_shared(out: &mut String, shared: &crate::db::Shared) {
    let status = shared.status();
    out.push_str(
        "# HELP pgbridge_db_shared_in_flight Statements in flight on each shared connection.\n",
    );
    out.push_str("# TYPE pgbridge_db_shared_in_flight gauge\n");
    for (i, conn) in status.iter().enumerate() {
        let _ = writeln!(
            out,
            "pgbridge_db_shared_in_flight{{connection=\"{i}\"}} {}",
            conn.in_flight
        );
    }
    out.push_str("# HELP pgbridge_db_shared_up 1 while the shared connection is open.\n");
    out.push_str("# TYPE pgbridge_db_shared_up gauge\n");
    for (i, conn) in status.iter().enumerate() {
        let _ = writeln!(
            out,
            "pgbridge_db_shared_up{{connection=\"{i}\"}} {}",
            u8::from(conn.connected)
        );
    }
    out.push_str("# HELP pgbridge_db_shared_rejected_total Statements refused (503) because every shared connection was full.\n");
    out.push_str("# TYPE pgbridge_db_shared_rejected_total counter\n");
    let _ = writeln!(
        out,
        "pgbridge_db_shared_rejected_total {}",
        shared.rejected()
    );
    out.push_str("# HELP pgbridge_db_shared_abandoned_total Abandoned shared statements left to finish, not cancelled, because others shared the connection.\n");
    out.push_str("# TYPE pgbridge_db_shared_abandoned_total counter\n");
    let _ = writeln!(
        out,
        "pgbridge_db_shared_abandoned_total {}",
        crate::db::shared::abandoned_uncancelled()
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: usize) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Standard methods by name; anything else as `other`, so clients cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts and times every request.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .record(&method, response.status(), started.elapsed());
    response
}

/// `GET /metrics`.
pub async fn handler(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state);
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.record(&Method::GET, StatusCode::OK, Duration::from_millis(3));
        metrics.record(
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::NOT_FOUND,
            Duration::from_secs(20),
        );
        assert_eq!(metrics.buckets[0].load(Ordering::Relaxed), 0); // ≤ 1 ms
        assert_eq!(metrics.buckets[2].load(Ordering::Relaxed), 1); // ≤ 5 ms
        assert_eq!(
            metrics.buckets[BUCKETS.len() - 1].load(Ordering::Relaxed),
            1
        ); // ≤ 10 s
        assert_eq!(metrics.count.load(Ordering::Relaxed), 2);
        let requests = metrics.requests.lock().unwrap();
        assert_eq!(requests.get(&("GET", 200)), Some(&1));
        assert_eq!(requests.get(&("other", 404)), Some(&1));
    }
}
