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
//! TLS: [`Cluster::start_private_tls`] starts a cluster with `ssl = on`, the given server
//! certificate, and a `pg_hba.conf` that accepts only `hostssl` on TCP (trust for
//! `postgres`, passwords for other roles); its URLs use `sslmode=verify-full` with the CA.
//! `PGBRIDGE_TEST_TLS=1` makes the shared cluster such a one, so any suite (e.g.
//! `PGBRIDGE_TEST_TLS=1 cargo test --test notes`) runs over verified TLS.
//!
//! Finding the binaries, `initdb`, `pg_ctl` and the watchdog are the service's own
//! `pgbridge::embedded_pg`, which also runs `cargo run`'s database: one implementation.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pgbridge::embedded_pg::{Initdb, PgServer, StopMode, Watchdog, shell_quote};
use tokio::sync::OnceCell;

use super::tls::{ServerTls, TestCa};

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
    /// The server's certificate, when it requires TLS.
    tls: Option<ServerTls>,
}

impl Cluster {
    /// The process-wide shared cluster, started once per test binary on first use. When
    /// `DATABASE_URL` is set (and not empty), that server instead.
    pub async fn shared() -> &'static Cluster {
        let shared = SHARED
            .get_or_init(|| async {
                let tls = std::env::var("PGBRIDGE_TEST_TLS")
                    .is_ok_and(|v| !v.is_empty() && v != "0")
                    .then(|| TestCa::new("pgbridge shared test CA").server(&["localhost"], false));
                let mut cluster = match std::env::var("DATABASE_URL") {
                    Ok(url) if !url.trim().is_empty() => Ok(Cluster::external(&url)),
                    _ => Cluster::try_start(tls).await,
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
        Cluster::try_start(None)
            .await
            .unwrap_or_else(|why| panic!("a private test cluster did not start:\n{why}"))
    }

    /// A private cluster that accepts only TLS on TCP (`hostssl`), serving `tls`'s
    /// certificate; its URLs name `localhost` (connecting to `hostaddr=127.0.0.1`) with
    /// `sslmode=verify-full` and `sslrootcert` set to the CA, written in its directory.
    pub async fn start_private_tls(tls: ServerTls) -> Cluster {
        Cluster::try_start(Some(tls))
            .await
            .unwrap_or_else(|why| panic!("a private TLS test cluster did not start:\n{why}"))
    }

    /// The port of a cluster this process started.
    pub fn port(&self) -> Option<u16> {
        self.private.as_ref().map(|p| p.server.port)
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
        self.halt(StopMode::Fast, "stopped").await;
    }

    /// Stops the server as a crash would (immediate shutdown: no checkpoint, the next start
    /// replays the WAL), keeping its data. Private clusters only.
    pub async fn crash(&self) {
        self.halt(StopMode::Immediate, "crashed").await;
    }

    async fn halt(&self, mode: StopMode, what: &str) {
        let private = self.own(what);
        if let Err(why) = private.server.stop(mode).await {
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

    async fn try_start(tls: Option<ServerTls>) -> Result<Cluster, String> {
        let bin = pgbridge::embedded_pg::find_bin_dir()
            .map_err(|e| format!("{e}: install postgresql, or set DATABASE_URL"))?;
        let user = pgbridge::embedded_pg::cluster_user()
            .map_err(|e| format!("{e}, or set DATABASE_URL"))?;
        let dir = make_directory(user)?;
        let port = super::process::free_port();
        let tls_options = match &tls {
            Some(_) => vec![
                "-c ssl=on".to_owned(),
                format!(
                    "-c ssl_cert_file={}",
                    shell_quote(&dir.join("server.crt").to_string_lossy())
                ),
                format!(
                    "-c ssl_key_file={}",
                    shell_quote(&dir.join("server.key").to_string_lossy())
                ),
            ],
            None => Vec::new(),
        };
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
                .into_iter()
                .chain(tls_options)
                .collect(),
            },
            watchdog: Mutex::new(None),
            tls,
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
        private.write_tls_files()?;
        let mut why = String::new();
        for _ in 0..5 {
            match private.start().await {
                Ok(()) => {
                    cluster.target = private.target();
                    return Ok(cluster);
                }
                // Most likely someone took the port between our probe and the server's
                // bind: try another.
                Err(e) => {
                    why = e;
                    private.server.port = super::process::free_port();
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
    /// How clients reach it: verified TLS when it has a certificate.
    fn target(&self) -> Target {
        let port = self.server.port;
        match &self.tls {
            None => Target::Url {
                base: format!("postgres://postgres@127.0.0.1:{port}"),
                query: String::new(),
            },
            Some(_) => Target::Url {
                base: format!("postgres://postgres@localhost:{port}"),
                query: format!(
                    "?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
                    self.server.dir.join("ca.pem").display()
                ),
            },
        }
    }

    /// With TLS: the certificate, key and CA files, and a `pg_hba.conf` allowing only
    /// `hostssl` on TCP.
    fn write_tls_files(&self) -> Result<(), String> {
        let Some(tls) = &self.tls else { return Ok(()) };
        let write = |name: &str, text: &str, mode: u32| -> Result<(), String> {
            use std::os::unix::fs::PermissionsExt;
            let path = self.server.dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod {}: {e}", path.display()))?;
            if let Some((uid, gid)) = self.server.user {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", path.display()))?;
            }
            Ok(())
        };
        write("server.crt", &tls.cert_pem, 0o644)?;
        write("server.key", &tls.key_pem, 0o600)?;
        write("ca.pem", &tls.ca_pem, 0o644)?;
        write(
            "data/pg_hba.conf",
            "local all all trust\n\
             hostssl all postgres 127.0.0.1/32 trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n",
            0o600,
        )
    }

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

/// Connects (over TLS if the URL says so) with a short timeout and drives the connection
/// on the current runtime.
async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let mut pg = pgbridge::db::connect::PgConnect::parse(url).map_err(|e| e.to_string())?;
    if pg.config().get_connect_timeout().is_none() {
        pg.config_mut().connect_timeout(Duration::from_secs(5));
    }
    let (client, connection) = pg.connect().await.map_err(|e| e.to_string())?;
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
