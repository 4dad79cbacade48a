//! `cargo run` with no `DATABASE_URL`: the binary runs its own PostgreSQL cluster in
//! `EMBEDDED_PG_DIR`, serves on it, stops it on SIGTERM keeping the data, and reuses the
//! data at the next start.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::http::{authenticate_by_default, get, send};
use common::process::{KillOnDrop, Listen, pgbridge_command};

/// A folder for the cluster that the `postgres` user can reach when we are root.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgbridge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn spawn(pg_dir: &Path, listen: &Listen, log: &Path) -> KillOnDrop {
    let mut command = pgbridge_command(listen, log);
    command.env("EMBEDDED_PG_DIR", pg_dir);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    KillOnDrop(command.spawn().expect("start pgbridge"))
}

async fn terminate(child: &mut KillOnDrop) -> ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "pgbridge did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Whether a postmaster still runs on `data` (its `postmaster.pid` names a live process).
fn postmaster_running(data: &Path) -> bool {
    let Ok(pid_file) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return false;
    };
    let pid = pid_file.lines().next().unwrap_or("").trim();
    !pid.is_empty() && Path::new("/proc").join(pid).exists()
}

/// Pids of processes whose command line contains every one of `needles`.
fn processes_with(needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if needles.iter().all(|needle| cmdline.contains(needle)) {
            found.push(name);
        }
    }
    found
}

#[tokio::test]
async fn no_database_url_runs_its_own_postgres_and_keeps_the_data() {
    let pg_dir = temp_dir("embedded");
    let data = pg_dir.join("pgdata");
    let listen = Listen::socket();
    let addr = listen.addr();
    let port = addr.port();
    let log = pg_dir.with_extension("log");

    // First run: creates the cluster, migrates, serves. Notes need an account: the
    // harness signs one up (it is kept with the data, like the note).
    authenticate_by_default(addr);
    let mut child = spawn(&pg_dir, &listen, &log);
    child.wait_ready(addr, Duration::from_secs(120), &log).await;
    assert!(
        data.join("PG_VERSION").is_file(),
        "no cluster in {}",
        data.display()
    );
    assert!(postmaster_running(&data));
    let created = send(
        addr,
        http::Request::post("/notes")
            .header("content-type", "application/json")
            .body(r#"{"title":"kept","body":"across restarts"}"#.to_owned())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let location = created.header("location").unwrap().to_owned();
    let first = read(&log);
    assert!(
        first.contains(&format!("open http://127.0.0.1:{port}/")),
        "{first}"
    );

    // A second service on the same folder while the first runs: it uses the first's
    // cluster, and leaves it running when it stops.
    let listen2 = Listen::socket();
    let addr2 = listen2.addr();
    let log2 = pg_dir.with_extension("second.log");
    authenticate_by_default(addr2);
    let mut second = spawn(&pg_dir, &listen2, &log2);
    second
        .wait_ready(addr2, Duration::from_secs(120), &log2)
        .await;
    assert_eq!(get(addr2, &location).await.status, 200);
    assert!(
        read(&log2).contains("another pgbridge owns"),
        "{}",
        read(&log2)
    );
    let status = terminate(&mut second).await;
    assert!(status.success(), "{status:?}:\n{}", read(&log2));
    assert!(
        postmaster_running(&data),
        "the second service stopped the first's cluster"
    );
    assert_eq!(get(addr, "/readyz").await.status, 200);
    let _ = std::fs::remove_file(&log2);

    let status = terminate(&mut child).await;
    assert!(status.success(), "{status:?}:\n{}", read(&log));
    assert!(
        !postmaster_running(&data),
        "the cluster outlived pgbridge:\n{}",
        read(&log)
    );
    assert!(read(&log).contains("PostgreSQL stopped"), "{}", read(&log));

    // Second run: the same data, no new cluster.
    let mut child = spawn(&pg_dir, &listen, &log);
    child.wait_ready(addr, Duration::from_secs(120), &log).await;
    let note = get(addr, &location).await;
    assert_eq!(note.status, 200, "{}", note.text());
    assert_eq!(note.json()["title"], "kept");
    let second = read(&log);
    assert!(
        !second.contains("creating a PostgreSQL cluster"),
        "{second}"
    );

    // Killed outright: the watchdog stops the cluster all the same.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while postmaster_running(&data) {
        assert!(
            Instant::now() < deadline,
            "the cluster outlived a killed pgbridge"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Killed with its watchdog: the cluster is left running, and the next start reuses it
    // (and stops it at exit).
    let mut child = spawn(&pg_dir, &listen, &log);
    child.wait_ready(addr, Duration::from_secs(120), &log).await;
    let watchdogs = processes_with(&["pgbridge-pg-watchdog", &data.to_string_lossy()]);
    assert_eq!(watchdogs.len(), 1, "{watchdogs:?}");
    for pid in watchdogs {
        Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(postmaster_running(&data), "nothing left running to reuse");
    let mut child = spawn(&pg_dir, &listen, &log);
    child.wait_ready(addr, Duration::from_secs(120), &log).await;
    assert!(
        read(&log).contains("reusing the PostgreSQL cluster"),
        "{}",
        read(&log)
    );
    assert_eq!(get(addr, &location).await.json()["title"], "kept");
    let status = terminate(&mut child).await;
    assert!(status.success(), "{status:?}:\n{}", read(&log));
    assert!(!postmaster_running(&data));

    let _ = std::fs::remove_dir_all(&pg_dir);
    let _ = std::fs::remove_file(&log);
}

/// As root, a folder the `postgres` user cannot reach is refused with a message that says
/// so, and the process exits non-zero (rather than initdb's bare "Permission denied").
#[tokio::test]
#[cfg_attr(
    not_root,
    ignore = "SKIPPED: runs only as root (where the embedded cluster runs as the postgres user)"
)]
async fn as_root_an_unreachable_folder_is_named() {
    assert!(
        common::programs::effective_uid_is_root(),
        "built as root but run as another user: run cargo test as the user who built it"
    );
    let private = temp_dir("private-parent");
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let pg_dir = private.join("pg");
    let log = private.with_extension("log");
    let mut child = spawn(&pg_dir, &Listen::socket(), &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "pgbridge did not give up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "{status:?}");
    let logged = read(&log);
    assert!(
        logged.contains("cannot reach") && logged.contains("EMBEDDED_PG_DIR"),
        "{logged}"
    );
    let _ = std::fs::remove_dir_all(&private);
    let _ = std::fs::remove_file(&log);
}
