//! From a built [`Application`](super::Application) to a stopped one: wait for the
//! database, migrate, fit the connection cap under the file-descriptor limit, serve (one
//! runtime, or one per core), drain on the shutdown future.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

use super::error::StartError;
use super::listen::loopback;
use crate::db::migrate::Migrator;
use crate::server::{self, PerCore, Server, Stopped, settle};
use crate::stack;
use crate::state::AppState;

/// How long, after the grace period, cancels of dropped queries get to land.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// See [`Application::run_until`](super::Application::run_until).
pub(super) async fn serve(
    listener: TcpListener,
    state: AppState,
    per_core: Vec<AppState>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    tokio::pin!(shutdown);
    // Wait for Postgres before taking traffic, unless told to stop first.
    tokio::select! {
        ready = state.db.wait_until_ready(Duration::from_secs(5)) => ready?,
        () = &mut shutdown => {
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
        "pgbridge listening: open http://{}/",
        loopback(addr)
    );
    let grace = state.config.shutdown_grace();
    let drain_delay = state.config.drain_delay();
    let stats = state.metrics.connections.clone();
    let db = state.db.clone();
    let stopping = state.clone();
    let per_core_layout = !per_core.is_empty();
    // Draining (src/drain.rs): not ready, `Connection: close`, GET/HEAD answered 503
    // `draining`; event streams never finish on their own, so they end here too. The
    // server keeps its listener open for DRAIN_DELAY_MS, then stops accepting.
    let signal = async move {
        shutdown.await;
        stopping.shutdown();
        let what = if per_core_layout {
            "shutting down: draining every core"
        } else {
            "shutting down: draining"
        };
        tracing::info!(?drain_delay, ?grace, "{what}");
    };
    if per_core_layout {
        let cores = per_core
            .into_iter()
            .map(|core| (stack(core.clone()), core.db))
            .collect();
        PerCore::new(listener.into_std()?, cores, limits, stats)
            .drain_delay(drain_delay)
            .run(signal, grace)
            .await?;
    } else {
        let server = Server::new(listener, stack(state), limits, stats).drain_delay(drain_delay);
        if let Stopped::Aborted { .. } = server.run(signal, grace).await {
            // The dropped requests spawned cancels for their queries: let them reach
            // Postgres before the caller's runtime (and every task on it) stops.
            settle(&db, CANCEL_WAIT).await;
        }
    }
    tracing::info!("pgbridge stopped");
    Ok(())
}
