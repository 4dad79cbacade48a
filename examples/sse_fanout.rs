//! Benchmark for `GET /notes/events`: many concurrent subscribers on one LISTEN connection.
//!
//! Opens `SUBSCRIBERS` event streams against a running pgbridge (failing if they are not all
//! open within `OPEN_TIMEOUT_S` seconds, default 120), then `ROUNDS` times sends
//! a `PATCH` and times how long each subscriber takes to receive the event. Prints the
//! server's RSS (from `/proc/PID/status`), the delivery latencies, and how many LISTEN
//! connections Postgres sees. Run by `bench/sse.sh`, which starts Postgres and the server.
//! Notes and their events belong to accounts: it signs the `bench` account up (if it is not
//! yet), logs in, and sends that token on every request, streams included.
//!
//! ```sh
//! PGBRIDGE=127.0.0.1:8080 SERVER_PID=1234 DATABASE_URL=postgres://... \
//!   cargo run --release --example sse_fanout
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

/// The bench account's bearer token, sent on every `/notes…` request.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn auth_header() -> String {
    TOKEN
        .get()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default()
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// One thread: the client shares the 2 cores with the server, and with two worker threads it
// spent about a quarter of its CPU switching between them (perf: `finish_task_switch`),
// 55 against 35 ms per 10,000-stream round.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server: SocketAddr = env("PGBRIDGE", "127.0.0.1:8080".parse()?);
    let subscribers: usize = env("SUBSCRIBERS", 10_000);
    let rounds: usize = env("ROUNDS", 100);
    let server_pid: u32 = env("SERVER_PID", 0);
    let database_url: String = env("DATABASE_URL", String::new());

    // Notes belong to accounts: sign the bench's up and log in.
    TOKEN
        .set(log_in(server).await?)
        .map_err(|_| "logged in twice")?;
    let note_id = create_note(server).await?;
    let rss_before = rss_kb(server_pid);

    // Open the streams, at most 200 handshakes at a time.
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let gate = Arc::new(Semaphore::new(200));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let opened = Instant::now();
    for _ in 0..subscribers {
        let (tx, ready_tx, gate) = (tx.clone(), ready_tx.clone(), gate.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore");
            if let Err(err) = subscribe(server, tx, ready_tx, Some(permit)).await {
                eprintln!("subscriber failed: {err}");
            }
        });
    }
    drop(ready_tx);
    // A server that stops accepting (at its connection cap, say) must fail the run, not
    // hang it: every stream gets OPEN_TIMEOUT_S seconds (default 120) to open.
    let open_deadline =
        tokio::time::Instant::now() + Duration::from_secs(env("OPEN_TIMEOUT_S", 120));
    for n in 0..subscribers {
        match tokio::time::timeout_at(open_deadline, ready_rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => return Err(format!("only {n} of {subscribers} streams opened").into()),
            Err(_) => {
                return Err(format!(
                    "only {n} of {subscribers} streams opened within OPEN_TIMEOUT_S: is the \
                     server's MAX_CONNECTIONS above SUBSCRIBERS?"
                )
                .into());
            }
        }
    }
    println!(
        "opened {subscribers} streams in {:.1} s",
        opened.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_open = rss_kb(server_pid);

    // A marker for `PROFILE=1 bash bench/sse.sh`, which starts `perf` on the server now.
    if let Ok(path) = std::env::var("ROUNDS_STARTED_FILE") {
        std::fs::write(path, b"")?;
    }
    let server_cpu_before = cpu_ms(server_pid);
    let server_system_before = cpu_split_ms(server_pid).1;
    let client_cpu_before = own_cpu_ms();
    let preempted_before = involuntary_switches(server_pid);
    // Idle CPU while deliveries are under way (not in the pauses between rounds), in ticks.
    let mut idle_ticks = 0;
    let mut last_per_round = Vec::with_capacity(rounds);
    let mut first_per_round = Vec::with_capacity(rounds);
    let mut all = Vec::with_capacity(rounds * subscribers);
    for round in 0..rounds {
        while rx.try_recv().is_ok() {}
        let idle_before = idle_ticks_now();
        let sent = Instant::now();
        // Only this PATCH makes events now, so whatever arrives next is its event.
        patch_note(server, note_id, round).await?;
        let mut got = 0;
        let mut last = Duration::ZERO;
        let mut first = Duration::MAX;
        // One timer for the round, not one per delivery: this loop shares the cores with
        // the server, and a timer armed and cancelled 10,000 times a round is its own cost.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let _ = tokio::time::timeout_at(deadline, async {
            while got < subscribers {
                let Some((_id, at)) = rx.recv().await else {
                    break;
                };
                let latency = at - sent;
                all.push(latency);
                last = last.max(latency);
                first = first.min(latency);
                got += 1;
            }
        })
        .await;
        if got < subscribers {
            return Err(format!("round {round}: {got} of {subscribers} deliveries").into());
        }
        last_per_round.push(last);
        first_per_round.push(first);
        idle_ticks += idle_ticks_now().saturating_sub(idle_before);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_peak = peak_rss_kb(server_pid);
    // CPU spent during the rounds (including the 200 ms pauses, which are idle), per round.
    let server_cpu = (cpu_ms(server_pid) - server_cpu_before) / rounds as f64;
    let server_system = (cpu_split_ms(server_pid).1 - server_system_before) / rounds as f64;
    let client_cpu = (own_cpu_ms() - client_cpu_before) / rounds as f64;
    let preempted =
        involuntary_switches(server_pid).saturating_sub(preempted_before) as f64 / rounds as f64;
    let idle_ms = idle_ticks as f64 * 1000.0 / TICKS_PER_SECOND / rounds as f64;
    let slow_rounds = last_per_round
        .iter()
        .filter(|d| **d > Duration::from_millis(100))
        .count();

    let by_round: Vec<String> = last_per_round
        .iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
        .collect();
    last_per_round.sort();
    all.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!("subscribers            {subscribers}");
    println!("rounds                 {rounds}");
    println!("rss_idle_mb            {:.1}", rss_before as f64 / 1024.0);
    println!("rss_open_mb            {:.1}", rss_open as f64 / 1024.0);
    println!("rss_peak_mb            {:.1}", rss_peak as f64 / 1024.0);
    println!(
        "last_subscriber_p50_ms {:.1}",
        pct(&last_per_round, 0.5).as_secs_f64() * 1e3
    );
    println!(
        "last_subscriber_p99_ms {:.1}",
        pct(&last_per_round, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "delivery_p50_ms        {:.1}",
        pct(&all, 0.5).as_secs_f64() * 1e3
    );
    println!(
        "delivery_p99_ms        {:.1}",
        pct(&all, 0.99).as_secs_f64() * 1e3
    );
    println!("last_subscriber_ms_by_round {}", by_round.join(" "));
    // The first delivery is the request, the commit and the NOTIFY; the rest is the fan-out.
    let firsts: Vec<String> = first_per_round
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
        .collect();
    println!("first_subscriber_ms_by_round {}", firsts.join(" "));
    first_per_round.sort();
    println!(
        "first_subscriber_p50_ms {:.1}",
        pct(&first_per_round, 0.5).as_secs_f64() * 1e3
    );
    println!("server_cpu_ms_round    {server_cpu:.1}");
    println!("server_sys_ms_round    {server_system:.1}");
    println!("client_cpu_ms_round    {client_cpu:.1}");
    println!("rounds_over_100_ms     {slow_rounds}");
    println!("idle_cpu_ms_delivering {idle_ms:.1}");
    println!("server_preempted_round {preempted:.0}");
    if !database_url.is_empty() {
        let (client, conn) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let row = client
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbridge-listener'", &[])
            .await?;
        println!("listen_connections     {}", row.get::<_, i64>(0));
    }
    Ok(())
}

/// One stream: reports each `id:` it reads, with the moment it read it.
async fn subscribe(
    server: SocketAddr,
    tx: mpsc::UnboundedSender<(i64, Instant)>,
    ready: mpsc::UnboundedSender<()>,
    mut permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(server).await?;
    let request = format!(
        "GET /notes/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n{}\r\n",
        auth_header()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 4096];
    // Bytes not yet scanned, kept only while a line is incomplete.
    let mut pending: Vec<u8> = Vec::new();
    let mut announced = false;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let now = Instant::now();
        pending.extend_from_slice(&buf[..n]);
        if !announced && pending.len() >= 12 && !pending.starts_with(b"HTTP/1.1 200") {
            let head = String::from_utf8_lossy(&pending);
            let status = head.lines().next().unwrap_or_default().to_owned();
            return Err(std::io::Error::other(format!("stream refused: {status}")));
        }
        if !announced && find(&pending, b": connected").is_some() {
            announced = true;
            let _ = ready.send(());
            permit.take(); // the handshake is done: let the next one start
        }
        while let Some(start) = find(&pending, b"id: ") {
            let Some(end) = pending[start..].iter().position(|b| *b == b'\n') else {
                break;
            };
            let id = std::str::from_utf8(&pending[start + 4..start + end])
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok());
            if let Some(id) = id {
                let _ = tx.send((id, now));
            }
            pending.drain(..start + end);
        }
        // Nothing left worth keeping but a possible partial "id: " line.
        if find(&pending, b"id: ").is_none() && pending.len() > 16 {
            let keep = pending.len() - 16;
            pending.drain(..keep);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn request(
    server: SocketAddr,
    head: &str,
    body: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut stream = TcpStream::connect(server).await?;
    let request = format!(
        "{head}Host: bench\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// Signs the `bench` account up (if it is not yet) and logs in: its token.
async fn log_in(server: SocketAddr) -> Result<String, Box<dyn std::error::Error>> {
    let credentials = r#"{"username":"bench","password":"bench password"}"#;
    let head = "Content-Type: application/json\r\n";
    request(
        server,
        &format!("POST /accounts HTTP/1.1\r\n{head}"),
        credentials,
    )
    .await?;
    let response = request(
        server,
        &format!("POST /sessions HTTP/1.1\r\n{head}"),
        credentials,
    )
    .await?;
    let body = response.split("\r\n\r\n").nth(1).ok_or("no body")?;
    let json: serde_json::Value = serde_json::from_str(body)?;
    json["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("log-in failed: {response}").into())
}

async fn create_note(server: SocketAddr) -> Result<i64, Box<dyn std::error::Error>> {
    let response = request(
        server,
        &format!(
            "POST /notes HTTP/1.1\r\nContent-Type: application/json\r\n{}",
            auth_header()
        ),
        r#"{"title":"fan-out"}"#,
    )
    .await?;
    let body = response.split("\r\n\r\n").nth(1).ok_or("no body")?;
    let json: serde_json::Value = serde_json::from_str(body)?;
    json["id"]
        .as_i64()
        .ok_or_else(|| format!("create failed: {response}").into())
}

/// PATCHes the note.
async fn patch_note(
    server: SocketAddr,
    id: i64,
    round: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let body = format!(r#"{{"title":"round {round}"}}"#);
    let head = format!(
        "PATCH /notes/{id} HTTP/1.1\r\nContent-Type: application/json\r\nIf-Match: *\r\n{}",
        auth_header()
    );
    let response = request(server, &head, &body).await?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(format!("PATCH failed: {response}").into());
    }
    Ok(())
}

fn status_kb(pid: u32, field: &str) -> u64 {
    status_field(std::path::Path::new(&format!("/proc/{pid}/status")), field)
}

/// A number field of a `/proc/…/status` file (`VmRSS:`, `nonvoluntary_ctxt_switches:`), 0
/// if it cannot be read.
fn status_field(path: &std::path::Path, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process, in ms, from `/proc/PID/stat` (in clock ticks).
fn cpu_ms(pid: u32) -> f64 {
    let (user, system) = cpu_split_ms(pid);
    user + system
}

/// (user, system) CPU time of a process, in ms.
fn cpu_split_ms(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (which may hold spaces): state is index 0, utime 11, stime 12.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let ms = 1000.0 / TICKS_PER_SECOND;
    (ticks(11) * ms, ticks(12) * ms)
}

/// The server's threads' involuntary context switches so far (each a time it was preempted).
fn involuntary_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .map(|task| status_field(&task.path().join("status"), "nonvoluntary_ctxt_switches:"))
        .sum()
}

/// The machine's idle time so far, all cores, in clock ticks (`/proc/stat`).
fn idle_ticks_now() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            stat.lines()
                .next()
                .and_then(|cpu| cpu.split_whitespace().nth(4))
                .and_then(|idle| idle.parse().ok())
        })
        .unwrap_or(0)
}

/// Clock ticks per second of `/proc` times (`USER_HZ`: 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// This process's own CPU time, in ms.
fn own_cpu_ms() -> f64 {
    cpu_ms(std::process::id())
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

fn peak_rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:")
}
