//! The `pgbridge` binary: read the config, bind, start the embedded Postgres when no
//! `DATABASE_URL` is set, wait for Postgres, serve, drain on SIGTERM/SIGINT.

#![warn(rust_2018_idioms, missing_debug_implementations)]
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pgbridge::config::LogFormat;
use pgbridge::db::migrate::Migrator;
use pgbridge::embedded_pg::{EmbeddedPg, EmbeddedPgError, NO_BINARIES_HELP};
use pgbridge::server::{self, PerCore, Runtime, Server, Stopped, settle};
use pgbridge::{AppState, config::Config, router};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> ExitCode {
    // Socket activation (systemd `.socket` units, `systemfd`, the tests): a listening socket
    // passed as fd 3 with `LISTEN_FDS=1`. Taken before the runtime starts its threads, since
    // taking it removes `LISTEN_FDS`/`LISTEN_PID` from the environment.
    let inherited = listenfd::ListenFd::from_env().take_tcp_listener(0);
    let layout = match Runtime::parse(std::env::var("RUNTIME").ok().as_deref()) {
        Ok(layout) => layout,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    // Per core, this thread's runtime only starts things (and carries the event feed's
    // LISTEN connection); each core's own runtime serves (src/server/percore.rs).
    let runtime = match layout {
        Runtime::Multi => tokio::runtime::Builder::new_multi_thread(),
        Runtime::PerCore => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(start(inherited, layout))
}

async fn start(
    inherited: std::io::Result<Option<std::net::TcpListener>>,
    layout: Runtime,
) -> ExitCode {
    let mut config = Config::parse();
    if config.healthcheck {
        return healthcheck(config.bind_addr).await;
    }
    init_logging(&config);

    // Bind first: a busy port fails at once, naming the address, before any database work.
    let Some(listener) = listen(config.bind_addr, inherited).await else {
        return ExitCode::FAILURE;
    };

    let embedded = if config.embedded_database() {
        match start_embedded(&config).await {
            Some(pg) => {
                config.database_url = pg.url();
                Some(pg)
            }
            None => return ExitCode::FAILURE,
        }
    } else {
        None
    };

    let result = run(config, listener, layout).await;
    if let Some(pg) = embedded {
        let data = pg.data().display().to_string();
        match pg.stop().await {
            Ok(()) => tracing::info!(%data, "PostgreSQL stopped; its data is kept"),
            Err(err) => tracing::error!(%data, error = %err, "stopping PostgreSQL failed"),
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "pgbridge stopped");
            ExitCode::FAILURE
        }
    }
}

/// The listening socket: the one passed by a service manager (`LISTEN_FDS`), else a new one
/// bound to `bind`. `None` when neither works; the reason is logged.
async fn listen(
    bind: SocketAddr,
    inherited: std::io::Result<Option<std::net::TcpListener>>,
) -> Option<TcpListener> {
    let adopted = match inherited {
        Ok(Some(listener)) => listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener)),
        Ok(None) => {
            return TcpListener::bind(bind)
                .await
                .inspect_err(|err| {
                    tracing::error!(addr = %bind, error = %err, "cannot listen on {bind}: {err}");
                })
                .ok();
        }
        Err(err) => Err(err),
    };
    match adopted {
        Ok(listener) => {
            let addr = listener.local_addr().ok();
            tracing::info!(
                addr = ?addr,
                "using the listening socket passed in LISTEN_FDS (BIND_ADDR is not used)"
            );
            Some(listener)
        }
        Err(err) => {
            tracing::error!(error = %err, "LISTEN_FDS is set, but fd 3 is not a usable TCP listener: {err}");
            None
        }
    }
}

/// Log lines to stdout, filtered by `RUST_LOG` (never below `info` for the driver's
/// statement logging: [`pgbridge::log_secrets`]), as text or (`LOG_FORMAT=json`) JSON.
fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|err| {
        eprintln!(
            "invalid log filter {:?} ({err}); using \"info\"",
            config.log_filter
        );
        EnvFilter::new("info")
    });
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    // Whatever RUST_LOG says, the driver's statement parameters are never logged.
    let never_secrets = pgbridge::log_secrets::never_secrets();
    match config.log_format {
        // One object per line, with the request span's fields (request id, method, path).
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .with(never_secrets)
            .init(),
        // Colour only for a person at a terminal; log collectors get plain text.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .finish()
            .with(never_secrets)
            .init(),
    }
}

/// Starts (or reuses) the PostgreSQL cluster in `EMBEDDED_PG_DIR`, and says so. `None`
/// when it cannot: the reason is already reported.
async fn start_embedded(config: &Config) -> Option<EmbeddedPg> {
    let dir = &config.embedded_pg_dir;
    match EmbeddedPg::open(dir).await {
        Ok(pg) => {
            tracing::info!(
                dir = %pg.dir().display(),
                reused = pg.reused(),
                psql = %format!("psql -h {} -U postgres {}", pg.dir().display(), EmbeddedPg::DATABASE),
                "using the embedded PostgreSQL (DATABASE_URL is unset); its data stays in {}",
                pg.data().display()
            );
            Some(pg)
        }
        Err(EmbeddedPgError::NoBinaries) => {
            eprintln!("{NO_BINARIES_HELP}");
            None
        }
        Err(err) => {
            tracing::error!(
                dir = %dir.display(),
                "the embedded PostgreSQL did not start (set DATABASE_URL to use another server): {err}"
            );
            None
        }
    }
}

async fn run(
    config: Config,
    listener: TcpListener,
    layout: Runtime,
) -> Result<(), Box<dyn std::error::Error>> {
    let grace = config.shutdown_grace();
    let cores = match layout {
        Runtime::Multi => 0,
        Runtime::PerCore => Runtime::cores(),
    };
    let (state, per_core) = AppState::per_core(config, cores)?;

    // Wait for Postgres before taking traffic, unless told to stop first.
    tokio::select! {
        ready = state.db.wait_until_ready(Duration::from_secs(5)) => ready?,
        () = shutdown_signal() => {
            tracing::info!("stopped while waiting for the database");
            return Ok(());
        }
    }

    if state.config.migrate_on_start() {
        let applied = Migrator::embedded()?
            .run_url(state.config.migrate_url())
            .await?;
        tracing::info!(applied = applied.len(), "migrations up to date");
    } else {
        tracing::info!("migrations skipped (MIGRATE=false)");
    }

    let mut limits = state.config.connection_limits();
    let nofile = server::raise_nofile_limit();
    let cap = server::connection_cap(limits.max_connections, nofile, state.config.db_pool_size);
    if cap < limits.max_connections {
        tracing::warn!(
            max_connections = limits.max_connections,
            nofile,
            lowered_to = cap,
            "MAX_CONNECTIONS does not fit the file-descriptor limit; lowered"
        );
        limits.max_connections = cap;
    }
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        max_connections = limits.max_connections,
        nofile,
        "pgbridge listening: open {}",
        open_url(addr)
    );
    let stopping = state.clone();
    let db = state.db.clone();
    let stats = state.metrics.connections.clone();
    let drain_delay = state.config.drain_delay();
    if !per_core.is_empty() {
        let cores = per_core
            .into_iter()
            .map(|core| (router(core.clone()), core.db))
            .collect();
        let signal = async move {
            shutdown_signal().await;
            stopping.shutdown();
            tracing::info!(?drain_delay, ?grace, "shutting down: draining every core");
        };
        PerCore::new(listener.into_std()?, cores, limits, stats)
            .drain_delay(drain_delay)
            .run(signal, grace)
            .await?;
        tracing::info!("pgbridge stopped");
        return Ok(());
    }
    let server = Server::new(listener, router(state), limits, stats).drain_delay(drain_delay);
    let signal = async move {
        shutdown_signal().await;
        // Draining (src/drain.rs): not ready, `Connection: close`, GET/HEAD answered 503
        // `draining`; event streams never finish on their own, so they end here too. The
        // server keeps its listener open for DRAIN_DELAY_MS, then stops accepting.
        stopping.shutdown();
        tracing::info!(?drain_delay, ?grace, "shutting down: draining");
    };
    if let Stopped::Aborted { .. } = server.run(signal, grace).await {
        // The dropped requests spawned cancels for their queries: let them reach Postgres
        // before the runtime (and every task on it) stops.
        settle(&db, CANCEL_WAIT).await;
    }
    tracing::info!("pgbridge stopped");
    Ok(())
}

/// The URL a person opens for `addr`: loopback in place of "every interface".
fn open_url(mut addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}/")
}

/// How long, after the grace period, cancels of dropped queries get to land.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// `GET /healthz` on the bind address (loopback if it binds every interface): exit 0 on 200.
async fn healthcheck(bind: SocketAddr) -> ExitCode {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut addr = bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), check).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
