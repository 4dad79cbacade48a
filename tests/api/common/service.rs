//! The whole service, in-process, on a fresh database of the test cluster.

use std::net::SocketAddr;

use pgbridge::config::Config;
use pgbridge::{AppState, Application};

use super::http::serve;
use super::pg::Cluster;

/// A running service and the database it uses.
pub struct TestService {
    pub addr: SocketAddr,
    pub database_url: String,
    pub state: AppState,
}

/// Starts the router on a fresh database of the shared cluster, every application under
/// the Validator. `configure` adjusts the settings first.
pub async fn start(configure: impl FnOnce(&mut Config)) -> TestService {
    let database_url = Cluster::shared().await.create_database().await;
    start_on(database_url, configure).await
}

/// [`start`], then the migrations.
pub async fn start_migrated(configure: impl FnOnce(&mut Config)) -> TestService {
    let service = start(configure).await;
    migrate(&service.database_url).await;
    service
}

/// Applies the embedded migrations to `database_url`.
async fn migrate(database_url: &str) {
    pgbridge::db::migrate::Migrator::embedded()
        .expect("embedded migrations")
        .run_url(database_url)
        .await
        .expect("migrate");
}

/// A resource defined outside the product (a test's), live: a fresh database migrated,
/// then `sql` (the resource's migration) applied, then the router serving `routes` beside
/// the service's own, the harness account's token on their paths by default, and the
/// event listener connected (within `wait`).
pub async fn start_with_resource(
    sql: &str,
    routes: Vec<pgbridge::routes::Route>,
    wait: std::time::Duration,
) -> TestService {
    let database_url = Cluster::shared().await.create_database().await;
    migrate(&database_url).await;
    connect(&database_url)
        .await
        .batch_execute(sql)
        .await
        .expect("the resource's migration");
    for route in &routes {
        super::http::owns(route.path.split("/{").next().unwrap_or(route.path));
    }
    let service = serve_state(database_url, |_| {}, routes).await;
    wait_live(&service, wait).await;
    service
}

/// [`start_migrated`], then waits (at most `wait`) until the event listener is connected,
/// so a test starts from "live".
pub async fn start_live(
    configure: impl FnOnce(&mut Config),
    wait: std::time::Duration,
) -> TestService {
    let service = start_migrated(configure).await;
    wait_live(&service, wait).await;
    service
}

/// Waits (at most `wait`) until the service's event listener is connected.
async fn wait_live(service: &TestService, wait: std::time::Duration) {
    let deadline = std::time::Instant::now() + wait;
    while !service.state.apps.notes.listener.is_connected() {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener never connected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Starts the router on `database_url`.
///
/// With `PGBRIDGE_TEST_POOLER_URL` set (`postgres://user@pgbouncer-host:port`, a PgBouncer
/// in transaction mode forwarding every database to the `DATABASE_URL` server), the
/// service's pool goes through it in `DB_POOL_MODE=transaction`, while its `LISTEN`
/// connection and the test's own connections (`database_url`) stay direct: any suite then
/// runs through the pooler (README "Scaling out").
pub async fn start_on(database_url: String, configure: impl FnOnce(&mut Config)) -> TestService {
    serve_state(database_url, configure, Vec::new()).await
}

/// [`start_on`], serving `extra` routes beside the service's own.
async fn serve_state(
    database_url: String,
    configure: impl FnOnce(&mut Config),
    extra: Vec<pgbridge::routes::Route>,
) -> TestService {
    let mut config = Config::new(database_url.clone());
    if let Ok(pooler) = std::env::var("PGBRIDGE_TEST_POOLER_URL") {
        let database = database_url.rsplit('/').next().unwrap_or_default();
        config.database_url = format!("{}/{database}", pooler.trim_end_matches('/'));
        config.db_pool_mode = pgbridge::db::PoolMode::Transaction;
        config.events_database_url = Some(database_url.clone());
        config.migrate_database_url = Some(database_url.clone());
    }
    config.validate_apps = true;
    configure(&mut config);
    let state = AppState::new(config).expect("valid config");
    let addr = serve(pgbridge::router_with(state.clone(), extra)).await;
    super::http::authenticate_by_default(addr);
    TestService {
        addr,
        database_url,
        state,
    }
}

/// The service as the binary runs it — [`Application`]: its own server loop with the
/// connection limits and timeouts, migrations at start — in this process, on `127.0.0.1`
/// port 0. Stopped (drained) when dropped. For the tests that need the whole startup but no
/// process boundary (no signal, exit status, log or resource limit of the process).
pub struct Running {
    pub addr: SocketAddr,
    pub database_url: String,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Builds and runs an [`Application`] on a fresh database of the shared cluster, with the
/// binary's defaults (`configure` adjusts them); returns once it serves (`/readyz` 200).
pub async fn application(configure: impl FnOnce(&mut Config)) -> Running {
    let database_url = Cluster::shared().await.create_database().await;
    application_on(database_url, configure).await
}

/// [`application`] on `database_url` (which the migrations at start bring up to date).
pub async fn application_on(database_url: String, configure: impl FnOnce(&mut Config)) -> Running {
    let mut config = Config::new(database_url.clone());
    config.bind_addr = "127.0.0.1:0".parse().expect("an address");
    configure(&mut config);
    let app = Application::build(config)
        .await
        .expect("the service starts");
    let addr = app.addr();
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(err) = app.run_until(shutdown).await {
            panic!("the service stopped: {err}");
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Connections wait in the listener's backlog until it serves (after the migrations).
    while super::http::get(addr, "/readyz").await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Running {
        addr,
        database_url,
        state,
        stop: Some(stop),
    }
}

/// A direct connection for looking at the database from outside the service (over TLS
/// when the URL says so).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = pgbridge::db::connect::PgConnect::parse(url)
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// The backends of `admin`'s database running a `pg_sleep` query now (not `admin` itself).
pub async fn active_sleeps(admin: &tokio_postgres::Client) -> Vec<i32> {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND state = 'active' \
               AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|row| row.get(0))
        .collect()
}
