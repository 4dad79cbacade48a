//! The `pgbridge` binary: read the config, wait for Postgres, serve, drain on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::serve::ListenerExt;
use clap::Parser;
use pgbridge::db::migrate::Migrator;
use pgbridge::{AppState, config::Config, router};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if config.healthcheck {
        return healthcheck(config.bind_addr).await;
    }
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|err| {
        eprintln!(
            "invalid log filter {:?} ({err}); using \"info\"",
            config.log_filter
        );
        EnvFilter::new("info")
    });
    // Colour only for a person at a terminal; log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();

    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "pgbridge stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let grace = config.shutdown_grace();
    let bind = config.bind_addr;
    let state = AppState::new(config)?;

    // Wait for Postgres before taking traffic, unless told to stop first.
    tokio::select! {
        () = state.db.wait_until_ready(std::time::Duration::from_secs(5)) => {}
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

    let listener = TcpListener::bind(bind).await?;
    tracing::info!(addr = %listener.local_addr()?, "pgbridge listening");
    // Streamed chunks (event streams, poll-sleep lines) go out as written, not held back
    // by Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
    });
    let stopping = state.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let drain_delay = stopping.config.drain_delay();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        // Draining (src/drain.rs): not ready, `Connection: close`, event streams end; the
        // listener stays open until the delay has passed.
        stopping.shutdown();
        if !drain_delay.is_zero() {
            tracing::info!(?drain_delay, "draining before closing the listener");
            tokio::time::sleep(drain_delay).await;
        }
        tracing::info!(
            ?grace,
            "shutting down: no new connections, finishing in-flight requests"
        );
        // Event streams never finish on their own: end them so the drain can.
        stopping.shutdown();
        let _ = stop_tx.send(true);
    });
    let deadline = async move {
        let mut stop_rx = stop_rx;
        // Resolves only once shutdown has begun and the grace period has passed.
        if stop_rx.wait_for(|stopping| *stopping).await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result?,
        () = deadline => tracing::warn!("grace period over; dropping the requests still open"),
    }
    tracing::info!("pgbridge stopped");
    Ok(())
}

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
