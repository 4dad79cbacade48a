//! Startup as a library function: [`Application::build`] binds, starts the embedded
//! PostgreSQL when `DATABASE_URL` is unset, and builds the state; [`Application::run_until`]
//! waits for the database, applies the migrations, serves, and drains when its `shutdown`
//! future resolves. The binary (`src/main.rs`) only reads the configuration, sets up
//! logging, and runs this with SIGTERM/SIGINT as the shutdown; the integration tests run the
//! same in-process.
//!
//! | file | job |
//! | --- | --- |
//! | `mod.rs` | [`Application`] and its [`Builder`]: what is started, in which order |
//! | `listen.rs` | the listening socket (passed in `LISTEN_FDS`, or bound), the address to open |
//! | `serve.rs` | wait for the database, migrate, fit the connection cap, serve, drain |
//! | `error.rs` | [`StartError`] |
//! | `healthcheck.rs` | `pgbridge --healthcheck`: `GET /healthz` on the bind address |

mod error;
mod healthcheck;
mod listen;
mod serve;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::embedded_pg::EmbeddedPg;
use crate::server::Runtime;
use crate::state::AppState;

pub use error::StartError;
pub use healthcheck::healthcheck;
pub use listen::loopback;

/// The service, bound and built, not yet serving.
///
/// ```no_run
/// # async fn demo() -> Result<(), pgbridge::StartError> {
/// use pgbridge::Application;
/// use pgbridge::config::Config;
///
/// let mut config = Config::new("postgres://postgres@localhost/postgres");
/// config.bind_addr = "127.0.0.1:0".parse().unwrap(); // any free port
/// let app = Application::build(config).await?;
/// println!("serving on http://{}/", app.addr());
/// // Waits for Postgres, migrates, serves; drains on Ctrl-C.
/// app.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    /// One state per core (`RUNTIME=percore`); empty for one multi-threaded runtime.
    per_core: Vec<AppState>,
    /// The cluster started for a missing `DATABASE_URL`, stopped when serving ends.
    embedded: Option<EmbeddedPg>,
}

/// How to start an [`Application`] beyond its [`Config`]: the socket to serve on and the
/// thread layout. Made by [`Application::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), pgbridge::StartError> {
/// use clap::Parser;
/// use pgbridge::Application;
/// use pgbridge::server::Runtime;
///
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let app = Application::builder(pgbridge::config::Config::parse())
///     .listener(listener)
///     .runtime(Runtime::PerCore)
///     .build()
///     .await?;
/// # let _ = app; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Builder {
    config: Config,
    listener: Option<std::net::TcpListener>,
    runtime: Runtime,
}

impl Builder {
    /// Serve on `listener`, already listening (a socket passed by a service manager in
    /// `LISTEN_FDS`), instead of binding `BIND_ADDR`.
    ///
    /// ```no_run
    /// # async fn demo(config: pgbridge::config::Config) -> Result<(), pgbridge::StartError> {
    /// let held = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = held.local_addr()?;
    /// let app = pgbridge::Application::builder(config).listener(held).build().await?;
    /// assert_eq!(app.addr(), addr);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// The thread layout (`RUNTIME`): with [`Runtime::PerCore`], every core serves on a
    /// current-thread runtime of its own, and the caller's runtime only starts things and
    /// carries the event feed's `LISTEN` connection.
    ///
    /// ```no_run
    /// # async fn demo(config: pgbridge::config::Config) -> Result<(), pgbridge::StartError> {
    /// use pgbridge::server::Runtime;
    /// let layout = Runtime::parse(Some("percore")).map_err(std::io::Error::other)?;
    /// let app = pgbridge::Application::builder(config).runtime(layout).build().await?;
    /// # let _ = app; Ok(()) }
    /// ```
    #[must_use]
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = runtime;
        self
    }

    /// Binds first (a busy port fails at once, before any database work), then starts the
    /// embedded PostgreSQL if `DATABASE_URL` is unset, then builds the state (the pools open
    /// no connection yet). Needs a tokio runtime. The builder's example is above
    /// ([`Builder`]).
    pub async fn build(self) -> Result<Application, StartError> {
        let Self {
            mut config,
            listener,
            runtime,
        } = self;
        let listener = listen::listen(config.bind_addr, listener).await?;
        let addr = listener.local_addr()?;
        let embedded = if config.embedded_database() {
            let pg = start_embedded(&config).await?;
            config.database_url = pg.url();
            Some(pg)
        } else {
            None
        };
        let cores = match runtime {
            Runtime::Multi => 0,
            Runtime::PerCore => Runtime::cores(),
        };
        let (state, per_core) = match AppState::per_core(config, cores) {
            Ok(states) => states,
            Err(err) => {
                stop_embedded(embedded).await;
                return Err(err.into());
            }
        };
        Ok(Application {
            listener,
            addr,
            state,
            per_core,
            embedded,
        })
    }
}

impl Application {
    /// [`Builder::build`] with `config` alone: binds `BIND_ADDR`, one multi-threaded
    /// runtime (the caller's).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), pgbridge::StartError> {
    /// use clap::Parser;
    /// // The flags and environment variables, as the binary reads them.
    /// let app = pgbridge::Application::build(pgbridge::config::Config::parse()).await?;
    /// # let _ = app; Ok(()) }
    /// ```
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::builder(config).build().await
    }

    /// A [`Builder`], to pass a listening socket or choose the thread layout.
    ///
    /// ```no_run
    /// # async fn demo(config: pgbridge::config::Config) -> Result<(), pgbridge::StartError> {
    /// let app = pgbridge::Application::builder(config).build().await?;
    /// # let _ = app; Ok(()) }
    /// ```
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            listener: None,
            runtime: Runtime::Multi,
        }
    }

    /// The address it listens on (with `BIND_ADDR` port 0, the port the system chose).
    ///
    /// ```no_run
    /// # async fn demo(mut config: pgbridge::config::Config) -> Result<(), pgbridge::StartError> {
    /// config.bind_addr = "127.0.0.1:0".parse().unwrap();
    /// let app = pgbridge::Application::build(config).await?;
    /// assert_ne!(app.addr().port(), 0);
    /// # Ok(()) }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the handlers share: the pool, the applications' state, the settings (with
    /// `DATABASE_URL` set to the embedded cluster's when it runs one).
    ///
    /// ```no_run
    /// # async fn demo(config: pgbridge::config::Config) -> Result<(), pgbridge::StartError> {
    /// let app = pgbridge::Application::build(config).await?;
    /// println!("serving on {}", app.state().config.database_url);
    /// # Ok(()) }
    /// ```
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Waits for Postgres (retrying with a bounded backoff; a permanent error such as a
    /// wrong password fails at once), applies pending migrations (unless `MIGRATE=false`),
    /// and serves until `shutdown` resolves; then drains: `/readyz` turns 503, event
    /// streams end, the listener stays open for `DRAIN_DELAY_MS`, in-flight requests get
    /// `SHUTDOWN_GRACE_SECS` to finish, and the queries of those dropped after it are
    /// cancelled on the server. `shutdown` resolving before Postgres answers ends it at
    /// once, with `Ok`. The embedded PostgreSQL, if any, is stopped last (its data kept).
    ///
    /// ```no_run
    /// # async fn demo(config: pgbridge::config::Config) -> Result<(), pgbridge::StartError> {
    /// let app = pgbridge::Application::build(config).await?;
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let serving = tokio::spawn(app.run_until(async { let _ = stopped.await; }));
    /// // ... later: drain and stop.
    /// let _ = stop.send(());
    /// serving.await.expect("not cancelled")?;
    /// # Ok(()) }
    /// ```
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let Self {
            listener,
            addr: _,
            state,
            per_core,
            embedded,
        } = self;
        let served = serve::serve(listener, state, per_core, shutdown).await;
        stop_embedded(embedded).await;
        served
    }
}

/// Starts (or reuses) the PostgreSQL cluster in `EMBEDDED_PG_DIR`, and says so.
async fn start_embedded(config: &Config) -> Result<EmbeddedPg, StartError> {
    let dir = &config.embedded_pg_dir;
    let pg = EmbeddedPg::open(dir)
        .await
        .map_err(|source| StartError::Embedded {
            dir: dir.clone(),
            source,
        })?;
    tracing::info!(
        dir = %pg.dir().display(),
        reused = pg.reused(),
        psql = %format!("psql -h {} -U postgres {}", pg.dir().display(), EmbeddedPg::DATABASE),
        "using the embedded PostgreSQL (DATABASE_URL is unset); its data stays in {}",
        pg.data().display()
    );
    Ok(pg)
}

/// Stops the embedded cluster, if any, keeping its data.
async fn stop_embedded(embedded: Option<EmbeddedPg>) {
    let Some(pg) = embedded else { return };
    let data = pg.data().display().to_string();
    match pg.stop().await {
        Ok(()) => tracing::info!(%data, "PostgreSQL stopped; its data is kept"),
        Err(err) => tracing::error!(%data, error = %err, "stopping PostgreSQL failed"),
    }
}
