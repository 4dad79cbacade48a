//! Starting and stopping a cluster's postmaster with `pg_ctl`, and knowing when it answers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::EmbeddedPgError;
use super::user::AsUser;

/// How long a (re)started server has to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a cluster listens: always a Unix socket in [`PgServer::dir`]; TCP on loopback too
/// when `tcp`.
#[derive(Debug, Clone)]
pub struct PgServer {
    /// The folder holding `pg_ctl`.
    pub bin: PathBuf,
    /// The cluster's folder: its Unix socket and `server.log` live here.
    pub dir: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    /// The port: on 127.0.0.1 when `tcp`, and the number in the socket's name.
    pub port: u16,
    /// Listen on 127.0.0.1 as well as on the socket.
    pub tcp: bool,
    /// `(uid, gid)` to run the tools as, when running as root.
    pub user: Option<(u32, u32)>,
    /// More `postgres` options, e.g. `-c fsync=off`, each already quoted for `sh`.
    pub options: Vec<String>,
}

impl PgServer {
    /// The server log (`pg_ctl -l`).
    pub fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The path of the Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// A `pg_ctl` command run as the cluster's owner, in the cluster's folder.
    pub fn pg_ctl(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.bin.join("pg_ctl"));
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .as_user(self.user);
        command
    }

    /// A connection configuration for `database` as `postgres`, over the Unix socket (which
    /// only this server can own, and which needs no TLS whatever TCP requires).
    pub fn client_config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.dir)
            .port(self.port)
            .user("postgres")
            .dbname(database)
            .connect_timeout(Duration::from_secs(5));
        config
    }

    /// Whether a postmaster runs on this data directory (`pg_ctl status`).
    pub async fn is_running(&self) -> bool {
        let status = self
            .pg_ctl()
            .arg("-D")
            .arg(&self.data)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        matches!(status, Ok(status) if status.success())
    }

    /// `pg_ctl start`, then waits until this server (not another on a reused port) accepts
    /// connections. On failure, says why, with the end of the server log.
    pub async fn start(&self) -> Result<(), EmbeddedPgError> {
        let started = Instant::now();
        let listen = if self.tcp { "127.0.0.1" } else { "" };
        let options = [
            format!("-p {}", self.port),
            format!("-k {}", shell_quote(&self.dir.to_string_lossy())),
            format!("-c listen_addresses={}", shell_quote(listen)),
            "-c logging_collector=off".to_owned(),
        ]
        .into_iter()
        .chain(self.options.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
        // `-w` notices a server that exits at once (say, its port was taken).
        let out = self
            .pg_ctl()
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.log())
            .arg("-o")
            .arg(options)
            .args(["-w", "-t", &START_TIMEOUT.as_secs().to_string(), "start"])
            .output()
            .await
            .map_err(|e| EmbeddedPgError::io("run pg_ctl start", e))?;
        if !out.status.success() {
            return Err(EmbeddedPgError::Other(format!(
                "pg_ctl start on port {} failed ({}): {}{}\n{}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            )));
        }
        self.wait_until_ready(started + START_TIMEOUT).await
    }

    /// Waits until the server accepts connections and is the one on this data directory.
    pub async fn wait_until_ready(&self, deadline: Instant) -> Result<(), EmbeddedPgError> {
        let config = self.client_config("postgres");
        let data = std::fs::canonicalize(&self.data)
            .unwrap_or_else(|_| self.data.clone())
            .to_string_lossy()
            .into_owned();
        let ours = |dir: &str| {
            dir == data || std::fs::canonicalize(dir).is_ok_and(|d| d.to_string_lossy() == data)
        };
        loop {
            let error = match connect(&config).await {
                Ok(client) => match client
                    .query_one("SELECT current_setting('data_directory')", &[])
                    .await
                {
                    // Make sure it is the server of this data directory answering.
                    Ok(row) if ours(&row.get::<_, String>(0)) => return Ok(()),
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
                return Err(EmbeddedPgError::Other(format!(
                    "the server on port {} did not accept connections within {:?}: {error}\n{}",
                    self.port,
                    START_TIMEOUT,
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `pg_ctl stop` in `mode` (`fast` keeps everything consistent; `immediate` is a crash),
    /// waiting until the server has exited.
    pub async fn stop(&self, mode: StopMode) -> Result<(), EmbeddedPgError> {
        let out = self
            .pg_ctl()
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode.as_str(), "-w", "-t", "60", "stop"])
            .output()
            .await
            .map_err(|e| EmbeddedPgError::io("run pg_ctl stop", e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(EmbeddedPgError::Other(format!(
                "pg_ctl stop failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// [`stop`](Self::stop) without a runtime, ignoring failure: for `Drop`.
    pub fn stop_blocking(&self, mode: StopMode) {
        let _ = std::process::Command::new(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode.as_str(), "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir(&self.dir)
            .as_user(self.user)
            .status();
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
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

/// `pg_ctl stop -m` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect clients, checkpoint, exit: nothing to recover at the next start.
    Fast,
    /// Exit at once; the next start replays the WAL.
    Immediate,
}

impl StopMode {
    /// The name `pg_ctl -m` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// Connects and drives the connection on the current runtime.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `s` as one word for `sh` (pg_ctl hands `-o` to the shell).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether `dir` is short enough to hold a Unix socket named `.s.PGSQL.<port>` (the
/// kernel allows 107 bytes of path).
pub fn socket_path_fits(dir: &Path, port: u16) -> bool {
    use std::os::unix::ffi::OsStrExt;
    dir.join(format!(".s.PGSQL.{port}"))
        .as_os_str()
        .as_bytes()
        .len()
        <= 107
}
