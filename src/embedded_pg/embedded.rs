//! The service's own cluster: created in a folder on first use, started (or reused) at
//! start-up, stopped at exit with its data kept.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::server::{PgServer, StopMode, connect, socket_path_fits};
use super::user::chown;
use super::{EmbeddedPgError, Initdb, Watchdog, cluster_user, find_bin_dir};

/// What to tell a person whose machine has no PostgreSQL server binaries.
pub const NO_BINARIES_HELP: &str = "\
pgbridge needs a PostgreSQL database, and with DATABASE_URL unset it runs its own from the \
machine's PostgreSQL server binaries (initdb, pg_ctl), but found none on PATH or under \
/usr/lib/postgresql/*/bin. Three ways on:
  1. install PostgreSQL's server (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql) and run again;
  2. point it at a server you have: DATABASE_URL=postgres://user:password@host:5432/dbname cargo run
  3. run everything in containers: docker compose up   (Docker with Compose v2)";

/// The port in the socket's name. Nothing listens on TCP.
const PORT: u16 = 5432;

/// The service's private cluster in a folder of its own: `pgdata/` (the data), the Unix
/// socket the service connects through (no TCP port, so nothing collides and nobody else
/// on the network can reach it), `server.log`, and `pgbridge.lock`.
#[derive(Debug)]
pub struct EmbeddedPg {
    server: PgServer,
    /// Set when this process stops the cluster on exit; unset when another live process
    /// (holding the lock) started it.
    watchdog: Option<Watchdog>,
    /// Held while this process owns the cluster.
    _lock: File,
    reused: bool,
}

impl EmbeddedPg {
    /// The database the service uses in the cluster.
    pub const DATABASE: &'static str = "pgbridge";

    /// Starts the cluster in `dir` (creating the folder and the cluster on first use), or
    /// reuses it if it already runs there, and makes sure the [`DATABASE`](Self::DATABASE)
    /// exists. If another live process started it (it holds `pgbridge.lock`), this one
    /// only connects and leaves stopping it to that process.
    pub async fn open(dir: &Path) -> Result<Self, EmbeddedPgError> {
        let bin = find_bin_dir()?;
        let user = cluster_user()?;
        let dir = make_folder(dir, user)?;
        let (lock, owner) = lock(&dir.join("pgbridge.lock"))?;
        let server = PgServer {
            bin,
            data: dir.join("pgdata"),
            dir,
            port: PORT,
            tcp: false,
            user,
            options: Vec::new(),
        };
        let mut reused = false;
        let watchdog = if owner {
            if !server.data.join("PG_VERSION").is_file() {
                create(&server).await?;
            }
            // Before starting: from here on, however this process ends, the cluster stops.
            let watchdog = Watchdog::spawn("pgbridge-pg-watchdog", &server, StopMode::Fast, None)?;
            if server.is_running().await {
                reused = true;
                tracing::info!(data = %server.data.display(), "reusing the PostgreSQL cluster already running");
            } else {
                tracing::info!(data = %server.data.display(), bin = %server.bin.display(), "starting PostgreSQL");
                server.start().await?;
            }
            Some(watchdog)
        } else {
            reused = true;
            tracing::info!(
                data = %server.data.display(),
                "another pgbridge owns the PostgreSQL cluster here; using it (it stops it on exit)"
            );
            let deadline = std::time::Instant::now() + super::START_TIMEOUT * 4;
            server.wait_until_ready(deadline).await?;
            None
        };
        let pg = Self {
            server,
            watchdog,
            _lock: lock,
            reused,
        };
        pg.ensure_database().await?;
        Ok(pg)
    }

    /// The connection URL of the service's database, over the cluster's Unix socket.
    pub fn url(&self) -> String {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let dir = self.server.dir.to_string_lossy();
        format!(
            "postgres://postgres@{}:{}/{}?sslmode=disable",
            utf8_percent_encode(&dir, NON_ALPHANUMERIC),
            self.server.port,
            Self::DATABASE
        )
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        &self.server.dir
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        &self.server.data
    }

    /// Whether the cluster was already running when [`open`](Self::open) was called.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Stops the cluster (fast shutdown: clients disconnected, a checkpoint, no recovery
    /// at the next start), keeping its data. Does nothing to a cluster another process
    /// owns.
    pub async fn stop(mut self) -> Result<(), EmbeddedPgError> {
        let Some(watchdog) = self.watchdog.take() else {
            return Ok(());
        };
        let stopped = self.server.stop(StopMode::Fast).await;
        // Nothing left for it to stop; let it go.
        watchdog.finish();
        stopped
    }

    async fn ensure_database(&self) -> Result<(), EmbeddedPgError> {
        let sql = |what: &str| {
            let what = what.to_owned();
            move |source| EmbeddedPgError::Sql { what, source }
        };
        let client = connect(&self.server.client_config("postgres"))
            .await
            .map_err(sql("connect to the embedded cluster"))?;
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&Self::DATABASE],
            )
            .await
            .map_err(sql("look for the pgbridge database"))?
            .is_some();
        if !exists {
            match client
                .batch_execute(&format!("CREATE DATABASE {}", Self::DATABASE))
                .await
            {
                Ok(()) => {}
                // Created meanwhile by another process sharing the cluster.
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
                Err(e) => return Err(sql("create the pgbridge database")(e)),
            }
        }
        Ok(())
    }
}

/// Creates `dir` if needed (private to its owner), as an absolute path short enough for
/// the socket, owned by the cluster's user.
fn make_folder(dir: &Path, user: Option<(u32, u32)>) -> Result<PathBuf, EmbeddedPgError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| EmbeddedPgError::io(format!("create {}", dir.display()), e))?;
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| EmbeddedPgError::io(format!("resolve {}", dir.display()), e))?;
    if !socket_path_fits(&dir, PORT) {
        return Err(EmbeddedPgError::Other(format!(
            "{} is too long a path for the cluster's Unix socket (at most 92 bytes): set \
             EMBEDDED_PG_DIR to a shorter one",
            dir.display()
        )));
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| EmbeddedPgError::io(format!("chmod {}", dir.display()), e))?;
    chown(&dir, user)?;
    if user.is_some() && !reachable_by(&dir, user) {
        return Err(EmbeddedPgError::Other(format!(
            "running as root, the cluster runs as the postgres user (initdb refuses root), and \
             it cannot reach {}: a parent folder is private to root. Set EMBEDDED_PG_DIR to a \
             folder it can reach (e.g. /var/tmp/pgbridge), or run as another user",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Whether `user` can enter `dir` (every parent searchable).
fn reachable_by(dir: &Path, user: Option<(u32, u32)>) -> bool {
    use super::user::AsUser;
    std::process::Command::new("sh")
        .args(["-c", "cd \"$1\"", "sh"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .current_dir("/")
        .as_user(user)
        .status()
        .is_ok_and(|status| status.success())
}

/// `initdb` into the server's data directory, unless something else is there.
async fn create(server: &PgServer) -> Result<(), EmbeddedPgError> {
    let data = &server.data;
    if std::fs::read_dir(data).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(EmbeddedPgError::Other(format!(
            "{} is not empty but holds no PostgreSQL cluster (no PG_VERSION): move it away, \
             or set EMBEDDED_PG_DIR to another folder",
            data.display()
        )));
    }
    tracing::info!(data = %data.display(), bin = %server.bin.display(), "creating a PostgreSQL cluster (once)");
    let made = Initdb {
        bin: &server.bin,
        data,
        cwd: &server.dir,
        user: server.user,
        no_sync: false,
    }
    .run()
    .await;
    if made.is_err() {
        // initdb removes what it made on failure, but not a folder that existed before.
        let _ = std::fs::remove_dir(data);
    }
    made
}

/// Opens `path` and takes an exclusive lock on it without waiting: `(file, true)` if this
/// process now holds it, `(file, false)` if another live process does. The kernel drops
/// the lock when the process ends, however it ends.
fn lock(path: &Path) -> Result<(File, bool), EmbeddedPgError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| EmbeddedPgError::io(format!("open {}", path.display()), e))?;
    // `flock(LOCK_EX | LOCK_NB)` on Linux.
    match file.try_lock() {
        Ok(()) => Ok((file, true)),
        Err(std::fs::TryLockError::WouldBlock) => Ok((file, false)),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(EmbeddedPgError::io(format!("lock {}", path.display()), err))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_no_binaries_message_names_the_three_ways_on() {
        for way in [
            "apt-get install postgresql",
            "DATABASE_URL=",
            "docker compose up",
        ] {
            assert!(NO_BINARIES_HELP.contains(way), "{way} missing");
        }
    }

    #[test]
    fn a_lock_is_held_once() {
        let path = std::env::temp_dir().join(format!("pgbridge-lock-{}", std::process::id()));
        let (first, owner) = lock(&path).unwrap();
        assert!(owner);
        // flock locks belong to the open file description: a second open is refused.
        let (_, second) = lock(&path).unwrap();
        assert!(!second);
        drop(first);
        let (_, again) = lock(&path).unwrap();
        assert!(again);
        let _ = std::fs::remove_file(&path);
    }
}
