//! A real, private, throwaway PostgreSQL for the integration tests.
//!
//! With `DATABASE_URL` unset, the first test to ask starts a cluster with the machine's
//! `initdb`/`pg_ctl` (from PATH, else the newest `/usr/lib/postgresql/*/bin`), on a free
//! loopback port, and each test gets its own database on it. As root (CI, the dev boxes)
//! the cluster runs as the `postgres` system user, since `initdb` refuses root. A watchdog
//! process stops the cluster and deletes its directory once the test process is gone, so
//! nothing outlives `cargo test` — not even a killed one. With `DATABASE_URL` set, test
//! databases are created on that server instead.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static SHARED: OnceLock<Cluster> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A PostgreSQL server for tests.
pub struct Cluster {
    /// `postgres://user@host:port` (no database).
    base_url: String,
    /// Query parameters to keep, e.g. `?sslmode=disable`.
    params: String,
    private: Option<Private>,
}

struct Private {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
}

impl Cluster {
    /// The process-wide cluster: `DATABASE_URL`'s server, or a private one started once.
    pub async fn shared() -> &'static Cluster {
        SHARED.get_or_init(|| match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Cluster::external(&url),
            _ => Cluster::start_blocking(),
        })
    }

    /// A private cluster of the caller's own, for tests that stop and restart Postgres.
    pub async fn start_private() -> Cluster {
        tokio::task::spawn_blocking(Cluster::start_blocking)
            .await
            .expect("start a private cluster")
    }

    /// A fresh, empty database; returns its URL.
    pub async fn create_database(&self) -> String {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t_{}_{n}", std::process::id());
        let admin = connect(&self.admin_url()).await;
        let mut tries = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
            {
                Ok(()) => break,
                // Concurrent CREATE DATABASE from one template can collide; try again.
                Err(err) if tries < 20 => {
                    tries += 1;
                    eprintln!("CREATE DATABASE {name} failed ({err}); retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("CREATE DATABASE {name}: {err}"),
            }
        }
        self.url(&name)
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("{}/{database}{}", self.base_url, self.params)
    }

    /// The `postgres` database's URL.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// Stops the server (fast shutdown), keeping its data. Private clusters only.
    pub async fn stop(&self) {
        let private = self
            .private
            .as_ref()
            .expect("only a private cluster can be stopped");
        let data = private.dir.join("data");
        let out = private.run(
            Command::new(private.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-m", "fast", "-w", "stop"]),
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it again on the same port and data; returns once it accepts connections.
    pub async fn restart(&self) {
        let private = self
            .private
            .as_ref()
            .expect("only a private cluster can be restarted");
        private
            .start()
            .unwrap_or_else(|log| panic!("restart failed:\n{log}"));
    }

    fn external(url: &str) -> Cluster {
        let (without_params, params) = match url.find('?') {
            Some(i) => (&url[..i], url[i..].to_owned()),
            None => (url, String::new()),
        };
        let scheme_end = without_params.find("://").map_or(0, |i| i + 3);
        let base_url = match without_params[scheme_end..].find('/') {
            Some(i) => without_params[..scheme_end + i].to_owned(),
            None => without_params.to_owned(),
        };
        Cluster {
            base_url,
            params,
            private: None,
        }
    }

    fn start_blocking() -> Cluster {
        let bin = find_bin_dir();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("pgbridge-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        let user = postgres_user();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .expect("chown the cluster directory");
        }
        let mut private = Private {
            bin,
            dir,
            port: 0,
            user,
        };
        let init = private.run(
            Command::new(private.bin.join("initdb"))
                .arg("-D")
                .arg(private.dir.join("data"))
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]),
        );
        assert!(
            init.status.success(),
            "initdb failed:\n{}",
            String::from_utf8_lossy(&init.stderr)
        );

        let mut last_log = String::new();
        for _ in 0..5 {
            private.port = free_port();
            match private.start() {
                Ok(()) => {
                    private.watch();
                    return Cluster {
                        base_url: format!("postgres://postgres@127.0.0.1:{}", private.port),
                        params: String::new(),
                        private: Some(private),
                    };
                }
                Err(log) => last_log = log,
            }
        }
        panic!("could not start PostgreSQL:\n{last_log}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(private) = &self.private {
            let data = private.dir.join("data");
            let _ = private.run(
                Command::new(private.bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(&data)
                    .args(["-m", "immediate", "stop"]),
            );
            let _ = std::fs::remove_dir_all(&private.dir);
        }
    }
}

impl Private {
    /// `pg_ctl start -w`; on failure, the server log.
    fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB",
            port = self.port,
            dir = self.dir.display(),
        );
        let log = self.dir.join("server.log");
        let out = self.run(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(options)
                .args(["-w", "-t", "60", "start"]),
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }

    /// A watchdog: once this test process is gone, stop the server and delete its files.
    fn watch(&self) {
        // `( ... ) &` detaches the loop from this `sh`, which exits at once and is reaped
        // here; the loop lives on, adopted by init.
        let script = format!(
            "( while [ -d /proc/{pid} ]; do sleep 0.5; done; \
             '{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}' ) &",
            pid = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        let mut command = Command::new("sh");
        command
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: a signal to the test's group does not take it down first.
        command.process_group(0);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        let status = command.status().expect("start the cluster watchdog");
        assert!(status.success(), "the cluster watchdog did not start");
    }

    /// Runs a Postgres tool as the cluster's owner.
    fn run(&self, command: &mut Command) -> Output {
        command.current_dir(&self.dir).stdin(Stdio::null());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
            .output()
            .unwrap_or_else(|e| panic!("run {command:?}: {e}"))
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// `initdb`'s folder: on PATH, else the newest `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return dir;
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql: install postgresql, or set DATABASE_URL")
    })
}

/// The `postgres` user's ids when running as root (initdb refuses root); else `None`.
fn postgres_user() -> Option<(u32, u32)> {
    let euid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&euid.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "running as root needs a `postgres` system user for the test cluster"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    Some((id("-u"), id("-g")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
