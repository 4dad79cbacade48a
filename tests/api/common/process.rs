//! Real programs (pgbouncer, nginx, postgres, pgbridge) as children of the test, each
//! stopped when the test drops it — or, if the test process dies, by a watchdog.
//!
//! The watchdog is the same pipe trick as `pg.rs`: the program is started by a `sh` that
//! keeps a copy of a pipe from the test process on fd 3, starts a background `cat` on it,
//! and then `exec`s the program (so the program keeps the shell's pid, and signals reach
//! it directly). When the test process exits for any reason, the kernel closes the pipe,
//! `cat` returns, and the watchdog signals the program and deletes its directory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A running program.
pub struct Program {
    pub name: String,
    child: Child,
    /// Closing it sets the watchdog off.
    pipe: Option<ChildStdin>,
    /// The signal that stops it at the end (`TERM`, or `QUIT` for postgres).
    stop_signal: &'static str,
    log: PathBuf,
}

/// What to start.
pub struct Spec<'a> {
    pub name: &'a str,
    pub program: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Run as this `(uid, gid)` (the postgres user, for programs that refuse root).
    pub user: Option<(u32, u32)>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// The signal the watchdog and `Drop` send.
    pub stop_signal: &'static str,
    /// Deleted by the watchdog after the program is signalled (a temp dir), if any.
    pub cleanup: Option<&'a Path>,
}

impl Program {
    /// Starts `spec` under a watchdog.
    pub fn start(spec: Spec<'_>) -> Program {
        const SCRIPT: &str = r#"
sig="$1"; dir="$2"; shift 2
exec 3<&0
( trap '' HUP INT; cat <&3 >/dev/null 2>&1; kill -"$sig" $$ 2>/dev/null; sleep 1; kill -KILL $$ 2>/dev/null; [ -n "$dir" ] && rm -rf "$dir" ) &
exec "$@" 3<&- </dev/null
"#;
        let log = std::fs::File::create(&spec.log)
            .unwrap_or_else(|e| panic!("create {}: {e}", spec.log.display()));
        let err = log.try_clone().expect("dup log");
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", SCRIPT, "watchdog", spec.stop_signal])
            .arg(spec.cleanup.map(Path::as_os_str).unwrap_or_default())
            .arg(spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        if let Some((uid, gid)) = spec.user {
            command.uid(uid).gid(gid);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", spec.program.display()));
        let pipe = child.stdin.take();
        Program {
            name: spec.name.to_owned(),
            child,
            pipe,
            stop_signal: spec.stop_signal,
            log: spec.log,
        }
    }

    /// Its pid (the shell `exec`ed it, so this is the program's own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `INT`, `QUIT`, ...).
    pub fn signal(&self, signal: &str) {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Waits up to `within` for it to exit; its exit status, if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        format!(
            "--- {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            tail(&self.log, 30)
        )
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if self.running() {
            self.signal(self.stop_signal);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // Lets the watchdog finish (it deletes the directory, if any).
        drop(self.pipe.take());
    }
}

/// The last `lines` lines of the file at `path` (empty if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A new empty directory under the temp dir, owned by `user` when given.
pub fn temp_dir(what: &str, user: Option<(u32, u32)>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pgbridge-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the temp dir");
    }
    dir
}

/// As root, the postgres user's `(uid, gid)` (pgbouncer and postgres refuse root).
pub fn postgres_user() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let euid: u32 = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())?;
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 4 && fields[0] == "postgres")
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

/// A listening socket on a fresh loopback port, to hand to a child with [`pass_listener`].
///
/// Better than [`free_port`] for servers under test: the port is held from this moment, so a
/// server started by a test running beside this one cannot take it (then this test would
/// talk to that server), and connecting before the child is ready queues instead of failing.
pub fn loopback_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener")
}

/// Hands `listener` to the child as fd 3 with `LISTEN_FDS=1`, as systemd's socket activation
/// does; pgbridge then serves on it instead of binding `BIND_ADDR`. Call it after any
/// `env_clear`. The parent's copy closes with `command`.
pub fn pass_listener(command: &mut std::process::Command, listener: std::net::TcpListener) {
    use command_fds::{CommandFdExt, FdMapping};
    command
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_PID")
        .fd_mappings(vec![FdMapping {
            parent_fd: listener.into(),
            child_fd: 3,
        }])
        .expect("fd 3 is free in the child");
}

/// Where a pgbridge child serves.
#[derive(Debug)]
pub enum Listen {
    /// On this socket, which the test holds and hands to each start (a copy, with
    /// `LISTEN_FDS`): the port is the test's alone, across restarts.
    Socket(std::net::TcpListener),
    /// By binding this address itself (`BIND_ADDR`): for the tests of binding.
    Bind(std::net::SocketAddr),
}

impl Listen {
    /// A socket on a fresh loopback port.
    pub fn socket() -> Self {
        Self::Socket(loopback_listener())
    }

    /// The address clients connect to.
    pub fn addr(&self) -> std::net::SocketAddr {
        match self {
            Self::Socket(listener) => listener.local_addr().expect("the listener's address"),
            Self::Bind(addr) => *addr,
        }
    }

    /// Tells `command` where to serve; call it after any `env_clear`.
    pub fn apply(&self, command: &mut std::process::Command) {
        match self {
            Self::Socket(listener) => pass_listener(
                command,
                listener.try_clone().expect("a copy of the listener"),
            ),
            Self::Bind(addr) => {
                command.env("BIND_ADDR", addr.to_string());
            }
        }
    }
}

/// The `pgbridge` binary under test, inheriting nothing from the test's environment:
/// `RUST_LOG=info`, a 10-s shutdown grace period, serving where `listen` says, its output
/// to a new `log`. The caller adds `DATABASE_URL` (or `EMBEDDED_PG_DIR`) and the rest.
pub fn pgbridge_command(listen: &Listen, log: &std::path::Path) -> std::process::Command {
    let file = std::fs::File::create(log).expect("log file");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pgbridge"));
    command
        .env_clear()
        .env("RUST_LOG", "info")
        .env("SHUTDOWN_GRACE_SECS", "10")
        .stdout(file.try_clone().expect("log file"))
        .stderr(file);
    listen.apply(&mut command);
    command
}

/// A loopback port nobody listens on right now, and that no other test in this process has
/// been given: all the integration tests share one process, and the kernel may hand the same
/// free port to two `bind(0)` calls in a row. Prefer [`loopback_listener`] for a pgbridge
/// child (the port is then held from the start).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits until something accepts TCP connections on `port`.
pub async fn wait_for_port(port: u16, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process killed (SIGKILL) when dropped unless it has exited, so a failing test
/// leaves no process behind (a `pgbridge`'s watchdog then stops its embedded cluster).
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl KillOnDrop {
    /// Waits until the service at `addr` answers `/readyz` 200, failing with its log (the
    /// file at `log`) if it exits or is not ready `within`.
    pub async fn wait_ready(
        &mut self,
        addr: std::net::SocketAddr,
        within: Duration,
        log: &std::path::Path,
    ) {
        let read = || std::fs::read_to_string(log).unwrap_or_default();
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                panic!("pgbridge exited ({status}):\n{}", read());
            }
            // Bounded: on a socket the test holds, a connection made while nothing serves
            // waits in its backlog instead of being refused.
            let request = http::Request::get("/readyz")
                .body(String::new())
                .expect("request");
            let probe = tokio::time::timeout(
                Duration::from_secs(2),
                super::http::send_as_is(addr, request),
            );
            if matches!(probe.await, Ok(Ok(reply)) if reply.status == 200) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never ready:\n{}",
                read()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
