//! A soak run: the service binary as it lives, for minutes — under load, idle past every
//! keep-alive and timeout while Postgres cuts its idle connections, and with Postgres
//! restarted (a fast shutdown, then a crash, in turn) — checked for what it must never do:
//! lose an acknowledged write or apply one twice, drop or repeat an event on a stream kept
//! open throughout, answer 500, fail a request outside a restart (the first ones after an
//! idle period included), log a line per request while Postgres is away, or grow in memory,
//! descriptors or threads from cycle to cycle.
//!
//! Minutes long, so not in the default run: `bash bench/soak.sh` runs it and keeps its
//! figures (`SOAK_SECS`, default 600; `SOAK_IDLE_SECS`, default 75; `SOAK_VIA=pgbouncer`
//! puts PgBouncer between the service and Postgres; `SOAK_RUNTIME=percore` serves with one
//! runtime per core).

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::http::{authenticate_by_default, get, send};
use common::pg::Cluster;
use common::pgbouncer::PgBouncer;
use common::process::{KillOnDrop, Listen, pgbridge_command, tail, temp_dir};
use common::service::connect;
use common::traffic::{Feed, Load, Seen, check, create_note, newest_event};

/// How long the server lets a connection of the service's database sit idle before it cuts
/// it (what a cloud proxy, a NAT table or PgBouncer's `server_idle_timeout` does): shorter
/// than every idle phase, so each one ends with the service's connections gone.
const IDLE_SESSION_TIMEOUT: &str = "20s";

fn seconds(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// What `/proc` says of the service process.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    rss_kb: u64,
    fds: usize,
    threads: u64,
}

fn footprint(pid: u32) -> Footprint {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Footprint {
        rss_kb: field("VmRSS:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()),
        threads: field("Threads:"),
    }
}

/// `clients` tasks reading as fast as they can for `length`: a page of notes, the liveness
/// probe, a page of notes again. The statuses, by count.
async fn burst(addr: SocketAddr, clients: usize, length: Duration) -> BTreeMap<u16, usize> {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
                let paths = ["/notes?limit=20", "/healthz", "/notes?limit=5"];
                let mut n = c;
                while !stop.load(Ordering::Relaxed) {
                    let request = common::traffic::get_request(paths[n % paths.len()]);
                    n += 1;
                    let status =
                        match tokio::time::timeout(Duration::from_secs(10), send(addr, request))
                            .await
                        {
                            Ok(Ok(reply)) => reply.status,
                            _ => 0,
                        };
                    *statuses.entry(status).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = BTreeMap::new();
    for task in tasks {
        for (status, n) in task.await.unwrap_or_default() {
            *all.entry(status).or_default() += n;
        }
    }
    all
}

/// After an idle phase: a read, a write and the readiness probe, each answered 2xx the
/// first time (no stale connection handed to a request).
async fn first_requests_after_idle(addr: SocketAddr, cycle: usize, logs: &dyn Fn() -> String) {
    let read = get(addr, "/notes?limit=5").await;
    let key = format!("after-idle-{cycle}");
    let write = send(addr, create_note(&key))
        .await
        .expect("POST /notes after the idle phase");
    let ready = get(addr, "/readyz").await;
    for (what, status, text) in [
        ("GET /notes", read.status, read.text()),
        ("POST /notes", write.status, write.text()),
        ("GET /readyz", ready.status, ready.text()),
    ] {
        assert!(
            (200..300).contains(&status),
            "cycle {cycle}: {what} right after the idle phase answered {status}: {text}\n{}",
            logs()
        );
    }
}

/// The log's WARN lines by kind (the target and the message, without the request span and
/// the fields), the most frequent first.
fn warning_kinds(log: &str) -> Vec<(String, usize)> {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once(" WARN ") else {
            continue;
        };
        // `request{method=GET …}: target: message key=value …`
        let rest = match rest.find("}: ") {
            Some(end) if rest.starts_with("request{") => &rest[end + 3..],
            _ => rest,
        };
        let message = rest
            .split(' ')
            .take_while(|word| !word.contains('='))
            .collect::<Vec<_>>()
            .join(" ");
        *kinds.entry(message).or_default() += 1;
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort_by_key(|kind| std::cmp::Reverse(kind.1));
    kinds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: bash bench/soak.sh"]
async fn soak_under_load_idle_and_restarts_loses_nothing_and_does_not_grow() {
    let total = seconds("SOAK_SECS", 600);
    let idle = seconds("SOAK_IDLE_SECS", 75);
    // The test clusters run with `synchronous_commit = off` (speed): a commit is then
    // acknowledged before its WAL is written, and a crash loses the last ones — the
    // database's doing, not the service's. This database commits durably. (`fsync = off`
    // stays: a crashed postmaster leaves the operating system's page cache intact.)
    let cluster = Cluster::start_private().await;
    let url = cluster.create_database().await;
    let database = url.rsplit('/').next().expect("a database name").to_owned();
    connect(&cluster.admin_url())
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" SET idle_session_timeout = '{IDLE_SESSION_TIMEOUT}';
             ALTER DATABASE \"{database}\" SET synchronous_commit = on"
        ))
        .await
        .expect("set idle_session_timeout and synchronous_commit");

    let dir = temp_dir("soak", None);
    let log = dir.join("pgbridge.log");
    let listen = Listen::socket();
    let addr = listen.addr();
    let mut command = pgbridge_command(&listen, &log);
    command
        .env("DB_CONNECT_TIMEOUT_MS", "1000")
        .env("DB_POOL_TIMEOUT_MS", "1000");
    // `SOAK_VIA=pgbouncer`: the pool and the shared connections through PgBouncer in
    // transaction mode, as README "Scaling out" deploys it (`LISTEN` and migrations direct;
    // `server_login_retry` lowered as the README says).
    let _bouncer = match std::env::var("SOAK_VIA").as_deref() {
        Ok("pgbouncer") => {
            let port = common::standby::port_of(&url);
            let bouncer = PgBouncer::start_with(port, 8, "server_login_retry = 2").await;
            command
                .env("DATABASE_URL", bouncer.url(&database))
                .env("DB_POOL_MODE", "transaction")
                .env("EVENTS_DATABASE_URL", &url)
                .env("MIGRATE_DATABASE_URL", &url);
            eprintln!("soak: through PgBouncer (transaction mode)");
            Some(bouncer)
        }
        Ok("direct") | Err(_) => {
            command.env("DATABASE_URL", &url);
            eprintln!("soak: direct to Postgres");
            None
        }
        Ok(other) => panic!("SOAK_VIA={other:?}: use direct or pgbouncer"),
    };
    // `SOAK_RUNTIME=percore`: one runtime per core, each with its own shared connection
    // and pool share to bring back after every restart.
    let runtime = std::env::var("SOAK_RUNTIME").unwrap_or_else(|_| "multi".into());
    command.env("RUNTIME", &runtime);
    eprintln!("soak: RUNTIME={runtime}");
    let mut service = KillOnDrop(command.spawn().expect("start pgbridge"));
    service
        .wait_ready(addr, Duration::from_secs(30), &log)
        .await;
    authenticate_by_default(addr);
    let pid = service.id();
    let logs = || tail(&log, 60);

    // Superuser connections, fresh each time: the database cuts idle ones.
    let inspect = || async { connect(&url).await };
    let feed = Feed::open(addr, newest_event(&inspect().await).await).await;
    let mut seen = Seen::default();
    let mut first_disruption = None;
    let mut footprints = Vec::new();
    let started = Instant::now();
    let mut cycle = 0;
    while cycle < 2 || started.elapsed() < total {
        cycle += 1;
        let phase: &'static str = Box::leak(format!("soak-c{cycle}").into_boxed_str());
        let load = Load::start(addr, phase, 2);
        load.wait_for_more(5, Duration::from_secs(30), logs).await;

        // 1. Busy: every read answered 200.
        let statuses = burst(addr, 32, Duration::from_secs(20)).await;
        assert!(
            statuses.keys().all(|status| *status == 200),
            "cycle {cycle}: reads under load answered {statuses:?}\n{}",
            logs()
        );

        // 2. Postgres restarted under the writers: a fast shutdown, or a crash.
        let crash = cycle % 2 == 0;
        let disrupted_at = Instant::now();
        first_disruption.get_or_insert(disrupted_at);
        if crash {
            cluster.crash().await;
        } else {
            cluster.stop().await;
        }
        let down_for = Duration::from_secs(2);
        tokio::time::sleep(down_for).await;
        cluster.restart().await;
        let came_back = Instant::now();
        service
            .wait_ready(addr, Duration::from_secs(30), &log)
            .await;
        let ready_after = came_back.elapsed();
        let back = Instant::now();
        load.wait_for_more(5, Duration::from_secs(30), logs).await;
        let writes_after = back.elapsed();
        seen.absorb(load.stop().await);

        // 3. Idle: nothing but the event stream's heartbeats, while Postgres cuts the
        //    service's idle connections; then the first requests must find fresh ones.
        tokio::time::sleep(idle).await;
        first_requests_after_idle(addr, cycle, &logs).await;
        let footprint = footprint(pid);
        eprintln!(
            "cycle {cycle} at {:.0} s: reads under load {statuses:?}; Postgres {} for {down_for:?}, \
             /readyz 200 {:.2} s after it came back, writes again {:.2} s after that; after \
             {idle:?} idle: the first read, write and /readyz 2xx; RSS {:.1} MB, {} fds, {} threads",
            started.elapsed().as_secs_f64(),
            if crash {
                "crashed (immediate)"
            } else {
                "stopped (fast)"
            },
            ready_after.as_secs_f64(),
            writes_after.as_secs_f64(),
            footprint.rss_kb as f64 / 1024.0,
            footprint.fds,
            footprint.threads,
        );
        footprints.push(footprint);
        assert!(
            service.try_wait().expect("try_wait").is_none(),
            "pgbridge exited\n{}",
            logs()
        );
    }

    // Nothing lost, nothing twice, every event delivered once to the stream kept open.
    let client = inspect().await;
    check(
        &client,
        "soak",
        &seen,
        feed,
        first_disruption.expect("at least one restart"),
        logs,
    )
    .await;
    let failed: Vec<_> = seen
        .read_log
        .iter()
        .filter(|(_, _, status, _)| !matches!(status, 200 | 503))
        .collect();
    assert!(failed.is_empty(), "reads failed other than 503: {failed:?}");

    // From the second cycle on (the first warms the allocator and fills the pools), memory,
    // descriptors and threads stay level.
    let (baseline, last) = (footprints[1], footprints[footprints.len() - 1]);
    assert!(
        last.rss_kb <= baseline.rss_kb + 16 * 1024,
        "RSS grew from {} to {} kB over {cycle} cycles",
        baseline.rss_kb,
        last.rss_kb
    );
    assert!(
        last.fds <= baseline.fds + 8,
        "descriptors grew from {} to {}",
        baseline.fds,
        last.fds
    );
    assert!(
        last.threads <= baseline.threads + 4,
        "threads grew from {} to {}",
        baseline.threads,
        last.threads
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let panics: Vec<&str> = text.lines().filter(|l| l.contains("panicked")).collect();
    assert!(panics.is_empty(), "the service panicked: {panics:?}");
    let warnings = text.lines().filter(|l| l.contains(" WARN ")).count();
    for (kind, n) in warning_kinds(&text).iter().take(6) {
        eprintln!("soak: {n} WARN lines {kind}");
    }
    let errors: Vec<&str> = text.lines().filter(|l| l.contains(" ERROR ")).collect();
    eprintln!(
        "soak: {cycle} cycles in {:.0} s; log: {warnings} WARN lines, {} ERROR lines",
        started.elapsed().as_secs_f64(),
        errors.len()
    );
    assert!(errors.is_empty(), "ERROR lines in the log: {errors:?}");
    // A restart is a few rate-limited lines per kind, not one per request (before, through
    // PgBouncer, deadpool's own WARN for each dead pooled connection made about 200).
    assert!(
        warnings <= 30 * cycle,
        "{warnings} WARN lines for {cycle} restarts: {:?}",
        warning_kinds(&text)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
