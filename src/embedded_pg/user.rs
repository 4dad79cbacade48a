//! Whom the cluster runs as: the current user, or, as root, the `postgres` system user
//! (`initdb` and `pg_ctl` refuse to run as root).

use super::EmbeddedPgError;

/// As root, the `postgres` system user's `(uid, gid)`; otherwise `None`: the cluster runs as
/// the current user. Fails as root when there is no `postgres` user.
///
/// ```no_run
/// match pgbridge::embedded_pg::cluster_user()? {
///     Some((uid, gid)) => println!("running Postgres as {uid}:{gid}"),
///     None => println!("running Postgres as myself"),
/// }
/// # Ok::<(), pgbridge::embedded_pg::EmbeddedPgError>(())
/// ```
pub fn cluster_user() -> Result<Option<(u32, u32)>, EmbeddedPgError> {
    if effective_uid()? != 0 {
        return Ok(None);
    }
    postgres_ids()
        .map(Some)
        .ok_or(EmbeddedPgError::NoPostgresUser)
}

fn effective_uid() -> Result<u32, EmbeddedPgError> {
    // `Uid:` real, effective, saved, filesystem.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(euid) = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .and_then(|euid| euid.parse().ok())
    {
        return Ok(euid);
    }
    let out = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| EmbeddedPgError::io("run `id -u` to learn whether we are root", e))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| EmbeddedPgError::Other("`id -u` did not print a number".into()))
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

/// Runs a command as `user` (`(uid, gid)`) when given.
pub(crate) trait AsUser {
    /// Sets the command's uid and gid when `user` is `Some`.
    fn as_user(&mut self, user: Option<(u32, u32)>) -> &mut Self;
}

impl AsUser for std::process::Command {
    fn as_user(&mut self, user: Option<(u32, u32)>) -> &mut Self {
        use std::os::unix::process::CommandExt;
        if let Some((uid, gid)) = user {
            self.uid(uid).gid(gid);
        }
        self
    }
}

impl AsUser for tokio::process::Command {
    fn as_user(&mut self, user: Option<(u32, u32)>) -> &mut Self {
        if let Some((uid, gid)) = user {
            self.uid(uid).gid(gid);
        }
        self
    }
}

/// Gives `path` to `user` (when running as root), so the cluster can write there.
pub(crate) fn chown(
    path: &std::path::Path,
    user: Option<(u32, u32)>,
) -> Result<(), EmbeddedPgError> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| {
            EmbeddedPgError::io(format!("chown {} to the postgres user", path.display()), e)
        })?;
    }
    Ok(())
}
