//! A hot standby of a private test cluster: `pg_basebackup -R`, then `postgres` on a port
//! of its own, streaming from the primary.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::process::{Program, Spec, free_port, postgres_user, temp_dir};

/// A running standby.
pub struct Standby {
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    program: Option<Program>,
    /// Stopped servers, kept so that their watchdogs (which delete the data) wait until
    /// the standby is dropped.
    stopped: Vec<Program>,
}

/// The newest `/usr/lib/postgresql/<v>/bin` holding `pg_basebackup`.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_basebackup").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .expect("pg_basebackup under /usr/lib/postgresql/*/bin")
}

/// The port of a `postgres://user@host:port/db` URL.
pub fn port_of(url: &str) -> u16 {
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("url");
    authority
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in url")
}

impl Standby {
    /// Clones the primary listening on `primary_port` with `pg_basebackup -R` (streaming
    /// WAL) and starts it as a hot standby; returns once it accepts connections.
    pub async fn start(primary_port: u16) -> Standby {
        let user = postgres_user();
        let bin = bin_dir();
        let dir = temp_dir("standby", user);
        let data = dir.join("data");
        let mut backup = tokio::process::Command::new(bin.join("pg_basebackup"));
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .current_dir(&dir)
            .kill_on_drop(true);
        if let Some((uid, gid)) = user {
            backup.uid(uid).gid(gid);
        }
        let out = backup.output().await.expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut standby = Standby {
            port: free_port(),
            dir,
            bin,
            user,
            program: None,
            stopped: Vec::new(),
        };
        standby.start_again().await;
        standby
    }

    /// Starts the standby's server (again, after [`stop`](Self::stop)).
    pub async fn start_again(&mut self) {
        let program = Program::start(Spec {
            name: "standby",
            program: &self.bin.join("postgres"),
            args: vec![
                "-D".into(),
                self.dir.join("data").display().to_string(),
                "-p".into(),
                self.port.to_string(),
                "-k".into(),
                self.dir.display().to_string(),
                "-c".into(),
                "listen_addresses=127.0.0.1".into(),
                "-c".into(),
                "hot_standby=on".into(),
                "-c".into(),
                "fsync=off".into(),
                "-c".into(),
                "max_connections=300".into(),
                "-c".into(),
                "shared_buffers=16MB".into(),
                "-c".into(),
                "logging_collector=off".into(),
            ],
            env: vec![],
            user: self.user,
            log: self.dir.join(format!("standby-{}.log", self.stopped.len())),
            // Immediate shutdown: nothing to wait for in a test.
            stop_signal: "QUIT",
            cleanup: Some(&self.dir),
        });
        self.program = Some(program);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((client, conn)) =
                tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await
            {
                tokio::spawn(conn);
                if client.simple_query("SELECT 1").await.is_ok() {
                    return;
                }
            }
            let exited = self.program.as_mut().is_some_and(|p| !p.running());
            if exited || Instant::now() > deadline {
                let tail = self
                    .program
                    .as_ref()
                    .map(Program::log_tail)
                    .unwrap_or_default();
                panic!("the standby did not accept connections in 30 s\n{tail}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the standby's server (fast shutdown), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut program) = self.program.take() {
            program.signal("INT");
            assert!(
                program.wait_exit(Duration::from_secs(20)).is_some(),
                "the standby did not stop"
            );
            self.stopped.push(program);
        }
    }

    /// The URL of `database` on the standby.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Waits until the standby has replayed everything the primary at `primary_url` has
    /// written so far.
    pub async fn catch_up(&self, primary_url: &str) {
        let primary = super::service::connect(primary_url).await;
        let standby = super::service::connect(&self.url("postgres")).await;
        // A commit record: an idle primary's insert position may sit just past a page
        // header that no replayed record ends at.
        primary
            .batch_execute("SELECT txid_current()")
            .await
            .unwrap();
        let lsn: String = primary
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let caught: bool = standby
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&lsn],
                )
                .await
                .unwrap()
                .get(0);
            if caught {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the standby did not replay {lsn} in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
