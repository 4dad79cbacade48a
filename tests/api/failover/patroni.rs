//! The real HA topology on loopback: one etcd member, two Patroni nodes running
//! `deploy/ha/patroni.yml` (synchronous mode), HAProxy running `deploy/ha/haproxy.cfg`, and
//! the pgbridge binary on HAProxy's read-write and read-only ports, under a write load that
//! retries each write with the same `Idempotency-Key` until it gets a 2xx.
//!
//! One test, three phases (one cluster bootstrap): the primary's machine lost (`kill -9`
//! of its Patroni and postmaster), the old primary rejoining as a replica, and a planned
//! `patronictl switchover`.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::http::{get, send};
use common::process::{Program, Spec, free_port, postgres_user, temp_dir};
use common::service::connect;
use common::traffic::{Feed, Load, check, create_note, get_request, newest_event};

/// One Patroni node: its ports, data directory, and Patroni process (if running).
struct Node {
    name: String,
    pg_port: u16,
    api_port: u16,
    data: PathBuf,
    patroni: Option<Program>,
}

/// How the service reaches the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Through HAProxy's read-write port (and its read-only port for reads).
    Haproxy,
    /// No proxy: a multi-host `DATABASE_URL` with `target_session_attrs=read-write`.
    MultiHost,
}

/// The whole topology; everything is stopped when dropped.
struct Ha {
    route: Route,
    dir: PathBuf,
    user: Option<(u32, u32)>,
    config: PathBuf,
    etcd_port: u16,
    nodes: Vec<Node>,
    rw_port: u16,
    ro_port: u16,
    service_port: u16,
    service: Option<Program>,
    haproxy: Option<Program>,
    etcd: Option<Program>,
}

impl Ha {
    async fn start(route: Route) -> Ha {
        let user = postgres_user();
        let dir = temp_dir("ha", user);
        let etcd_port = free_port();
        let etcd_peer = free_port();
        let etcd = Program::start(Spec {
            name: "etcd",
            program: Path::new("/usr/bin/etcd"),
            args: [
                "--name",
                "e1",
                "--data-dir",
                &dir.join("etcd").to_string_lossy(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{etcd_peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{etcd_peer}"),
                "--initial-cluster",
                &format!("e1=http://127.0.0.1:{etcd_peer}"),
            ]
            .map(String::from)
            .to_vec(),
            env: vec![],
            user,
            log: dir.join("etcd.log"),
            stop_signal: "TERM",
            cleanup: Some(&dir),
        });
        common::process::wait_for_port(etcd_port, Duration::from_secs(20), "etcd").await;

        // deploy/ha/patroni.yml itself, with the post-bootstrap script and the socket
        // directory of this checkout and test.
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ha");
        let config = std::fs::read_to_string(deploy.join("patroni.yml"))
            .expect("deploy/ha/patroni.yml")
            .replace(
                "/deploy/ha/post-bootstrap.sh",
                &deploy.join("post-bootstrap.sh").to_string_lossy(),
            )
            .replace("/var/run/postgresql", &dir.to_string_lossy());
        let config_path = dir.join("patroni.yml");
        std::fs::write(&config_path, config).expect("write patroni.yml");

        let nodes = (1..=2)
            .map(|i| Node {
                name: format!("node{i}"),
                pg_port: free_port(),
                api_port: free_port(),
                data: dir.join(format!("node{i}")),
                patroni: None,
            })
            .collect();
        let mut ha = Ha {
            route,
            dir,
            user,
            config: config_path,
            etcd_port,
            nodes,
            rw_port: free_port(),
            ro_port: free_port(),
            service_port: free_port(),
            service: None,
            haproxy: None,
            etcd: Some(etcd),
        };
        ha.start_node(0);
        ha.start_node(1);
        let leader = ha.wait_for_leader(Duration::from_secs(60)).await;
        ha.wait_for_sync_standby(1 - leader, Duration::from_secs(60))
            .await;
        if route == Route::Haproxy {
            ha.start_haproxy().await;
        }
        ha.start_service().await;
        ha
    }

    fn start_node(&mut self, i: usize) {
        let node = &self.nodes[i];
        let env = [
            ("PATRONI_NAME", node.name.clone()),
            (
                "PATRONI_RESTAPI_LISTEN",
                format!("127.0.0.1:{}", node.api_port),
            ),
            (
                "PATRONI_RESTAPI_CONNECT_ADDRESS",
                format!("127.0.0.1:{}", node.api_port),
            ),
            (
                "PATRONI_POSTGRESQL_LISTEN",
                format!("127.0.0.1:{}", node.pg_port),
            ),
            (
                "PATRONI_POSTGRESQL_CONNECT_ADDRESS",
                format!("127.0.0.1:{}", node.pg_port),
            ),
            (
                "PATRONI_POSTGRESQL_DATA_DIR",
                node.data.to_string_lossy().into_owned(),
            ),
            (
                "PATRONI_ETCD3_HOSTS",
                format!("127.0.0.1:{}", self.etcd_port),
            ),
            ("HOME", self.dir.to_string_lossy().into_owned()),
        ];
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let program = Program::start(Spec {
            name: &node.name,
            program: Path::new("/usr/bin/patroni"),
            args: vec![self.config.to_string_lossy().into_owned()],
            env: env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
            user: self.user,
            log: self.dir.join(format!("{}-{started}.log", node.name)),
            stop_signal: "TERM",
            cleanup: None,
        });
        self.nodes[i].patroni = Some(program);
    }

    /// `GET` on node `i`'s Patroni REST API: the status code, 0 when it does not answer.
    async fn api(&self, i: usize, path: &str) -> u16 {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.nodes[i].api_port));
        match tokio::time::timeout(
            Duration::from_secs(2),
            common::http::send_as_is(addr, {
                http::Request::get(path)
                    .body(String::new())
                    .expect("request")
            }),
        )
        .await
        {
            Ok(Ok(reply)) => reply.status,
            _ => 0,
        }
    }

    /// Waits until a node is the leader (`/primary` 200): its index.
    async fn wait_for_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            for i in 0..self.nodes.len() {
                if self.api(i, "/primary").await == 200 {
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no Patroni leader within {within:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until node `i` answers `path` with 200.
    async fn wait_for(&self, i: usize, path: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.api(i, path).await != 200 {
            assert!(
                Instant::now() < deadline,
                "{} did not answer {path} with 200 within {within:?}\n{}",
                self.nodes[i].name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until node `i` is a streaming, synchronous replica.
    async fn wait_for_sync_standby(&self, i: usize, within: Duration) {
        self.wait_for(i, "/sync", within).await;
    }

    async fn start_haproxy(&mut self) {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ha/haproxy.cfg");
        // A port found free may be taken by another process before HAProxy binds it: then
        // HAProxy exits, and starts again on other ports.
        let mut attempt = 0;
        let stats_port = loop {
            attempt += 1;
            let stats_port = free_port();
            let mut env = vec![
                ("LISTEN_HOST".to_owned(), "127.0.0.1".to_owned()),
                ("RW_PORT".to_owned(), self.rw_port.to_string()),
                ("RO_PORT".to_owned(), self.ro_port.to_string()),
                ("STATS_PORT".to_owned(), stats_port.to_string()),
            ];
            for (i, node) in self.nodes.iter().enumerate() {
                let n = i + 1;
                env.push((format!("NODE{n}_HOST"), "127.0.0.1".into()));
                env.push((format!("NODE{n}_PG_PORT"), node.pg_port.to_string()));
                env.push((format!("NODE{n}_API_PORT"), node.api_port.to_string()));
            }
            let mut haproxy = Program::start(Spec {
                name: "haproxy",
                program: Path::new("/usr/sbin/haproxy"),
                args: vec![
                    "-db".into(),
                    "-f".into(),
                    config.to_string_lossy().into_owned(),
                ],
                env,
                user: None,
                log: self.dir.join(format!("haproxy-{attempt}.log")),
                stop_signal: "TERM",
                cleanup: None,
            });
            let deadline = Instant::now() + Duration::from_secs(20);
            let listening = loop {
                let rw = tokio::net::TcpStream::connect(("127.0.0.1", self.rw_port)).await;
                let stats = tokio::net::TcpStream::connect(("127.0.0.1", stats_port)).await;
                if rw.is_ok() && stats.is_ok() {
                    break true;
                }
                if !haproxy.running() || Instant::now() >= deadline {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            if listening {
                self.haproxy = Some(haproxy);
                break stats_port;
            }
            assert!(
                attempt < 3,
                "HAProxy did not start:\n{}",
                haproxy.log_tail()
            );
            eprintln!(
                "HAProxy did not start; again on other ports:\n{}",
                haproxy.log_tail()
            );
            drop(haproxy);
            self.rw_port = free_port();
            self.ro_port = free_port();
        };
        // HAProxy starts with every server up, until `fall` checks fail: wait until each
        // port leads to one node only (the primary, the replica).
        let stats = SocketAddr::from(([127, 0, 0, 1], stats_port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let csv = tokio::time::timeout(
                Duration::from_secs(2),
                common::http::send_as_is(stats, get_request("/;csv")),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(|reply| reply.text())
            .unwrap_or_default();
            let up = |proxy: &str| {
                csv.lines()
                    .filter(|line| line.starts_with(&format!("{proxy},node")))
                    .filter(|line| line.split(',').nth(17) == Some("UP"))
                    .count()
            };
            if up("primary") == 1 && up("replicas") == 1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy did not settle on one primary and one replica:\n{csv}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn url(&self, port: u16) -> String {
        format!("postgres://pgbridge:pgbridge@127.0.0.1:{port}/pgbridge")
    }

    /// The service's database settings for the route.
    fn database_urls(&self) -> Vec<(String, String)> {
        match self.route {
            Route::Haproxy => vec![
                ("DATABASE_URL".into(), self.url(self.rw_port)),
                ("EVENTS_DATABASE_URL".into(), self.url(self.rw_port)),
                ("DATABASE_READ_URL".into(), self.url(self.ro_port)),
            ],
            Route::MultiHost => {
                let hosts: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|node| format!("127.0.0.1:{}", node.pg_port))
                    .collect();
                let url = format!(
                    "postgres://pgbridge:pgbridge@{}/pgbridge?target_session_attrs=read-write",
                    hosts.join(",")
                );
                vec![
                    ("DATABASE_URL".into(), url.clone()),
                    ("EVENTS_DATABASE_URL".into(), url),
                ]
            }
        }
    }

    async fn start_service(&mut self) {
        let port = self.service_port;
        let program = Program::start(Spec {
            name: "pgbridge",
            program: Path::new(env!("CARGO_BIN_EXE_pgbridge")),
            args: vec![],
            env: [
                ("BIND_ADDR".into(), format!("127.0.0.1:{port}")),
                ("DB_CONNECT_TIMEOUT_MS".into(), "1000".into()),
                ("DB_POOL_TIMEOUT_MS".into(), "1000".into()),
                ("DB_STATEMENT_TIMEOUT_MS".into(), "5000".into()),
                ("SHUTDOWN_GRACE_SECS".into(), "5".into()),
                ("RUST_LOG".into(), "info".into()),
            ]
            .into_iter()
            .chain(self.database_urls())
            .collect(),
            user: None,
            log: self.dir.join("pgbridge.log"),
            stop_signal: "KILL",
            cleanup: None,
        });
        self.service = Some(program);
        let addr = self.addr();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready =
                tokio::time::timeout(Duration::from_secs(2), send(addr, get_request("/readyz")))
                    .await;
            if matches!(ready, Ok(Ok(ref reply)) if reply.status == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pgbridge was not ready in 30 s\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        common::http::authenticate_by_default(addr);
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.service_port))
    }

    /// A machine lost: `kill -9` of node `i`'s Patroni and postmaster.
    fn kill_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(patroni) = &node.patroni {
            patroni.signal("KILL");
        }
        if let Some(pid) = postmaster_pid(&node.data) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        if let Some(mut patroni) = node.patroni.take() {
            patroni.wait_exit(Duration::from_secs(5));
        }
    }

    /// `patronictl switchover` from the leader to the other node (without blocking the
    /// runtime: the load goes on while it runs).
    async fn switchover(&self, leader: usize) {
        let mut command = tokio::process::Command::new("/usr/bin/patronictl");
        command
            .args([
                "-c",
                &self.config.to_string_lossy(),
                "switchover",
                "--force",
            ])
            .args(["--leader", &self.nodes[leader].name])
            .args(["--candidate", &self.nodes[1 - leader].name])
            .env(
                "PATRONI_ETCD3_HOSTS",
                format!("127.0.0.1:{}", self.etcd_port),
            );
        let output = command.output().await.expect("run patronictl");
        assert!(
            output.status.success(),
            "patronictl switchover failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A superuser connection to node `i`'s database (notes are owner-scoped by RLS; the
    /// superuser sees them all).
    async fn inspect(&self, i: usize) -> tokio_postgres::Client {
        connect(&format!(
            "postgres://postgres:postgres@127.0.0.1:{}/pgbridge",
            self.nodes[i].pg_port
        ))
        .await
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            if let Some(patroni) = &node.patroni {
                out.push_str(&patroni.log_tail());
                out.push('\n');
            }
        }
        for program in [&self.haproxy, &self.service].into_iter().flatten() {
            out.push_str(&program.log_tail());
            out.push('\n');
        }
        out
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        drop(self.service.take());
        drop(self.haproxy.take());
        for node in &mut self.nodes {
            // Patroni stops its Postgres on TERM; a postmaster left behind is killed.
            drop(node.patroni.take());
            if let Some(pid) = postmaster_pid(&node.data) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        drop(self.etcd.take());
    }
}

/// The postmaster of the data directory `data`, if one runs.
fn postmaster_pid(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains(&*data.to_string_lossy())
        .then_some(pid)
}

/// Under load, `kill -9` of node `leader`'s Patroni and postmaster; checks the writes once
/// the other node is primary and has taken more. The new primary's index.
async fn machine_lost(ha: &mut Ha, leader: usize, phase: &'static str) -> usize {
    let feed = Feed::open(ha.addr(), newest_event(&ha.inspect(leader).await).await).await;
    let load = Load::start(ha.addr(), phase, 4);
    load.wait_for_more(20, Duration::from_secs(30), || ha.logs())
        .await;
    let failover_at = Instant::now();
    ha.kill_node(leader);
    let promoted = 1 - leader;
    // Patroni's ttl (10 s) + loop_wait (2 s), with room for a loaded machine.
    ha.wait_for(promoted, "/primary", Duration::from_secs(40))
        .await;
    load.wait_for_more(20, Duration::from_secs(30), || ha.logs())
        .await;
    let seen = load.stop().await;
    let client = ha.inspect(promoted).await;
    check(&client, phase, &seen, feed, failover_at, || ha.logs()).await;
    no_failure_logged(ha);
    event_after_failover(ha).await;
    promoted
}

/// No expected 503 was logged as a failure (an ERROR per request): they are one
/// rate-limited WARN.
fn no_failure_logged(ha: &Ha) {
    let log = std::fs::read_to_string(ha.dir.join("pgbridge.log")).unwrap_or_default();
    let failures: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("application failed before its response started")
                || (line.contains("ERROR") && line.contains("503 Service Unavailable"))
        })
        .take(3)
        .collect();
    assert!(
        failures.is_empty(),
        "an expected 503 was logged as a failure: {failures:?}"
    );
}

/// The `LISTEN` connection followed the new primary: a note written now reaches a live
/// event stream opened now.
async fn event_after_failover(ha: &Ha) {
    let addr = ha.addr();
    let mut stream = common::sse::open(addr, "/notes/events", None).await;
    assert_eq!(stream.status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        let reply = send(addr, create_note("after-failover"))
            .await
            .expect("POST /notes");
        if reply.status == 201 {
            break reply;
        }
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(
            Instant::now() < deadline,
            "the write after the failover failed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = created.json()["id"].clone();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = stream.next_event(left).await.unwrap_or_else(|| {
            panic!(
                "no event for note {id} within 30 s of its write\n{}",
                ha.logs()
            )
        });
        if event.data["note_id"] == id {
            break;
        }
    }
}

#[tokio::test]
#[cfg_attr(
    any(skip_patroni, skip_etcd, skip_haproxy),
    ignore = "SKIPPED: needs patroni, etcd and haproxy: apt-get install patroni etcd-server haproxy"
)]
async fn multi_host_url_follows_the_new_primary_with_no_proxy() {
    for program in ["patroni", "etcd", "haproxy"] {
        common::programs::path(program);
    }
    let mut ha = Ha::start(Route::MultiHost).await;
    let leader = ha.wait_for_leader(Duration::from_secs(5)).await;
    machine_lost(&mut ha, leader, "multihost-kill").await;
    let ready = get(ha.addr(), "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["database"], "writable");
}

#[tokio::test]
#[cfg_attr(
    any(skip_patroni, skip_etcd, skip_haproxy),
    ignore = "SKIPPED: needs patroni, etcd and haproxy: apt-get install patroni etcd-server haproxy"
)]
async fn patroni_failover_rejoin_and_switchover_lose_no_acknowledged_write() {
    for program in ["patroni", "etcd", "haproxy"] {
        common::programs::path(program);
    }
    let mut ha = Ha::start(Route::Haproxy).await;
    let addr = ha.addr();
    let leader = ha.wait_for_leader(Duration::from_secs(5)).await;

    // 1. The primary's machine is lost.
    let promoted = machine_lost(&mut ha, leader, "kill").await;

    // 2. The old primary comes back, and rejoins as a (synchronous) replica.
    ha.start_node(leader);
    ha.wait_for(leader, "/replica", Duration::from_secs(60))
        .await;
    ha.wait_for_sync_standby(leader, Duration::from_secs(30))
        .await;
    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());

    // 3. A planned switchover back to it.
    let feed = Feed::open(addr, newest_event(&ha.inspect(promoted).await).await).await;
    let load = Load::start(addr, "switchover", 4);
    load.wait_for_more(20, Duration::from_secs(30), || ha.logs())
        .await;
    let failover_at = Instant::now();
    ha.switchover(promoted).await;
    ha.wait_for(leader, "/primary", Duration::from_secs(40))
        .await;
    load.wait_for_more(20, Duration::from_secs(30), || ha.logs())
        .await;
    let seen = load.stop().await;
    // A planned switchover with a standby serving reads: no read failed (a read that met
    // the switchover ran again on the other node).
    let failed: Vec<_> = seen
        .read_log
        .iter()
        .filter(|(_, _, status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "reads failed during the switchover: {failed:?}\n{}",
        ha.logs()
    );
    let client = ha.inspect(leader).await;
    check(&client, "switchover", &seen, feed, failover_at, || {
        ha.logs()
    })
    .await;
    no_failure_logged(&ha);
    // The demoted node comes back as a replica.
    ha.wait_for(promoted, "/replica", Duration::from_secs(60))
        .await;
}
