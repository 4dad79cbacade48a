//! Creating a cluster's data directory with `initdb`.

use std::path::Path;
use std::process::Stdio;

use super::EmbeddedPgError;
use super::user::AsUser;

/// How to initialise a data directory.
#[derive(Debug, Clone)]
pub struct Initdb<'a> {
    /// The folder holding `initdb`.
    pub bin: &'a Path,
    /// The data directory to create (it must not exist, or be empty).
    pub data: &'a Path,
    /// Working directory for `initdb` (readable by `user`).
    pub cwd: &'a Path,
    /// `(uid, gid)` to run as, when running as root.
    pub user: Option<(u32, u32)>,
    /// Skip `fsync` of the new files: for throwaway clusters.
    pub no_sync: bool,
}

impl Initdb<'_> {
    /// Runs `initdb`: superuser `postgres`, `trust` authentication (the cluster listens only
    /// where its owner says), UTF-8, locale C. On failure, says why, with initdb's output.
    pub async fn run(&self) -> Result<(), EmbeddedPgError> {
        let initdb = self.bin.join("initdb");
        let mut command = tokio::process::Command::new(&initdb);
        command
            .arg("-D")
            .arg(self.data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .current_dir(self.cwd)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .as_user(self.user);
        if self.no_sync {
            command.arg("--no-sync");
        }
        let out = command
            .output()
            .await
            .map_err(|e| EmbeddedPgError::io(format!("run {}", initdb.display()), e))?;
        if out.status.success() {
            return Ok(());
        }
        let hint = match self.user {
            Some(_) => format!(
                "\n(as root, the cluster runs as the postgres user: every parent directory \
                 of {} must be searchable by it)",
                self.data.display()
            ),
            None => String::new(),
        };
        Err(EmbeddedPgError::Other(format!(
            "initdb failed ({}):\n{}{}{hint}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}
