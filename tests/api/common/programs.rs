//! The programs some integration tests need beyond Rust and PostgreSQL, found the same way at
//! build time (by `build.rs`, which includes this file) and at run time (by the tests).
//!
//! How a test that needs a program is written — the one mechanism for every such test:
//!
//! ```text
//! #[tokio::test]
//! #[cfg_attr(skip_nginx, ignore = "SKIPPED: needs nginx: apt-get install nginx-light")]
//! async fn behind_nginx() {
//!     let nginx = common::programs::path("nginx"); // the program's path
//!     ...
//! }
//! ```
//!
//! - `build.rs` looks for every program in [`PROGRAMS`] and sets the cfg `skip_<name>` for
//!   each one it does not find, so `cargo test` reports the test as **ignored** with its
//!   `SKIPPED: needs …: <install command>` reason (counted as skipped, not passed).
//! - With the environment variable `CI` set, no `skip_*` cfg is set: the test runs, and
//!   [`path`] fails it, naming the install command, if the program is missing.
//! - Installing a program later is noticed: `build.rs` asks cargo to rerun it when any
//!   directory searched here changes, so the next `cargo test` runs the test.
//! - `cargo test -- --include-ignored` runs the skipped tests anyway (they fail in [`path`]).
//!
//! To add a program: add a row to [`PROGRAMS`] (its cfg is `skip_<name>`, with `-` as `_`), and
//! use that cfg with a literal `ignore = "SKIPPED: …"` reason (libtest prints only a literal).
//! This file uses `std` only: `build.rs` compiles it too.

use std::path::{Path, PathBuf};

/// A program a test may need.
#[derive(Debug)]
pub struct Program {
    /// Its name; the cfg `skip_<name>` (with `-` as `_`) is set when it is missing.
    pub name: &'static str,
    /// The file names looked for in the searched directories ([`search_dirs`]).
    pub files: &'static [&'static str],
    /// A Python module that must import too (`python3 -c "import <module>"`), if any.
    pub python_module: Option<&'static str>,
    /// How to install it on Debian/Ubuntu.
    pub install: &'static str,
}

/// Every program a test may need, with how to install it.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "nginx",
        files: &["nginx"],
        python_module: None,
        install: "apt-get install nginx-light",
    },
    Program {
        name: "pgbouncer",
        files: &["pgbouncer"],
        python_module: None,
        install: "apt-get install pgbouncer",
    },
    Program {
        name: "chromium",
        files: &["chromium", "chromium-browser"],
        python_module: None,
        install: "apt-get install chromium",
    },
    Program {
        name: "playwright",
        files: &["python3"],
        python_module: Some("playwright.sync_api"),
        install: "pip install playwright",
    },
    Program {
        name: "sqlx",
        files: &["sqlx"],
        python_module: None,
        install: "cargo install sqlx-cli --locked --no-default-features --features postgres,rustls",
    },
    Program {
        name: "schemathesis",
        files: &["schemathesis"],
        python_module: None,
        install: "pip install schemathesis",
    },
    Program {
        name: "patroni",
        files: &["patroni"],
        python_module: None,
        install: "apt-get install patroni",
    },
    Program {
        name: "etcd",
        files: &["etcd"],
        python_module: None,
        install: "apt-get install etcd-server",
    },
    Program {
        name: "haproxy",
        files: &["haproxy"],
        python_module: None,
        install: "apt-get install haproxy",
    },
    Program {
        name: "prometheus",
        files: &["prometheus"],
        python_module: None,
        install: "apt-get install prometheus",
    },
    Program {
        name: "promtool",
        files: &["promtool"],
        python_module: None,
        install: "apt-get install prometheus",
    },
];

/// The directories searched, in order: `PATH`'s, then the usual places for programs that are
/// not on a user's `PATH` (`/usr/sbin`, cargo's and pip's per-user `bin`).
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for fixed in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        dirs.push(PathBuf::from(fixed));
    }
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        dirs.push(Path::new(&cargo_home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
        dirs.push(Path::new(&home).join(".local/bin"));
    }
    let mut unique = Vec::new();
    for dir in dirs {
        if dir.is_absolute() && !unique.contains(&dir) {
            unique.push(dir);
        }
    }
    unique
}

/// The program named `name` in [`PROGRAMS`], if this machine has it: the path of its first
/// file found (an executable regular file), and its Python module importing, if it has one.
pub fn find(name: &str) -> Option<PathBuf> {
    let program = program(name);
    let file = search_dirs().into_iter().find_map(|dir| {
        program
            .files
            .iter()
            .map(|f| dir.join(f))
            .find(|p| is_executable(p))
    })?;
    if let Some(module) = program.python_module {
        let imports = std::process::Command::new(&file)
            .args(["-c", &format!("import {module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !imports {
            return None;
        }
    }
    Some(file)
}

/// The path of the program named `name`, for a test that needs it; a missing program fails the
/// test, naming how to install it (under `CI`, where nothing is skipped, or with
/// `--include-ignored`).
pub fn path(name: &str) -> PathBuf {
    find(name).unwrap_or_else(|| {
        panic!(
            "this test needs {name}, which is not installed: {} (bash .ci/run installs it)",
            program(name).install
        )
    })
}

/// The row of [`PROGRAMS`] named `name`.
pub fn program(name: &str) -> &'static Program {
    PROGRAMS
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} is not in tests/api/common/programs.rs's PROGRAMS"))
}

/// The cfg set when `program` is missing: `skip_<name>`.
pub fn skip_cfg(program: &Program) -> String {
    format!("skip_{}", program.name.replace('-', "_"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether this process has effective uid 0, read from `/proc/self/status`: `build.rs` sets
/// the cfg `not_root` from it (for the tests of what only root sees), and those tests check
/// it again when they run.
pub fn effective_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .map(|euid| euid == "0")
        })
        .unwrap_or(false)
}
