//! The watchdog: stops a cluster when the process that owns it ends, however it ends.
//!
//! A `sh` in its own process group whose stdin is a pipe from the owner. Nobody ever writes
//! to it; when the owner exits for any reason (or drops the [`Watchdog`]), the kernel closes
//! the pipe, the watchdog's `cat` sees end-of-file, and the watchdog stops whatever
//! postmaster runs in the data directory, then (for throwaway clusters) deletes the
//! cluster's folder. A pipe, rather than polling the owner's pid, cannot be fooled by pid
//! reuse, needs no permission to signal root's processes, and acts at once.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};

use super::EmbeddedPgError;
use super::server::{PgServer, StopMode};
use super::user::AsUser;

/// A running watchdog; dropping it (or the process ending) sets it off.
#[derive(Debug)]
pub struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts a watchdog that stops `server` in `mode` when set off, then deletes `remove`
    /// if given. `name` is what `ps` shows for it.
    pub fn spawn(
        name: &str,
        server: &PgServer,
        mode: StopMode,
        remove: Option<&Path>,
    ) -> Result<Self, EmbeddedPgError> {
        const SCRIPT: &str = r#"
trap '' HUP INT
cat >/dev/null 2>&1
"$1" -D "$2" -m "$3" stop >/dev/null 2>&1
if [ -n "$4" ]; then rm -rf "$4"; fi
"#;
        let mut child = std::process::Command::new("sh")
            .args(["-c", SCRIPT, name])
            .arg(server.bin.join("pg_ctl"))
            .arg(&server.data)
            .arg(mode.as_str())
            .arg(remove.map(Path::as_os_str).unwrap_or_default())
            .current_dir(&server.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the owner's process group: Ctrl-C there must not kill the watchdog.
            .process_group(0)
            .as_user(server.user)
            .spawn()
            .map_err(|e| EmbeddedPgError::io("start the cluster watchdog (sh)", e))?;
        let pipe = child.stdin.take();
        Ok(Self { child, pipe })
    }

    /// Sets the watchdog off and waits until it has done its work.
    pub fn finish(mut self) {
        self.finish_mut();
    }

    fn finish_mut(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            drop(pipe);
            let _ = self.child.wait();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.finish_mut();
    }
}
