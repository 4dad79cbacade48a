//! Every setting of the service, in one place: flags, environment variables, defaults.
//!
//! Nothing else in the crate reads the environment. `pgbridge --help` lists all of these.
//!
//! Each default is written once: in the flag's attribute below, or, for the database's,
//! in [`crate::db::defaults`] (the body limit: the contract's `DEFAULT_BODY_LIMIT`), which
//! the attribute names. [`Config::new`] takes them from
//! the flags (parsing an empty argument list with the environment ignored), so there is
//! no second list to keep in step. The accessors that turn settings into the parts'
//! configurations are beside the parts: the database's in `db.rs`, the server's in
//! `server.rs`.

use std::net::SocketAddr;

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::db::{PoolMode, defaults};

mod db;
mod server;

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

    /// Which requests get a log line (`finished processing request`, with method, path,
    /// status, latency and request id): `errors` — answers 4xx and 5xx, and requests whose
    /// client hung up — or `all`. Every request is counted in `/metrics` either way.
    #[arg(long, env = "LOG_REQUESTS", value_enum, default_value_t = LogRequests::Errors)]
    pub log_requests: LogRequests,

    /// Address to listen on.
    #[arg(long = "bind", env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: SocketAddr,

    /// Most pooled Postgres connections.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = defaults::POOL_SIZE)]
    pub db_pool_size: usize,

    /// Milliseconds a request waits for a pooled connection before it gets 503.
    #[arg(long, env = "DB_POOL_TIMEOUT_MS", default_value_t = defaults::POOL_TIMEOUT_MS)]
    pub db_pool_timeout_ms: u64,

    /// Milliseconds opening one Postgres connection may take.
    #[arg(long, env = "DB_CONNECT_TIMEOUT_MS", default_value_t = defaults::CONNECT_TIMEOUT_MS)]
    pub db_connect_timeout_ms: u64,

    /// Postgres `statement_timeout`, in milliseconds, set on every connection.
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS", default_value_t = defaults::STATEMENT_TIMEOUT_MS)]
    pub db_statement_timeout_ms: u64,

    /// Shared, pipelined Postgres connections for single short statements (`db.shared()`);
    /// `0`: one per CPU core.
    #[arg(long, env = "DB_SHARED_CONNECTIONS", default_value_t = defaults::SHARED_CONNECTIONS)]
    pub db_shared_connections: usize,

    /// Most statements in flight on one shared connection; past that on all of them,
    /// statements wait in a bounded queue.
    #[arg(long, env = "DB_SHARED_MAX_IN_FLIGHT", default_value_t = defaults::SHARED_MAX_IN_FLIGHT)]
    pub db_shared_max_in_flight: usize,

    /// Most statements waiting for room on the shared connections; past that, 503 at once
    /// (backpressure, bounded memory). A waiting statement gets 503 after
    /// `DB_POOL_TIMEOUT_MS`.
    #[arg(long, env = "DB_SHARED_MAX_QUEUED", default_value_t = defaults::SHARED_MAX_QUEUED)]
    pub db_shared_max_queued: usize,

    /// Milliseconds until a request without response headers is answered 408 (its query
    /// is then cancelled on the server). Streaming bodies are not cut by it.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// Largest request body, in bytes; larger ones are answered 413.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = awsgi::DEFAULT_BODY_LIMIT)]
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

    /// Most open `/notes/events` streams of one account; past it a new one is answered 429
    /// with `Retry-After`.
    #[arg(long, env = "EVENTS_MAX_STREAMS_PER_ACCOUNT", default_value_t = 32)]
    pub events_max_streams_per_account: usize,

    /// Most `/notes/events` streams opening at once (authenticating, checking the note,
    /// reading the first page), so reopening streams cannot take the pool; others queue
    /// for their turn (up to `REQUEST_TIMEOUT_MS`). `0`: a quarter of `DB_POOL_SIZE` (at
    /// least 1).
    #[arg(long, env = "EVENTS_MAX_OPENING", default_value_t = 0)]
    pub events_max_opening: usize,

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

    /// Most open client connections from one address (the TCP peer's); past it a new one
    /// is answered 429 and closed. `0`: no limit. Behind a proxy every connection comes
    /// from the proxy's address: raise it above the proxy's connections, or set 0.
    #[arg(long, env = "MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    pub max_connections_per_address: usize,

    /// Most long-running requests (the seed demos, event streams) at once from one client
    /// address; past it they are answered 429 with `Retry-After`. `0`: no limit.
    #[arg(long, env = "MAX_LONG_REQUESTS_PER_ADDRESS", default_value_t = 64)]
    pub max_long_requests_per_address: usize,

    /// Most anonymous requests holding a pooled connection for long at once
    /// (`/seed/postgres-async`), so they cannot take the connections signed-in requests
    /// need; past it they are answered 503 with `Retry-After` at once. `0`: a quarter of
    /// `DB_POOL_SIZE` (at least 1).
    #[arg(long, env = "ANONYMOUS_DB_REQUESTS", default_value_t = 0)]
    pub anonymous_db_requests: usize,

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

    /// Failed logins to one account from one client address within a window before that
    /// address's logins to it answer 429. Never the account from every address: its owner
    /// logs in from another address at once.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_ACCOUNT", default_value_t = 5)]
    pub login_max_failures_per_account: u32,

    /// Failed logins per client address within a window before its logins answer 429.
    #[arg(long, env = "LOGIN_MAX_FAILURES_PER_ADDRESS", default_value_t = 50)]
    pub login_max_failures_per_address: u32,

    /// Length of the failed-login counting window, in seconds; the count slides from one
    /// window to the next (the previous window's failures count in proportion to their overlap).
    #[arg(long, env = "LOGIN_FAILURE_WINDOW_SECS", default_value_t = 900)]
    pub login_failure_window_secs: u64,

    /// Milliseconds an (account, address) pair or an address waits before its next login
    /// once its failures reach half its limit, doubling with each further failure (at most
    /// the window); 0: no delay, only the limits.
    #[arg(long, env = "LOGIN_FAILURE_DELAY_MS", default_value_t = 1_000)]
    pub login_failure_delay_ms: u64,

    /// Most live sessions per account: a login past it revokes the account's oldest.
    #[arg(long, env = "SESSION_MAX_PER_ACCOUNT", default_value_t = 20)]
    pub session_max_per_account: u32,

    /// Live sessions each process remembers, so that an authenticated request skips its
    /// session lookup; revocations reach every process at once through `LISTEN` on
    /// `EVENTS_DATABASE_URL` (see `auth::cache`). `0`: no cache, every request looks its
    /// session up.
    #[arg(long, env = "SESSION_CACHE_SIZE", default_value_t = 10_000)]
    pub session_cache_size: usize,

    /// Seconds a remembered session is trusted before it is looked up again (never past
    /// the session's own expiry).
    #[arg(long, env = "SESSION_CACHE_TTL_SECS", default_value_t = 60)]
    pub session_cache_ttl_secs: u64,

    /// Proxies whose `X-Forwarded-For` names the client (for login throttling), as
    /// comma-separated addresses or CIDR ranges. Unset: the peer's address is the client's,
    /// and the header is ignored.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::auth::client_addr::parse_trusted)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

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
    #[arg(long, env = "DB_POOL_MODE", value_enum, default_value_t = PoolMode::default())]
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
    #[arg(long, env = "DB_READ_POOL_SIZE", default_value_t = defaults::READ_POOL_SIZE)]
    pub db_read_pool_size: usize,

    /// Milliseconds a read carrying `Pgbridge-Min-Lsn` waits for a standby to replay that
    /// far before it goes to the primary instead.
    #[arg(long, env = "READ_LSN_WAIT_MS", default_value_t = defaults::READ_LSN_WAIT_MS)]
    pub read_lsn_wait_ms: u64,

    /// A standby whose replay lags more than this many milliseconds is skipped.
    #[arg(long, env = "READ_MAX_LAG_MS", default_value_t = defaults::READ_MAX_LAG_MS)]
    pub read_max_lag_ms: u64,

    /// Milliseconds between SIGTERM and closing the listener: meanwhile `/readyz` answers
    /// 503 and every response says `Connection: close`, so a proxy stops using this
    /// replica before it stops answering. Set it above the proxy's upstream
    /// `keepalive_timeout` (deploy/nginx.conf: 4 s).
    #[arg(long, env = "DRAIN_DELAY_MS", default_value_t = 0)]
    pub drain_delay_ms: u64,
}

/// Which requests are logged (`LOG_REQUESTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogRequests {
    /// Requests answered 4xx or 5xx, and requests whose client hung up first.
    Errors,
    /// Every request.
    All,
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

    /// Every field at its flag's default: the flags parsed from an empty argument list with
    /// their environment variables ignored, so the defaults are written only in the flags.
    fn defaults() -> Self {
        let matches = Self::command()
            .mut_args(|arg| arg.env(None::<&'static str>))
            .try_get_matches_from(["pgbridge"])
            .expect("every flag's default parses (tested)");
        Self::from_arg_matches(&matches).expect("the flags match the fields (tested)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags' defaults (what `--help` shows and `Config::new` takes) are what the
    /// database's own constructors give.
    #[test]
    fn defaults_match_the_flags() {
        let config = Config::new("postgres://app@db/app");
        assert_eq!(
            format!("{:?}", config.db()),
            format!("{:?}", crate::db::DbConfig::new("postgres://app@db/app"))
        );
        assert_eq!(
            format!("{:?}", config.read_route()),
            format!(
                "{:?}",
                crate::db::replica::ReadConfig::new(Vec::<String>::new())
            )
        );
    }

    /// `Config::new` reads no environment: every flag loses its variable.
    #[test]
    fn defaults_ignore_the_environment() {
        let command = Config::command().mut_args(|arg| arg.env(None::<&'static str>));
        assert!(command.get_arguments().all(|arg| arg.get_env().is_none()));
        assert!(
            Config::command()
                .get_arguments()
                .any(|arg| arg.get_env().is_some())
        );
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
    fn bad_values_are_refused_with_a_clear_message() {
        let err = Config::try_parse_from(["pgbridge", "--bind", "not-an-address"]).unwrap_err();
        assert!(err.to_string().contains("--bind"), "{err}");
    }
}
