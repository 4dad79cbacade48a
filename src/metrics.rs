//! The service's metrics registry: its counters, rendered in Prometheus's text format
//! (version 0.0.4) on the [`prometheus_client`] crate. The route that serves them,
//! `GET /metrics`, is an application's ([`crate::apps::health::metrics_routes`]): this
//! module knows nothing of routes or tokens.
//!
//! Requests are counted by method and status, and timed to their response head (a stream's
//! lifetime is not a latency). Everything else is read when scraped, by a
//! [`Collector`]: the pool, the shared connections, cancel-on-drop and lag-tolerant reads
//! ([`DbGauges`]), client connections, and each application's own gauges (the notes'
//! event feed registers its own, see [`crate::apps::Apps::register_metrics`]). The
//! registry belongs to the [`AppState`](crate::AppState), not to the process, so two
//! services in one process (as in the tests) keep separate counts.
//!
//! Names are as Prometheus expects: counters end in `_total` (prometheus-client adds the
//! suffix, so a counter is registered without it), and help texts end in a full stop
//! (prometheus-client adds it to registered metrics; collectors write their own).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::db::Db;
use crate::db::replica::ReadRouter;
use crate::server::ConnectionStats;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The labels of `pgbridge_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    status: u16,
}

/// The service's registry: request counters, and the collectors read on each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    /// Client-connection counters, kept by [`crate::server`].
    pub connections: Arc<ConnectionStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "pgbridge_http_requests",
            "HTTP requests answered, by method and status",
            requests.clone(),
        );
        let duration = Histogram::new(BUCKETS);
        registry.register(
            "pgbridge_http_request_duration_seconds",
            "Time to the response head",
            duration.clone(),
        );
        let connections = Arc::new(ConnectionStats::default());
        registry.register_collector(Box::new(ConnectionGauges(connections.clone())));
        Self {
            registry,
            requests,
            duration,
            connections,
        }
    }
}

impl Metrics {
    /// Adds a collector, read on every scrape: how an application exposes its own gauges.
    ///
    /// ```
    /// use prometheus_client::collector::Collector;
    /// use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    /// use prometheus_client::metrics::gauge::ConstGauge;
    /// use pgbridge::metrics::Metrics;
    ///
    /// #[derive(Debug)]
    /// struct Queue;
    ///
    /// impl Collector for Queue {
    ///     fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    ///         let depth = ConstGauge::new(3i64);
    ///         let metric = encoder.encode_descriptor(
    ///             "todos_queue_depth", "Todos waiting.", None, depth.metric_type())?;
    ///         depth.encode(metric)
    ///     }
    /// }
    ///
    /// let mut metrics = Metrics::default();
    /// metrics.register_collector(Queue);
    /// assert!(metrics.render().contains("todos_queue_depth 3\n"));
    /// ```
    pub fn register_collector(&mut self, collector: impl Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// Counts one request.
    pub fn record(&self, method: &Method, status: StatusCode, elapsed: Duration) {
        let labels = RequestLabels {
            method: method_label(method),
            status: status.as_u16(),
        };
        self.requests.get_or_create(&labels).inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// The exposition, with every collector read now.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Err(err) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            // Writing to a String fails only if a collector reports an error.
            tracing::error!(error = %err, "encoding /metrics failed");
        }
        out
    }
}

/// The database's gauges and counters, read on each scrape: the pool, the shared
/// connections, cancels sent for abandoned queries, and reads by the server that served them.
///
/// With one runtime per core (`RUNTIME=percore`) the process has one [`Db`] per core besides
/// its own: [`DbGauges::summed`] reports them as one — pools added up, shared connections
/// numbered in turn.
#[derive(Debug, Clone)]
pub struct DbGauges(pub Db);

impl DbGauges {
    /// The gauges of several handles, reported as one.
    ///
    /// ```no_run
    /// # fn demo(main: pgbridge::db::Db, per_core: Vec<pgbridge::db::Db>) {
    /// use pgbridge::metrics::{DbGauges, Metrics};
    ///
    /// let mut metrics = Metrics::default();
    /// metrics.register_collector(DbGauges::summed(main, per_core));
    /// # }
    /// ```
    pub fn summed(main: Db, more: Vec<Db>) -> SummedDbGauges {
        let mut all = vec![main];
        all.extend(more);
        SummedDbGauges(all)
    }
}

/// Several [`Db`]s' gauges as one: see [`DbGauges::summed`].
#[derive(Debug, Clone)]
pub struct SummedDbGauges(Vec<Db>);

impl Collector for DbGauges {
    fn encode(&self, e: DescriptorEncoder<'_>) -> fmt::Result {
        encode_dbs(std::slice::from_ref(&self.0), e)
    }
}

impl Collector for SummedDbGauges {
    fn encode(&self, e: DescriptorEncoder<'_>) -> fmt::Result {
        encode_dbs(&self.0, e)
    }
}

fn encode_dbs(dbs: &[Db], mut e: DescriptorEncoder<'_>) -> fmt::Result {
    let mut pool = crate::db::PoolStatus {
        max_size: 0,
        size: 0,
        available: 0,
        waiting: 0,
    };
    for db in dbs {
        let one = db.status();
        pool.max_size += one.max_size;
        pool.size += one.size;
        pool.available += one.available;
        pool.waiting += one.waiting;
    }
    for (name, help, value) in [
        (
            "pgbridge_db_pool_max_connections",
            "Most pooled connections.",
            pool.max_size,
        ),
        (
            "pgbridge_db_pool_connections",
            "Pooled connections open.",
            pool.size,
        ),
        (
            "pgbridge_db_pool_idle_connections",
            "Pooled connections open and idle.",
            pool.available,
        ),
        (
            "pgbridge_db_pool_waiting",
            "Requests waiting for a pooled connection.",
            pool.waiting,
        ),
    ] {
        gauge(&mut e, name, help, value)?;
    }
    counter(
        &mut e,
        "pgbridge_db_cancels",
        "Queries cancelled on the server because their request went away.",
        dbs.iter().map(Db::cancels_sent).sum(),
    )?;
    counter(
        &mut e,
        "pgbridge_db_server_prepares",
        "Owner-scoped units run again to prepare a statement on a transaction pooler's server connection.",
        dbs.iter().map(Db::server_prepares).sum(),
    )?;
    counter(
        &mut e,
        "pgbridge_db_read_retries",
        "Reads that met a failover before answering and ran once more elsewhere.",
        crate::db::replica::reads_retried(),
    )?;
    let (standby, primary) = crate::db::replica::reads_served();
    let mut reads = e.encode_descriptor(
        "pgbridge_db_reads",
        "Lag-tolerant reads, by the server that served them.",
        None,
        MetricType::Counter,
    )?;
    for (served_by, n) in [("standby", standby), ("primary", primary)] {
        ConstCounter::new(n).encode(reads.encode_family(&[("served_by", served_by)])?)?;
    }
    let status: Vec<_> = dbs.iter().flat_map(|db| db.shared().status()).collect();
    let mut in_flight = e.encode_descriptor(
        "pgbridge_db_shared_in_flight",
        "Statements in flight on each shared connection.",
        None,
        MetricType::Gauge,
    )?;
    for (i, conn) in status.iter().enumerate() {
        ConstGauge::new(to_i64(conn.in_flight))
            .encode(in_flight.encode_family(&[("connection", i)])?)?;
    }
    let mut up = e.encode_descriptor(
        "pgbridge_db_shared_up",
        "1 while the shared connection is open.",
        None,
        MetricType::Gauge,
    )?;
    for (i, conn) in status.iter().enumerate() {
        ConstGauge::new(i64::from(conn.connected))
            .encode(up.encode_family(&[("connection", i)])?)?;
    }
    counter(
        &mut e,
        "pgbridge_db_shared_rejected",
        "Statements refused (503) because every shared connection was full.",
        dbs.iter().map(|db| db.shared().rejected()).sum(),
    )?;
    counter(
        &mut e,
        "pgbridge_db_read_only_errors",
        "Statements refused with SQLSTATE 25006 (the server is read-only: a standby after a failover).",
        dbs.iter().map(|db| db.failover().counts().read_only).sum(),
    )?;
    counter(
        &mut e,
        "pgbridge_db_connections_lost",
        "Database connections found closed by the server or broken on the wire.",
        dbs.iter().map(|db| db.failover().counts().lost).sum(),
    )?;
    counter(
        &mut e,
        "pgbridge_db_shared_abandoned",
        "Abandoned shared statements left to finish, not cancelled, because others shared the connection.",
        crate::db::shared::abandoned_uncancelled(),
    )
}

/// The standbys behind `DATABASE_READ_URL`, as the read router last checked them:
/// whether each serves reads, its replay lag, and the bound (`READ_MAX_LAG_MS`).
#[derive(Debug, Clone)]
pub struct StandbyGauges(pub ReadRouter);

impl Collector for StandbyGauges {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let standbys = self.0.standbys();
        if standbys.is_empty() {
            return Ok(());
        }
        let max_lag = ConstGauge::new(self.0.max_lag().as_secs_f64());
        max_lag.encode(e.encode_descriptor(
            "pgbridge_db_read_max_lag_seconds",
            "The replay lag past which a standby serves no reads (READ_MAX_LAG_MS).",
            None,
            MetricType::Gauge,
        )?)?;
        let mut usable = e.encode_descriptor(
            "pgbridge_db_standby_usable",
            "1 while the standby answers, is in recovery and lags less than the bound.",
            None,
            MetricType::Gauge,
        )?;
        for (i, standby) in standbys.iter().enumerate() {
            ConstGauge::new(i64::from(standby.usable))
                .encode(usable.encode_family(&[("standby", i)])?)?;
        }
        let mut lag = e.encode_descriptor(
            "pgbridge_db_standby_lag_seconds",
            "The standby's replay lag at its last check (absent while it does not answer).",
            None,
            MetricType::Gauge,
        )?;
        for (i, standby) in standbys.iter().enumerate() {
            if let Some(value) = standby.lag {
                ConstGauge::new(value.as_secs_f64())
                    .encode(lag.encode_family(&[("standby", i)])?)?;
            }
        }
        Ok(())
    }
}

/// Client connections, from [`ConnectionStats`].
#[derive(Debug)]
struct ConnectionGauges(Arc<ConnectionStats>);

impl Collector for ConnectionGauges {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        use crate::server::TimedOut;
        let c = &self.0;
        let open = ConstGauge::new(to_i64(c.open()));
        open.encode(e.encode_descriptor(
            "pgbridge_http_connections_open",
            "Client connections open.",
            None,
            MetricType::Gauge,
        )?)?;
        if let Some(by_core) = c.open_by_core() {
            let mut per_core = e.encode_descriptor(
                "pgbridge_http_connections_open_per_core",
                "Client connections open on each core's runtime (RUNTIME=percore): a connection stays on the core that accepted it.",
                None,
                MetricType::Gauge,
            )?;
            for (core, open) in by_core.into_iter().enumerate() {
                ConstGauge::new(to_i64(open)).encode(per_core.encode_family(&[("core", core)])?)?;
            }
        }
        counter(
            &mut e,
            "pgbridge_http_connections",
            "Client connections accepted.",
            c.accepted(),
        )?;
        counter(
            &mut e,
            "pgbridge_http_connections_refused",
            "Accepts that failed for lack of file descriptors (retried after a back-off).",
            c.refused(),
        )?;
        counter(
            &mut e,
            "pgbridge_http_connections_cap_reached",
            "Times the connection cap was reached and accepting paused.",
            c.cap_reached(),
        )?;
        counter(
            &mut e,
            "pgbridge_http_connections_evicted",
            "Connections closed at the cap to make room, each serving a long anonymous request.",
            c.evicted(),
        )?;
        counter(
            &mut e,
            "pgbridge_http_connections_address_refused",
            "Connections answered 429 and closed: their address had MAX_CONNECTIONS_PER_ADDRESS open.",
            c.address_refused(),
        )?;
        counter(
            &mut e,
            "pgbridge_http_malformed_requests",
            "Requests that could not be parsed, answered 400, 414 or 431 by the server.",
            c.malformed(),
        )?;
        let mut timed_out = e.encode_descriptor(
            "pgbridge_http_connections_timed_out",
            "Connections closed by the server: headers too slow, or idle.",
            None,
            MetricType::Counter,
        )?;
        for (label, reason) in [("header", TimedOut::Header), ("idle", TimedOut::Idle)] {
            ConstCounter::new(c.timed_out(reason))
                .encode(timed_out.encode_family(&[("reason", label)])?)?;
        }
        Ok(())
    }
}

/// Writes one unlabelled gauge from a collector.
pub fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: usize) -> fmt::Result {
    let gauge = ConstGauge::new(to_i64(value));
    gauge.encode(e.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// Writes one unlabelled counter from a collector; `name` without `_total` (it is added).
pub fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(e.encode_descriptor(name, help, None, counter.metric_type())?)
}

fn to_i64(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_and_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.record(&Method::GET, StatusCode::OK, Duration::from_millis(3));
        metrics.record(
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::NOT_FOUND,
            Duration::from_secs(20),
        );
        let text = metrics.render();
        for line in [
            "# HELP pgbridge_http_requests_total HTTP requests answered, by method and status.",
            "# TYPE pgbridge_http_requests_total counter",
            "pgbridge_http_requests_total{method=\"GET\",status=\"200\"} 1",
            "pgbridge_http_requests_total{method=\"other\",status=\"404\"} 1",
            "# TYPE pgbridge_http_request_duration_seconds histogram",
            "pgbridge_http_request_duration_seconds_bucket{le=\"0.001\"} 0",
            "pgbridge_http_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "pgbridge_http_request_duration_seconds_bucket{le=\"10\"} 1",
            "pgbridge_http_request_duration_seconds_bucket{le=\"+Inf\"} 2",
            "pgbridge_http_request_duration_seconds_count 2",
            "# TYPE pgbridge_http_connections_total counter",
            "pgbridge_http_connections_total 0",
            "pgbridge_http_connections_open 0",
            "pgbridge_http_connections_timed_out_total{reason=\"idle\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "0.0.4 has no EOF marker:\n{text}");
        assert!(
            !text.contains("_per_core"),
            "one runtime: no per-core gauge:\n{text}"
        );
    }

    #[test]
    fn with_a_runtime_per_core_open_connections_are_shown_per_core() {
        let metrics = Metrics::default();
        metrics.connections.count_by_core(2);
        metrics.connections.on_open(Some(1));
        metrics.connections.on_open(Some(1));
        metrics.connections.on_close(Some(1));
        let text = metrics.render();
        for line in [
            "# TYPE pgbridge_http_connections_open_per_core gauge",
            "pgbridge_http_connections_open_per_core{core=\"0\"} 0",
            "pgbridge_http_connections_open_per_core{core=\"1\"} 1",
            "pgbridge_http_connections_open 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
