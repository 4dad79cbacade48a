//! Finding the machine's PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`).

use std::path::{Path, PathBuf};

use super::EmbeddedPgError;

/// The folder holding `initdb` and `pg_ctl`: the first on `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout, where they are not on `PATH`).
///
/// ```no_run
/// let bin = pgbridge::embedded_pg::find_bin_dir()?;
/// println!("initdb is {}", bin.join("initdb").display());
/// # Ok::<(), pgbridge::embedded_pg::EmbeddedPgError>(())
/// ```
pub fn find_bin_dir() -> Result<PathBuf, EmbeddedPgError> {
    find_in(
        std::env::var_os("PATH").as_deref(),
        Path::new("/usr/lib/postgresql"),
    )
    .ok_or(EmbeddedPgError::NoBinaries)
}

/// [`find_bin_dir`] with `path` for `$PATH` and `versions` for `/usr/lib/postgresql`.
fn find_in(path: Option<&std::ffi::OsStr>, versions: &Path) -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = path
        && let Some(dir) = std::env::split_paths(path).find(|dir| has_tools(dir))
    {
        return Some(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(versions)
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
    found.pop().map(|(_, bin)| bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("initdb"), "").unwrap();
        std::fs::write(dir.join("pg_ctl"), "").unwrap();
    }

    #[test]
    fn path_first_then_the_newest_version() {
        let root = std::env::temp_dir().join(format!("pgbridge-bins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let versions = root.join("lib");
        tools(&versions.join("9/bin"));
        tools(&versions.join("15/bin"));
        tools(&versions.join("13/bin"));
        std::fs::create_dir_all(versions.join("notes")).unwrap();
        // Numeric, not lexical: 15 beats 9.
        assert_eq!(find_in(None, &versions), Some(versions.join("15/bin")));
        let on_path = root.join("path");
        tools(&on_path);
        let path = std::env::join_paths([root.join("empty"), on_path.clone()]).unwrap();
        assert_eq!(find_in(Some(&path), &versions), Some(on_path));
        assert_eq!(find_in(None, &root.join("nothing")), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
