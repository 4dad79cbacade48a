//! A real, private, throwaway PostgreSQL for the integration tests.
//!
//! With `DATABASE_URL` unset, the first test to ask starts a cluster with the machine's
//! `initdb`/`pg_ctl` (from PATH, else the newest `/usr/lib/postgresql/*/bin`), on a free
//! loopback port, and each test gets its own database on it. As root (CI, the dev boxes)
//! the cluster runs as the `postgres` system user, since `initdb` refuses root; otherwise
//! as the current user. With `DATABASE_URL` set, test databases are created on that server
//! instead (only [`Cluster::start_private`] still starts a cluster of its own).
//!
//! Nothing outlives the test process, not even a killed one: each cluster has a watchdog,
//! a `sh` in its own process group whose stdin is a pipe from the test process. Nobody ever
//! writes to it; when the test process exits for any reason (or drops a private cluster),
//! the kernel closes the pipe, the watchdog's `cat` sees end-of-file, and the watchdog
//! stops whatever postmaster runs in the data directory (`pg_ctl stop -m immediate`) and
//! deletes the cluster's directory. A pipe, rather than polling the test's pid, cannot be
//! fooled by pid reuse, needs no permission to signal root's processes, and acts at once.
//!
//! TLS: [`Cluster::start_private_tls`] starts a cluster with `ssl = on`, the given server
//! certificate, and a `pg_hba.conf` that accepts only `hostssl` on TCP (trust for
//! `postgres`, passwords for other roles); its URLs use `sslmode=verify-full` with the CA.
//! `PGBRIDGE_TEST_TLS=1` makes the shared cluster such a one, so any suite (e.g.
//! `PGBRIDGE_TEST_TLS=1 cargo test --test notes`) runs over verified TLS.

use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::tls::{ServerTls, TestCa};

/// The shared cluster, or why it could not start (so every test fails fast, and alike).
static SHARED: OnceCell<Result<Cluster, String>> = OnceCell::const_new();
/// Makes directory and database names unique within this process.
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// How long a (re)started server has to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

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
    bin: PathBuf,
    /// The temporary directory: `data/`, the Unix socket, `server.log`.
    dir: PathBuf,
    port: u16,
    /// `(uid, gid)` to run the Postgres tools as, when running as root.
    user: Option<(u32, u32)>,
    /// The watchdog, and the pipe whose closing sets it off.
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
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
        self.private.as_ref().map(|p| p.port)
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
        self.private.as_ref().map(|p| p.dir.as_path())
    }

    /// Stops the server (fast shutdown), keeping its data. Private clusters only.
    pub async fn stop(&self) {
        let private = self.own("stopped");
        let out = private
            .pg_ctl()
            .arg("-D")
            .arg(private.data())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .await
            .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
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
        let bin = find_bin_dir();
        let user = cluster_user();
        let dir = make_directory(user)?;
        let port = free_port();
        let private = Private {
            bin,
            dir,
            port,
            user,
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
                    private.port = free_port();
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
        if let Some((mut child, stdin)) = watchdog {
            // Closing the pipe sets the watchdog off; wait until it has cleaned up.
            drop(stdin);
            let _ = child.wait();
        }
        // The watchdog normally removed it; this covers a watchdog that died.
        if private.dir.exists() {
            let _ = std::process::Command::new(private.bin.join("pg_ctl"))
                .arg("-D")
                .arg(private.data())
                .args(["-m", "immediate", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .current_dir(&private.dir)
                .as_user(private.user)
                .status();
            let _ = std::fs::remove_dir_all(&private.dir);
        }
    }
}

impl Private {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// How clients reach it: verified TLS when it has a certificate.
    fn target(&self) -> Target {
        let port = self.port;
        match &self.tls {
            None => Target::Url {
                base: format!("postgres://postgres@127.0.0.1:{port}"),
                query: String::new(),
            },
            Some(_) => Target::Url {
                base: format!("postgres://postgres@localhost:{port}"),
                query: format!(
                    "?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
                    self.dir.join("ca.pem").display()
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
            let path = self.dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod {}: {e}", path.display()))?;
            if let Some((uid, gid)) = self.user {
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

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// A `pg_ctl` command run as the cluster's owner.
    fn pg_ctl(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.bin.join("pg_ctl"));
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts the watchdog (see the module docs).
    fn watch(&self) -> Result<(), String> {
        const SCRIPT: &str = r#"
trap '' HUP INT
cat >/dev/null 2>&1
"$1" -D "$2" -m immediate stop >/dev/null 2>&1
rm -rf "$3"
"#;
        let mut child = std::process::Command::new("sh")
            .args(["-c", SCRIPT, "pgbridge-test-watchdog"])
            .arg(self.bin.join("pg_ctl"))
            .arg(self.data())
            .arg(&self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the test's process group: Ctrl-C there must not kill the watchdog.
            .process_group(0)
            .as_user(self.user)
            .spawn()
            .map_err(|e| format!("start the cluster watchdog (sh): {e}"))?;
        let stdin = child.stdin.take().expect("the watchdog's stdin is piped");
        *self
            .watchdog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((child, stdin));
        Ok(())
    }

    async fn initdb(&self) -> Result<(), String> {
        let mut command = tokio::process::Command::new(self.bin.join("initdb"));
        command
            .arg("-D")
            .arg(self.data())
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .arg("--locale=C")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        let out = command
            .output()
            .await
            .map_err(|e| format!("run {}: {e}", self.bin.join("initdb").display()))?;
        if out.status.success() {
            Ok(())
        } else {
            let hint = match self.user {
                Some(_) => format!(
                    "\n(as root, the cluster runs as the postgres user: every parent directory \
                     of {} must be searchable by it; set TMPDIR to move it)",
                    self.dir.display()
                ),
                None => String::new(),
            };
            Err(format!(
                "initdb failed ({}):\n{}{}{hint}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `pg_ctl start`, then waits until the server accepts connections on its TCP port.
    /// On failure, says why, with the end of the server log.
    async fn start(&self) -> Result<(), String> {
        let started = Instant::now();
        let options = [
            format!("-p {}", self.port),
            format!("-k {}", shell_quote(&self.dir.to_string_lossy())),
            "-c listen_addresses=127.0.0.1".to_owned(),
            "-c fsync=off".to_owned(),
            "-c synchronous_commit=off".to_owned(),
            "-c full_page_writes=off".to_owned(),
            "-c max_connections=300".to_owned(),
            "-c shared_buffers=32MB".to_owned(),
            "-c logging_collector=off".to_owned(),
        ];
        let tls_options = match &self.tls {
            Some(_) => vec![
                "-c ssl=on".to_owned(),
                format!(
                    "-c ssl_cert_file={}",
                    shell_quote(&self.dir.join("server.crt").to_string_lossy())
                ),
                format!(
                    "-c ssl_key_file={}",
                    shell_quote(&self.dir.join("server.key").to_string_lossy())
                ),
            ],
            None => Vec::new(),
        };
        let options = options
            .into_iter()
            .chain(tls_options)
            .collect::<Vec<_>>()
            .join(" ");
        // `-w` notices a server that exits at once (say, its port was taken).
        let out = self
            .pg_ctl()
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log())
            .arg("-o")
            .arg(options)
            .args(["-w", "-t", &START_TIMEOUT.as_secs().to_string(), "start"])
            .output()
            .await
            .map_err(|e| format!("run pg_ctl start: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start on port {} failed ({}): {}{}\n{}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            ));
        }

        let mut url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        if self.tls.is_some() {
            url.push_str("?sslmode=require");
        }
        let data = self.data().to_string_lossy().into_owned();
        let deadline = started + START_TIMEOUT;
        loop {
            let error = match connect(&url).await {
                Ok(client) => match client
                    .query_one("SELECT current_setting('data_directory')", &[])
                    .await
                {
                    // Make sure it is our server answering, not another on a reused port.
                    Ok(row) if row.get::<_, String>(0) == data => return Ok(()),
                    Ok(row) => format!(
                        "another server answers on port {}: its data directory is {}",
                        self.port,
                        row.get::<_, String>(0)
                    ),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "the server on port {} did not accept connections within {:?}: {error}\n{}",
                    self.port,
                    START_TIMEOUT,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the server log.
    fn log_tail(&self) -> String {
        let log = self.log();
        match std::fs::read_to_string(&log) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                format!("--- end of {} ---\n{tail}", log.display())
            }
            Err(e) => format!("(no server log at {}: {e})", log.display()),
        }
    }
}

trait AsUser {
    /// Runs the command as `user` (`(uid, gid)`) when given.
    fn as_user(&mut self, user: Option<(u32, u32)>) -> &mut Self;
}

impl AsUser for std::process::Command {
    fn as_user(&mut self, user: Option<(u32, u32)>) -> &mut Self {
        if let Some((uid, gid)) = user {
            self.uid(uid).gid(gid);
        }
        self
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

/// The folder holding `initdb` and `pg_ctl`: on PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> PathBuf {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|dir| has_tools(dir)) {
            return dir;
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under \
             /usr/lib/postgresql/*/bin: install postgresql, or set DATABASE_URL"
        ),
    }
}

/// As root, the `postgres` system user's `(uid, gid)` (initdb refuses to run as root);
/// otherwise `None`: the cluster runs as the current user.
fn cluster_user() -> Option<(u32, u32)> {
    if effective_uid() != 0 {
        return None;
    }
    Some(postgres_ids().unwrap_or_else(|| {
        panic!(
            "running as root, the test cluster needs a `postgres` system user to run as \
             (initdb refuses root): install postgresql, run as another user, or set DATABASE_URL"
        )
    }))
}

fn effective_uid() -> u32 {
    // `Uid:` real, effective, saved, filesystem.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(euid) = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .and_then(|euid| euid.parse().ok())
        {
            return euid;
        }
    }
    let out = std::process::Command::new("id")
        .arg("-u")
        .output()
        .expect("run `id -u` to learn whether we are root");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("`id -u` prints a number")
}

/// The `postgres` user's ids: from /etc/passwd, else from `id` (users from NSS).
fn postgres_ids() -> Option<(u32, u32)> {
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 4 && fields[0] == "postgres" {
                return Some((fields[2].parse().ok()?, fields[3].parse().ok()?));
            }
        }
    }
    let id = |flag: &str| -> Option<u32> {
        let out = std::process::Command::new("id")
            .args([flag, "postgres"])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// `s` as one word for `sh` (pg_ctl hands `-o` to the shell).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
