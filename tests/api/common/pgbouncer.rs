//! A private PgBouncer (Debian's, 1.18) in transaction mode in front of a test server.

use std::path::PathBuf;
use std::time::Duration;

use super::process::{Program, Spec, free_port, postgres_user, temp_dir, wait_for_port};
use super::programs;

/// A running PgBouncer.
pub struct PgBouncer {
    pub port: u16,
    pub dir: PathBuf,
    pub program: Program,
}

impl PgBouncer {
    /// PgBouncer on a free loopback port, `pool_mode = transaction`, `default_pool_size`
    /// server connections per database/user pair, every database name (`*`) forwarded to
    /// the Postgres at `pg_port`. Everything else is PgBouncer's default (no
    /// `ignore_startup_parameters`, no `max_prepared_statements`: 1.18 has none).
    pub async fn start(pg_port: u16, default_pool_size: u32) -> PgBouncer {
        Self::start_with(pg_port, default_pool_size, "").await
    }

    /// [`start`](Self::start), with `settings` (`name = value` lines) added to the
    /// `[pgbouncer]` section.
    pub async fn start_with(pg_port: u16, default_pool_size: u32, settings: &str) -> PgBouncer {
        let user = postgres_user();
        let dir = temp_dir("pgbouncer", user);
        let port = free_port();
        let ini = format!(
            "[databases]\n\
             * = host=127.0.0.1 port={pg_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = transaction\n\
             default_pool_size = {default_pool_size}\n\
             {settings}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n").expect("write userlist");
        let program = Program::start(Spec {
            name: "pgbouncer",
            program: &programs::path("pgbouncer"),
            args: vec![dir.join("pgbouncer.ini").display().to_string()],
            env: vec![],
            user,
            log: dir.join("pgbouncer.log"),
            stop_signal: "INT",
            cleanup: Some(&dir),
        });
        wait_for_port(port, Duration::from_secs(10), "pgbouncer").await;
        PgBouncer { port, dir, program }
    }

    /// The URL of `database` through this PgBouncer.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}
