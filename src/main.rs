//! The `pgbridge` binary: reads the configuration, sets up logging, and runs
//! [`pgbridge::Application`] until SIGTERM or SIGINT (then it drains). Exit status 0 after a
//! clean stop, 1 when it cannot start or stops on an error.

#![warn(rust_2018_idioms, missing_debug_implementations)]
// One module allocates (`page_aligned`, the global allocator without jemalloc); nothing else
// may use `unsafe`.
#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use pgbridge::config::{Config, LogFormat};
use pgbridge::embedded_pg::NO_BINARIES_HELP;
use pgbridge::server::Runtime;
use pgbridge::{Application, StartError};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// With `--features jemalloc` (the container image's build): jemalloc, which keeps less of
/// each connection's buffers resident than glibc's malloc (docs/ARCHITECTURE.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Without jemalloc: glibc's malloc, with 8 KiB blocks on their own pages
/// ([`page_aligned`]).
#[cfg(not(feature = "jemalloc"))]
#[global_allocator]
static GLOBAL: page_aligned::PageAligned = page_aligned::PageAligned;

#[cfg(not(feature = "jemalloc"))]
#[allow(unsafe_code)]
mod page_aligned;

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
    let config = Config::parse();
    if config.healthcheck {
        return if pgbridge::startup::healthcheck(config.bind_addr).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    init_logging(&config);
    let mut builder = Application::builder(config).runtime(layout);
    match inherited {
        Ok(Some(listener)) => builder = builder.listener(listener),
        Ok(None) => {}
        Err(err) => return failed(&StartError::ListenFds(err)),
    }
    let app = match builder.build().await {
        Ok(app) => app,
        Err(err) => return failed(&err),
    };
    let shutdown = shutdown_signal();
    match app.run_until(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failed(&err),
    }
}

/// Says why it stopped (with no server binaries for the embedded database: how to get
/// some), and exits 1.
fn failed(err: &StartError) -> ExitCode {
    if err.is_no_binaries() {
        eprintln!("{NO_BINARIES_HELP}");
    } else {
        tracing::error!(error = %err, "pgbridge stopped");
    }
    ExitCode::FAILURE
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
    // The most verbose level `RUST_LOG` lets through, before the filter moves into the
    // subscriber (whose own hint is `trace`: `never_secrets` passes everything else).
    let max_level = filter
        .max_level_hint()
        .map_or(log::LevelFilter::Trace, log_level);
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
        // Plain fields written more cheaply than by the default visitor, to the same text.
        LogFormat::Text => logs
            .fmt_fields(pgbridge::log_fields::FastFields)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .finish()
            .with(never_secrets)
            .init(),
    }
    // `init` installs the `log` bridge at `log`'s most verbose level, so each of the
    // driver's `trace!`/`debug!` calls (about ten per query) reached the subscriber's
    // filter only to be dropped there. The `log` crate's own level now follows
    // `RUST_LOG`'s: a disabled `log` call is one comparison.
    log::set_max_level(max_level);
}

/// The `log` crate's level for a `tracing` one.
fn log_level(level: tracing::level_filters::LevelFilter) -> log::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match level {
        LevelFilter::OFF => log::LevelFilter::Off,
        LevelFilter::ERROR => log::LevelFilter::Error,
        LevelFilter::WARN => log::LevelFilter::Warn,
        LevelFilter::INFO => log::LevelFilter::Info,
        LevelFilter::DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// SIGINT (Ctrl-C) or SIGTERM, whichever comes first. Both are caught from the moment this
/// is called, not from the future's first poll: the service may answer on a socket passed in
/// `LISTEN_FDS` before the serving loop first polls its shutdown future, and a SIGTERM in
/// that gap must drain it, not kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let caught = |kind: SignalKind, name: &'static str| {
        let stream = signal(kind);
        async move {
            match stream {
                Ok(mut stream) => {
                    stream.recv().await;
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for {name}");
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    let interrupt = caught(SignalKind::interrupt(), "SIGINT");
    let terminate = caught(SignalKind::terminate(), "SIGTERM");
    async move {
        tokio::select! {
            () = interrupt => {}
            () = terminate => {}
        }
    }
}
