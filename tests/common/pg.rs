//! A real, private, throwaway PostgreSQL for the integration tests.
//!
//! With `DATABASE_URL` unset, the first test to ask starts a cluster with the machine's
//! `initdb`/`pg_ctl` (from PATH, else the newest `/usr/lib/postgresql/*/bin`), on a free
//! loopback port, and each test gets its own database on it. As root (CI, the dev boxes)
//! the cluster runs as the `postgres` system user, since `initdb` refuses root; otherwise
//! as the current user. With `DATABASE_URL` set, test databases are created on that server
//! instead (only [`Cluster::start_private`] still starts a cluster of its own).
//!
//! Nothing outlives the test process, not even a killed one: each cluster has a watchdog
//! (`pgbridge::embedded_pg::Watchdog`) that stops its postmaster (`pg_ctl stop -m
//! immediate`) and deletes the cluster's directory when the test process exits for any
//! reason, or drops a private cluster.
//!
//! Finding the binaries, `initdb`, `pg_ctl` and the watchdog are the service's own
//! `pgbridge::embedded_pg`, which also runs `cargo run`'s database: one implementation.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pgbridge::embedded_pg::{Initdb, PgServer, StopMode, Watchdog};
use tokio::sync::OnceCell;

/// The shared cluster, or why it could not start (so every test fails fast, and alike).
static SHARED: OnceCell<Result<Cluster, String>> = OnceCell::const_new();
/// Makes directory and database names unique within this process.
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A private PostgreSQL cluster, or the server named by `DATABASE_URL`.
pub struct Cluster {
    /// `scheme://user@host:port` for URLs, or a whole key=value connection string.
    target: Target,
    private: Option<Private>,
    /// The process-wide cluster: never stopped by a test.
    shared: bool,
}

enum Target {
    /// `postgres://...`: everything before the database name, and the `?query` after it.
    Url { base: String, query: String },
    /// `host=... user=...`: the database is set by appending `dbname=...` (the last wins).
    KeyValue(String),
}

/// A cluster this process started.
struct Private {
    /// The server: `dir` is the temporary directory (`data/`, the Unix socket,
    /// `server.log`); `port` is on 127.0.0.1.
    server: PgServer,
    /// The watchdog (see the module docs).
    watchdog: Mutex<Option<Watchdog>>,
}

impl Cluster {
    /// The process-wide shared cluster, started once per test binary on first use. When
    /// `DATABASE_URL` is set (and not empty), that server instead.
    pub async fn shared() -> &'static Cluster {
        let shared = SHARED
            .get_or_init(|| async {
                let mut cluster = match std::env::var("DATABASE_URL") {
                    Ok(url) if !url.trim().is_empty() => Ok(Cluster::external(&url)),
                    _ => Cluster::try_start().await,
                };
                if let Ok(cluster) = &mut cluster {
                    cluster.shared = true;
                }
                cluster
            })
            .await;
        match shared {
            Ok(cluster) => cluster,
            Err(why) => panic!("the shared test cluster did not start:\n{why}"),
        }
    }

    /// A new private cluster owned by the caller, for tests that stop and restart Postgres.
    /// Always starts its own, even with `DATABASE_URL` set. Dropping it stops the server
    /// and deletes its files.
    pub async fn start_private() -> Cluster {
        Cluster::try_start()
            .await
            .unwrap_or_else(|why| panic!("a private test cluster did not start:\n{why}"))
    }

    /// The server at `url` (a `postgres://` URL or a key=value connection string), as
    /// `DATABASE_URL` would name it. Test databases are created on that server; the
    /// database the URL names is not used.
    pub fn external(url: &str) -> Cluster {
        let url = url.trim();
        let target = match url.find("://") {
            Some(scheme_end) => {
                let (without_query, query) = match url.find('?') {
                    Some(i) => (&url[..i], &url[i..]),
                    None => (url, ""),
                };
                let authority = scheme_end + 3;
                let base = match without_query[authority..].find('/') {
                    Some(i) => &without_query[..authority + i],
                    None => without_query,
                };
                Target::Url {
                    base: base.to_owned(),
                    query: query.to_owned(),
                }
            }
            None => Target::KeyValue(url.to_owned()),
        };
        Cluster {
            target,
            private: None,
            shared: false,
        }
    }

    /// Creates a fresh, empty database with a unique name (`t_<pid>_<n>`); returns its URL.
    pub async fn create_database(&self) -> String {
        let admin_url = self.admin_url();
        let admin = connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to the test server at {admin_url}: {e}"));
        let mut failures = 0;
        loop {
            let name = format!(
                "t_{}_{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            // template0: empty for sure, and nobody is ever connected to it.
            let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE template0");
            match admin.batch_execute(&sql).await {
                Ok(()) => return self.url(&name),
                // Another process with our pid (another container) on a DATABASE_URL
                // server: take the next name.
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
                Err(e) if failures < 20 => {
                    failures += 1;
                    eprintln!("{sql} failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{sql} on {admin_url}: {e}"),
            }
        }
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        match &self.target {
            Target::Url { base, query } => format!("{base}/{database}{query}"),
            Target::KeyValue(conninfo) => format!("{conninfo} dbname='{database}'"),
        }
    }

    /// The admin URL: the `postgres` database.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// The cluster's temporary directory (data, socket, `server.log`); `None` for an
    /// external server.
    pub fn directory(&self) -> Option<&Path> {
        self.private.as_ref().map(|p| p.server.dir.as_path())
    }

    /// Stops the server (fast shutdown), keeping its data. Private clusters only.
    pub async fn stop(&self) {
        let private = self.own("stopped");
        if let Err(why) = private.server.stop(StopMode::Fast).await {
            panic!("{why}");
        }
    }

    /// Starts the server again on the same port and data; returns once it accepts
    /// connections. Private clusters only.
    pub async fn restart(&self) {
        let private = self.own("restarted");
        if let Err(why) = private.start().await {
            panic!("restarting the test cluster failed:\n{why}");
        }
    }

    fn own(&self, what: &str) -> &Private {
        assert!(
            !self.shared,
            "the shared test cluster must not be {what}: use Cluster::start_private()"
        );
        self.private.as_ref().unwrap_or_else(|| {
            panic!(
                "an external (DATABASE_URL) server cannot be {what}: use Cluster::start_private()"
            )
        })
    }

    async fn try_start() -> Result<Cluster, String> {
        let bin = pgbridge::embedded_pg::find_bin_dir()
            .map_err(|e| format!("{e}: install postgresql, or set DATABASE_URL"))?;
        let user = pgbridge::embedded_pg::cluster_user()
            .map_err(|e| format!("{e}, or set DATABASE_URL"))?;
        let dir = make_directory(user)?;
        let port = free_port();
        let private = Private {
            server: PgServer {
                bin,
                data: dir.join("data"),
                dir,
                port,
                tcp: true,
                user,
                options: [
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=300",
                    "-c shared_buffers=32MB",
                ]
                .map(String::from)
                .to_vec(),
            },
            watchdog: Mutex::new(None),
        };
        // From here on, dropping `cluster` (on failure too) stops and deletes everything.
        let mut cluster = Cluster {
            target: Target::Url {
                base: format!("postgres://postgres@127.0.0.1:{port}"),
                query: String::new(),
            },
            private: Some(private),
            shared: false,
        };
        let private = cluster.private.as_mut().expect("just set");
        private.watch()?;
        private.initdb().await?;
        let mut why = String::new();
        for _ in 0..5 {
            match private.start().await {
                Ok(()) => {
                    let port = private.server.port;
                    cluster.target = Target::Url {
                        base: format!("postgres://postgres@127.0.0.1:{port}"),
                        query: String::new(),
                    };
                    return Ok(cluster);
                }
                // Most likely someone took the port between our probe and the server's
                // bind: try another.
                Err(e) => {
                    why = e;
                    private.server.port = free_port();
                }
            }
        }
        Err(why)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let Some(private) = &self.private else { return };
        let watchdog = private
            .watchdog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        // Sets the watchdog off, and waits until it has cleaned up.
        drop(watchdog);
        // The watchdog normally removed it; this covers a watchdog that died.
        if private.server.dir.exists() {
            private.server.stop_blocking(StopMode::Immediate);
            let _ = std::fs::remove_dir_all(&private.server.dir);
        }
    }
}

impl Private {
    /// Starts the watchdog (see the module docs).
    fn watch(&self) -> Result<(), String> {
        let watchdog = Watchdog::spawn(
            "pgbridge-test-watchdog",
            &self.server,
            StopMode::Immediate,
            Some(&self.server.dir),
        )
        .map_err(|e| e.to_string())?;
        *self
            .watchdog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(watchdog);
        Ok(())
    }

    async fn initdb(&self) -> Result<(), String> {
        Initdb {
            bin: &self.server.bin,
            data: &self.server.data,
            cwd: &self.server.dir,
            user: self.server.user,
            no_sync: true,
        }
        .run()
        .await
        .map_err(|e| match self.server.user {
            Some(_) => format!("{e}\n(set TMPDIR to move {})", self.server.dir.display()),
            None => e.to_string(),
        })
    }

    /// `pg_ctl start`, then waits until the server accepts connections on its TCP port.
    /// On failure, says why, with the end of the server log.
    async fn start(&self) -> Result<(), String> {
        self.server.start().await.map_err(|e| e.to_string())
    }
}

/// Connects with a short timeout and drives the connection on the current runtime.
async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A new, empty directory under the system temp dir, owned by the cluster's user.
fn make_directory(user: Option<(u32, u32)>) -> Result<PathBuf, String> {
    loop {
        let dir = std::env::temp_dir().join(format!(
            "pgbridge-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                if let Some((uid, gid)) = user {
                    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| {
                        format!("chown {} to the postgres user: {e}", dir.display())
                    })?;
                }
                return Ok(dir);
            }
            // Left by an earlier process with our pid: not ours to delete.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("create {}: {e}", dir.display())),
        }
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}
