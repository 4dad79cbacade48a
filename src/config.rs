//! Every setting of the service, in one place: flags, environment variables, defaults.
//!
//! Nothing else in the crate reads the environment. `pgbridge --help` lists all of these.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::db::{DbConfig, PoolMode, SharedConfig};

/// pgbridge: an asynchronous WSGI-shaped application server for Postgres web services.
#[derive(Debug, Clone, Parser)]
#[command(name = "pgbridge", version, about, long_about = None)]
pub struct Config {
    /// Postgres connection URL. Unset or empty: the service runs its own PostgreSQL
    /// cluster in `EMBEDDED_PG_DIR` (see `embedded_pg`).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub database_url: String,

    /// Folder of the embedded PostgreSQL cluster used when `DATABASE_URL` is unset: its
    /// data (`pgdata/`), Unix socket and log. Kept between runs.
    #[arg(long, env = "EMBEDDED_PG_DIR", default_value = ".pgbridge")]
    pub embedded_pg_dir: std::path::PathBuf,

    /// Log line format: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address to listen on.
    #[arg(long = "bind", env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: SocketAddr,

    /// Most pooled Postgres connections.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,

    /// Milliseconds a request waits for a pooled connection before it gets 503.
    #[arg(long, env = "DB_POOL_TIMEOUT_MS", default_value_t = 2_000)]
    pub db_pool_timeout_ms: u64,

    /// Milliseconds opening one Postgres connection may take.
    #[arg(long, env = "DB_CONNECT_TIMEOUT_MS", default_value_t = 3_000)]
    pub db_connect_timeout_ms: u64,

    /// Postgres `statement_timeout`, in milliseconds, set on every connection.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS", default_value_t = 15_000)]
    pub db_statement_timeout_ms: u64,

    /// Shared, pipelined Postgres connections for single short statements (`db.shared()`);
    /// `0`: one per CPU core.
    #[arg(long, env = "DB_SHARED_CONNECTIONS", default_value_t = 0)]
    pub db_shared_connections: usize,

    /// Most statements in flight on one shared connection; past that on all of them,
    /// statements wait in a bounded queue.
    #[arg(long, env = "DB_SHARED_MAX_IN_FLIGHT", default_value_t = 256)]
    pub db_shared_max_in_flight: usize,

    /// Most statements waiting for room on the shared connections; past that, 503 at once
    /// (backpressure, bounded memory). A waiting statement gets 503 after
    /// `DB_POOL_TIMEOUT_MS`.
    #[arg(long, env = "DB_SHARED_MAX_QUEUED", default_value_t = 4096)]
    pub db_shared_max_queued: usize,

    /// Milliseconds until a request without response headers is answered 408 (its query
    /// is then cancelled on the server). Streaming bodies are not cut by it.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// Largest request body, in bytes; larger ones are answered 413.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    pub body_limit_bytes: usize,

    /// Milliseconds `/readyz` waits for Postgres to answer.
    #[arg(long, env = "READY_TIMEOUT_MS", default_value_t = 1_000)]
    pub ready_timeout_ms: u64,

    /// Milliseconds between heartbeat comments on `/notes/events` streams.
    #[arg(long, env = "SSE_HEARTBEAT_MS", default_value_t = 15_000)]
    pub sse_heartbeat_ms: u64,

    /// Notifications buffered per process before a slow stream is caught up from the table.
    #[arg(long, env = "EVENTS_BUFFER", default_value_t = 1024)]
    pub events_buffer: usize,

    /// Most open `/notes/events` streams; past it a new one is answered 503 with `Retry-After`.
    #[arg(long, env = "EVENTS_MAX_STREAMS", default_value_t = 20_000)]
    pub events_max_streams: usize,

    /// Most event-stream catch-up queries (replay pages) running at once, so that replays
    /// cannot take the whole pool.
    #[arg(long, env = "EVENTS_MAX_CATCHUPS", default_value_t = 4)]
    pub events_max_catchups: usize,

    /// Events read from the table per catch-up query (one page of a replay).
    #[arg(long, env = "EVENTS_REPLAY_PAGE", default_value_t = 500)]
    pub events_replay_page: u32,

    /// Milliseconds a stream may wait for its client to take the last frame before it is
    /// dropped (the client reconnects with `Last-Event-ID` and loses nothing).
    #[arg(long, env = "EVENTS_STALL_TIMEOUT_MS", default_value_t = 30_000)]
    pub events_stall_timeout_ms: u64,

    /// Seconds stored events are kept for replay; older ones are pruned (0 keeps them all).
    #[arg(long, env = "EVENTS_RETENTION_SECS", default_value_t = 7 * 24 * 3600)]
    pub events_retention_secs: u64,

    /// Seconds between pruning runs.
    #[arg(long, env = "EVENTS_PRUNE_INTERVAL_SECS", default_value_t = 60)]
    pub events_prune_interval_secs: u64,

    /// Milliseconds between keep-alive round trips on the idle `LISTEN` connection.
    #[arg(long, env = "EVENTS_LISTEN_PING_MS", default_value_t = 30_000)]
    pub events_listen_ping_ms: u64,

    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// Milliseconds a client has, from the first byte of a request, to send all of its
    /// headers; slower connections (slowloris) are closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// Milliseconds a connection may sit with no request in flight and no byte of a new one
    /// (a keep-alive connection between requests, or a new one that sends nothing) before it
    /// is closed.
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Most open client connections; past it the server stops accepting until one closes.
    /// Lowered at start-up to fit the file-descriptor limit (less a reserve for Postgres).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Apply pending migrations at start-up (`MIGRATE=false` or `--no-migrate` to skip).
    #[arg(long, env = "MIGRATE", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub migrate: bool,

    /// Skip migrations at start-up (same as `--migrate false`).
    #[arg(long = "no-migrate", conflicts_with = "migrate")]
    pub no_migrate: bool,

    /// Wrap every application in the contract's `Validator` (a development aid, like
    /// Python's `wsgiref.validate`; the test suite turns it on).
    #[arg(long, env = "VALIDATE_APPS", default_value_t = false)]
    pub validate_apps: bool,

    /// Check `GET /healthz` on the bind address and exit 0 if it answers 200, 1 if not:
    /// the container healthcheck, for images with no shell or curl.
    #[arg(long)]
    pub healthcheck: bool,

    /// TLS to Postgres when `DATABASE_URL` sets no `sslmode` (libpq's `PGSSLMODE`): disable,
    /// allow, prefer (the default), require, verify-ca or verify-full.
    #[arg(long = "db-sslmode", env = "PGSSLMODE", value_parser = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])]
    pub db_sslmode: Option<String>,

    /// Root certificates (a PEM file, or `system` for the platform's) when `DATABASE_URL`
    /// sets no `sslrootcert` (libpq's `PGSSLROOTCERT`).
    #[arg(long = "db-sslrootcert", env = "PGSSLROOTCERT")]
    pub db_sslrootcert: Option<String>,

    // --- accounts and sessions (src/auth) ---
    /// Seconds a session token (and its cookie) stays valid after login.
    #[arg(long, env = "SESSION_TTL_SECS", default_value_t = 86_400)]
    pub session_ttl_secs: u64,

    /// Mark the session cookie `Secure` even when requests arrive over plain HTTP (set it
    /// behind a TLS-terminating proxy). Requests that arrive over HTTPS always get it.
    #[arg(long, env = "SESSION_COOKIE_SECURE", default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub session_cookie_secure: bool,

    /// Failed logins per account within a window before logins to it answer 429.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_ACCOUNT", default_value_t = 5)]
    pub login_max_failures_per_account: u32,

    /// Failed logins per client address within a window before its logins answer 429.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_ADDRESS", default_value_t = 50)]
    pub login_max_failures_per_address: u32,

    /// Length of the failed-login counting window, in seconds.
    #[arg(long, env = "LOGIN_FAILURE_WINDOW_SECS", default_value_t = 900)]
    pub login_failure_window_secs: u64,

    /// Bearer token `/metrics` requires. Unset: `/metrics` is public (keep it unset only
    /// when the bind address is private, as the loopback default is).
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    // --- end of accounts and sessions ---
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax.
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    // --- Scaling out: poolers, direct URLs, standbys (README "Scaling out") ---
    /// How DATABASE_URL reaches Postgres: `session` (directly, or a session-mode pooler)
    /// or `transaction` (a transaction-mode pooler such as PgBouncer: no startup options,
    /// unnamed statements, statement timeout enforced by the client).
    #[arg(long, env = "DB_POOL_MODE", value_enum, default_value_t = PoolMode::Session)]
    pub db_pool_mode: PoolMode,

    /// Postgres URL for migrations (session advisory lock: must reach Postgres directly).
    /// Defaults to DATABASE_URL.
    #[arg(long, env = "MIGRATE_DATABASE_URL", hide_env_values = true)]
    pub migrate_database_url: Option<String>,

    /// Postgres URL for the `LISTEN` connection of `/notes/events` (must reach Postgres
    /// directly or through a session-mode pooler). Defaults to DATABASE_URL.
    #[arg(long, env = "EVENTS_DATABASE_URL", hide_env_values = true)]
    pub events_database_url: Option<String>,

    /// Hot standbys for reads that tolerate lag, comma-separated URLs. Unset: every read
    /// goes to DATABASE_URL.
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true)]
    pub database_read_url: Option<String>,

    /// Most pooled connections per standby.
    #[arg(long, env = "DB_READ_POOL_SIZE", default_value_t = 8)]
    pub db_read_pool_size: usize,

    /// Milliseconds a read carrying `Pgbridge-Min-Lsn` waits for a standby to replay that
    /// far before it goes to the primary instead.
    #[arg(long, env = "READ_LSN_WAIT_MS", default_value_t = 50)]
    pub read_lsn_wait_ms: u64,

    /// A standby whose replay lags more than this many milliseconds is skipped.
    #[arg(long, env = "READ_MAX_LAG_MS", default_value_t = 5_000)]
    pub read_max_lag_ms: u64,

    /// Milliseconds between SIGTERM and closing the listener: meanwhile `/readyz` answers
    /// 503 and every response says `Connection: close`, so a proxy stops using this
    /// replica before it stops answering. Set it above the proxy's upstream
    /// `keepalive_timeout` (deploy/nginx.conf: 4 s).
    #[arg(long, env = "DRAIN_DELAY_MS", default_value_t = 0)]
    pub drain_delay_ms: u64,
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the span fields (request id, method, path).
    Json,
}

impl Config {
    /// The defaults, with `database_url`, reading no flags and no environment: for tests
    /// and for embedding the service.
    ///
    /// ```
    /// let config = pgbridge::config::Config::new("postgres://postgres@localhost/app");
    /// assert_eq!(config.bind_addr.port(), 8080);
    /// assert_eq!(config.body_limit_bytes, 1024 * 1024);
    /// ```
    pub fn new(database_url: impl Into<String>) -> Self {
        // An empty environment and argument list: every field takes its default.
        let mut config = Self::defaults();
        config.database_url = database_url.into();
        config
    }

    fn defaults() -> Self {
        Self {
            database_url: String::new(),
            embedded_pg_dir: ".pgbridge".into(),
            log_format: LogFormat::Text,
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            db_pool_size: 16,
            db_pool_timeout_ms: 2_000,
            db_connect_timeout_ms: 3_000,
            db_statement_timeout_ms: 15_000,
            db_shared_connections: 0,
            db_shared_max_in_flight: 256,
            db_shared_max_queued: 4096,
            request_timeout_ms: 30_000,
            body_limit_bytes: 1024 * 1024,
            ready_timeout_ms: 1_000,
            shutdown_grace_secs: 30,
            sse_heartbeat_ms: 15_000,
            events_buffer: 1024,
            events_max_streams: 20_000,
            events_max_catchups: 4,
            events_replay_page: 500,
            events_stall_timeout_ms: 30_000,
            events_retention_secs: 7 * 24 * 3600,
            events_prune_interval_secs: 60,
            events_listen_ping_ms: 30_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            migrate: true,
            no_migrate: false,
            validate_apps: false,
            healthcheck: false,
            db_sslmode: None,
            db_sslrootcert: None,
            session_ttl_secs: 86_400,
            session_cookie_secure: false,
            login_max_failures_per_account: 5,
            login_max_failures_per_address: 50,
            login_failure_window_secs: 900,
            metrics_token: None,
            log_filter: "info".into(),
            db_pool_mode: PoolMode::Session,
            migrate_database_url: None,
            events_database_url: None,
            database_read_url: None,
            db_read_pool_size: 8,
            read_lsn_wait_ms: 50,
            read_max_lag_ms: 5_000,
            drain_delay_ms: 0,
        }
    }

    /// `database_url` with `PGSSLMODE`/`PGSSLROOTCERT` applied where the URL sets neither
    /// `sslmode` nor `sslrootcert` (the URL wins, as in libpq).
    ///
    /// ```
    /// let mut config = pgbridge::config::Config::new("postgres://app@db.example/app");
    /// config.db_sslmode = Some("verify-full".into());
    /// config.db_sslrootcert = Some("system".into());
    /// assert_eq!(
    ///     config.effective_database_url(),
    ///     "postgres://app@db.example/app?sslmode=verify-full&sslrootcert=system"
    /// );
    /// ```
    pub fn effective_database_url(&self) -> String {
        crate::db::connect::with_defaults(
            &self.database_url,
            self.db_sslmode.as_deref(),
            self.db_sslrootcert.as_deref(),
        )
    }

    /// Applies `PGSSLMODE`/`PGSSLROOTCERT` (as [`effective_database_url`](Self::effective_database_url)
    /// does) to every URL the service connects with: `DATABASE_URL`, `MIGRATE_DATABASE_URL`,
    /// `EVENTS_DATABASE_URL` and each of `DATABASE_READ_URL`, so no connection goes out in
    /// clear text that the settings say must not.
    ///
    /// ```
    /// let mut config = pgbridge::config::Config::new("postgres://app@db/app");
    /// config.db_sslmode = Some("require".into());
    /// config.database_read_url = Some("postgres://app@r1/app, postgres://app@r2/app?sslmode=disable".into());
    /// config.fold_tls_defaults();
    /// assert_eq!(config.database_url, "postgres://app@db/app?sslmode=require");
    /// assert_eq!(
    ///     config.read_urls(),
    ///     ["postgres://app@r1/app?sslmode=require", "postgres://app@r2/app?sslmode=disable"]
    /// );
    /// ```
    pub fn fold_tls_defaults(&mut self) {
        let fold = |url: &str| {
            crate::db::connect::with_defaults(
                url,
                self.db_sslmode.as_deref(),
                self.db_sslrootcert.as_deref(),
            )
        };
        let database_url = fold(&self.database_url);
        let migrate = non_empty(&self.migrate_database_url).map(fold);
        let events = non_empty(&self.events_database_url).map(fold);
        let reads = non_empty(&self.database_read_url).map(|_| {
            self.read_urls()
                .iter()
                .map(|url| fold(url))
                .collect::<Vec<_>>()
                .join(",")
        });
        self.database_url = database_url;
        self.migrate_database_url = migrate.or(self.migrate_database_url.take());
        self.events_database_url = events.or(self.events_database_url.take());
        self.database_read_url = reads.or(self.database_read_url.take());
    }

    /// The pool's part of the configuration.
    pub fn db(&self) -> DbConfig {
        DbConfig {
            url: self.database_url.clone(),
            pool_size: self.db_pool_size,
            pool_wait: Duration::from_millis(self.db_pool_timeout_ms),
            connect_timeout: Duration::from_millis(self.db_connect_timeout_ms),
            statement_timeout: Duration::from_millis(self.db_statement_timeout_ms),
            shared: SharedConfig {
                connections: self.db_shared_connections,
                max_in_flight: self.db_shared_max_in_flight,
                max_queued: self.db_shared_max_queued,
            },
            pool_mode: self.db_pool_mode,
        }
    }

    /// The URL migrations use: `MIGRATE_DATABASE_URL`, else `DATABASE_URL`.
    pub fn migrate_url(&self) -> &str {
        non_empty(&self.migrate_database_url).unwrap_or(&self.database_url)
    }

    /// The URL the `LISTEN` connection uses: `EVENTS_DATABASE_URL`, else `DATABASE_URL`.
    pub fn events_url(&self) -> &str {
        non_empty(&self.events_database_url).unwrap_or(&self.database_url)
    }

    /// The standby URLs of `DATABASE_READ_URL`, in order.
    pub fn read_urls(&self) -> Vec<String> {
        non_empty(&self.database_read_url)
            .map(|urls| {
                urls.split(',')
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Refuses, with a message saying what to set, what cannot work through a
    /// transaction pooler: `LISTEN` (notifications reach a server connection the pooler
    /// has already lent to someone else) and the migrator's session advisory lock. Only
    /// the configuration is checked: `DB_POOL_MODE=transaction` says that DATABASE_URL is
    /// such a pooler, so the events and migration URLs must differ from it.
    pub fn check_pooler(&self) -> Result<(), String> {
        if self.db_pool_mode != PoolMode::Transaction {
            return Ok(());
        }
        if self.events_url() == self.database_url {
            return Err(
                "DB_POOL_MODE=transaction: LISTEN does not work through a transaction \
                 pooler (notifications would silently never arrive); set EVENTS_DATABASE_URL \
                 to a URL that reaches Postgres directly"
                    .into(),
            );
        }
        if self.migrate_on_start() && self.migrate_url() == self.database_url {
            return Err(
                "DB_POOL_MODE=transaction: migrations take a session advisory lock, \
                 which a transaction pooler does not keep; set MIGRATE_DATABASE_URL to a URL \
                 that reaches Postgres directly, or MIGRATE=false"
                    .into(),
            );
        }
        Ok(())
    }

    /// `drain_delay_ms` as a duration.
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay_ms)
    }

    /// The standbys' routing settings.
    pub fn read_route(&self) -> crate::db::replica::ReadConfig {
        crate::db::replica::ReadConfig {
            urls: self.read_urls(),
            pool_size: self.db_read_pool_size,
            lsn_wait: Duration::from_millis(self.read_lsn_wait_ms),
            max_lag: Duration::from_millis(self.read_max_lag_ms),
        }
    }

    /// Whether the service runs its own PostgreSQL cluster (`DATABASE_URL` unset or empty).
    ///
    /// ```
    /// use pgbridge::config::Config;
    /// assert!(Config::new("").embedded_database());
    /// assert!(!Config::new("postgres://app@db/app").embedded_database());
    /// ```
    pub fn embedded_database(&self) -> bool {
        self.database_url.trim().is_empty()
    }

    /// Whether to apply migrations at start-up.
    pub fn migrate_on_start(&self) -> bool {
        self.migrate && !self.no_migrate
    }

    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// `ready_timeout_ms` as a duration.
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_millis(self.ready_timeout_ms)
    }

    /// The client-connection limits, for [`crate::server`].
    pub fn connection_limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
            max_connections: self.max_connections.max(1),
        }
    }

    /// `shutdown_grace_secs` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written defaults agree with the ones `--help` shows.
    #[test]
    fn defaults_match_the_flags() {
        let parsed = Config::try_parse_from(["pgbridge"]).unwrap();
        let mut by_hand = Config::defaults();
        // The environment may set these while tests run; compare what it cannot touch.
        by_hand.database_url = parsed.database_url.clone();
        by_hand.embedded_pg_dir = parsed.embedded_pg_dir.clone();
        by_hand.log_format = parsed.log_format;
        by_hand.log_filter = parsed.log_filter.clone();
        by_hand.db_sslmode = parsed.db_sslmode.clone();
        by_hand.db_sslrootcert = parsed.db_sslrootcert.clone();
        assert_eq!(format!("{parsed:?}"), format!("{by_hand:?}"));
    }

    #[test]
    fn flags_override() {
        let config = Config::try_parse_from([
            "pgbridge",
            "--bind",
            "0.0.0.0:9000",
            "--database-url",
            "postgres://x@y/z",
            "--db-pool-size",
            "3",
        ])
        .unwrap();
        assert_eq!(config.bind_addr.port(), 9000);
        assert_eq!(config.database_url, "postgres://x@y/z");
        assert_eq!(config.db().pool_size, 3);
    }

    #[test]
    fn migrations_can_be_turned_off() {
        assert!(
            Config::try_parse_from(["pgbridge"])
                .unwrap()
                .migrate_on_start()
        );
        assert!(
            !Config::try_parse_from(["pgbridge", "--no-migrate"])
                .unwrap()
                .migrate_on_start()
        );
        assert!(
            !Config::try_parse_from(["pgbridge", "--migrate", "false"])
                .unwrap()
                .migrate_on_start()
        );
    }

    #[test]
    fn a_transaction_pooler_needs_direct_urls_for_listen_and_migrations() {
        let mut config = Config::new("postgres://app@pgbouncer:6432/app");
        assert!(config.check_pooler().is_ok(), "session mode checks nothing");
        config.db_pool_mode = PoolMode::Transaction;
        let err = config.check_pooler().unwrap_err();
        assert!(err.contains("EVENTS_DATABASE_URL"), "{err}");
        config.events_database_url = Some("postgres://app@postgres:5432/app".into());
        let err = config.check_pooler().unwrap_err();
        assert!(err.contains("MIGRATE_DATABASE_URL"), "{err}");
        config.migrate = false;
        assert!(config.check_pooler().is_ok());
        config.migrate = true;
        config.migrate_database_url = Some("postgres://app@postgres:5432/app".into());
        assert!(config.check_pooler().is_ok());
        assert_eq!(config.events_url(), "postgres://app@postgres:5432/app");
    }

    #[test]
    fn read_urls_are_comma_separated() {
        let config = Config::try_parse_from([
            "pgbridge",
            "--database-read-url",
            "postgres://a/x, postgres://b/x,",
        ])
        .unwrap();
        assert_eq!(config.read_urls(), ["postgres://a/x", "postgres://b/x"]);
        assert!(Config::new("postgres://a/x").read_urls().is_empty());
    }

    #[test]
    fn bad_values_are_refused_with_a_clear_message() {
        let err = Config::try_parse_from(["pgbridge", "--bind", "not-an-address"]).unwrap_err();
        assert!(err.to_string().contains("--bind"), "{err}");
    }
}
