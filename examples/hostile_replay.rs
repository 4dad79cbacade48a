//! Benchmark for hostile `GET /notes/events` replays: `REPLAYS` clients ask for the whole
//! history (`Last-Event-ID: 0`) of `EVENTS` stored events and never read a byte, while one
//! normal subscriber follows the live stream.
//!
//! Prints the server's RSS (from `/proc/PID/status`: idle, sampled peak while the replays are
//! open, `VmHWM`, after they close), the normal subscriber's PATCH-to-delivery latency over
//! `ROUNDS` PATCHes (one every `INTERVAL_MS`), and the stream counters from `/metrics`. Run by
//! `bench/hostile_replay.sh`, which starts Postgres and the server.
//!
//! ```sh
//! PGBRIDGE=127.0.0.1:8080 SERVER_PID=1234 DATABASE_URL=postgres://... \
//!   cargo run --release --example hostile_replay
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

type Error = Box<dyn std::error::Error + Send + Sync>;

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

#[tokio::main]
async fn main() -> Result<(), Error> {
    let server: SocketAddr = env("PGBRIDGE", "127.0.0.1:8080".parse()?);
    let replays: usize = env("REPLAYS", 20);
    let events: i64 = env("EVENTS", 500_000);
    let rounds: usize = env("ROUNDS", 200);
    let interval = Duration::from_millis(env("INTERVAL_MS", 100));
    let server_pid: u32 = env("SERVER_PID", 0);
    let database_url: String = env("DATABASE_URL", String::new());

    // Notes belong to accounts: sign the bench's up and log in.
    TOKEN
        .set(log_in(server).await?)
        .map_err(|_| "logged in twice")?;

    // The history: one real note (its event is the first), the rest stored straight into
    // the table, as if written long ago.
    let note_id = create_note(server).await?;
    let (db, conn) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let started = Instant::now();
    db.execute(
        "INSERT INTO note_events (note_id, kind, version, owner_id) \
         SELECT $1, 'updated', g, (SELECT owner_id FROM notes WHERE id = $1) \
         FROM generate_series(2, $2::int) g",
        &[&note_id, &(events as i32)],
    )
    .await?;
    let stored: i64 = db
        .query_one("SELECT count(*) FROM note_events", &[])
        .await?
        .get(0);
    println!(
        "stored {stored} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kb(server_pid);

    // The normal subscriber.
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        if let Err(err) = subscribe(server, tx, ready_tx).await {
            eprintln!("subscriber failed: {err}");
        }
    });
    ready_rx
        .recv()
        .await
        .ok_or("the subscriber never connected")?;

    // The hostile replays: a small receive buffer, the request, then never a read.
    let mut hostile = Vec::with_capacity(replays);
    for _ in 0..replays {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let mut stream = socket.connect(server).await?;
        stream
            .write_all(
                format!(
                    "GET /notes/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\
                     {}Last-Event-ID: 0\r\n\r\n",
                    auth_header()
                )
                .as_bytes(),
            )
            .await?;
        hostile.push(stream);
    }
    println!("opened {replays} never-reading replays");

    // Sample the server's RSS while they are open.
    let sampled_peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = sampled_peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kb(server_pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut latencies = Vec::with_capacity(rounds);
    let mut most_catch_ups = 0;
    for round in 0..rounds {
        while rx.try_recv().is_ok() {}
        let sent = Instant::now();
        // Only this PATCH makes events now, so whatever arrives next is its event.
        patch_note(server, note_id, round).await?;
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some((_id, at))) => latencies.push(at - sent),
            _ => return Err(format!("round {round}: no delivery within 30 s").into()),
        }
        if round % 10 == 0 {
            let metrics = metrics(server).await?;
            most_catch_ups = most_catch_ups.max(metric(&metrics, "pgbridge_events_catch_ups"));
        }
        tokio::time::sleep(interval).await;
    }
    let during = metrics(server).await?;
    let rss_open = rss_kb(server_pid);
    drop(hostile);
    tokio::time::sleep(Duration::from_secs(2)).await;
    sampler.abort();
    let rss_after = rss_kb(server_pid);
    let rss_peak = peak_rss_kb(server_pid);
    let after = metrics(server).await?;

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!("replays                {replays}");
    println!("events                 {stored}");
    println!("rounds                 {rounds}");
    println!("rss_idle_mb            {:.1}", mb(rss_idle));
    println!(
        "rss_sampled_peak_mb    {:.1}",
        mb(sampled_peak.load(Ordering::Relaxed))
    );
    println!("rss_open_end_mb        {:.1}", mb(rss_open));
    println!("rss_peak_mb            {:.1}", mb(rss_peak));
    println!("rss_after_close_mb     {:.1}", mb(rss_after));
    println!("delivery_p50_ms        {:.1}", ms(pct(0.5)));
    println!("delivery_p99_ms        {:.1}", ms(pct(0.99)));
    println!("delivery_max_ms        {:.1}", ms(pct(1.0)));
    println!("most_catch_ups         {most_catch_ups}");
    println!(
        "dropped_slow           {}",
        metric(&during, "pgbridge_events_dropped_slow_total")
    );
    println!(
        "open_streams_end       {}",
        metric(&during, "pgbridge_events_open_streams")
    );
    println!(
        "open_streams_after     {}",
        metric(&after, "pgbridge_events_open_streams")
    );
    Ok(())
}

/// The live stream: reports each `id:` it reads, with the moment it read it.
async fn subscribe(
    server: SocketAddr,
    tx: mpsc::UnboundedSender<(i64, Instant)>,
    ready: mpsc::UnboundedSender<()>,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    stream
        .write_all(
            format!(
                "GET /notes/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n{}\r\n",
                auth_header()
            )
            .as_bytes(),
        )
        .await?;
    let mut buf = vec![0u8; 4096];
    let mut pending: Vec<u8> = Vec::new();
    let mut announced = false;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let now = Instant::now();
        pending.extend_from_slice(&buf[..n]);
        if !announced && find(&pending, b": connected").is_some() {
            announced = true;
            let _ = ready.send(());
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
        if find(&pending, b"id: ").is_none() && pending.len() > 16 {
            let keep = pending.len() - 16;
            pending.drain(..keep);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn request(server: SocketAddr, head: &str, body: &str) -> Result<String, Error> {
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
async fn log_in(server: SocketAddr) -> Result<String, Error> {
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

async fn create_note(server: SocketAddr) -> Result<i64, Error> {
    let response = request(
        server,
        &format!(
            "POST /notes HTTP/1.1\r\nContent-Type: application/json\r\n{}",
            auth_header()
        ),
        r#"{"title":"hostile replay"}"#,
    )
    .await?;
    let body = response.split("\r\n\r\n").nth(1).ok_or("no body")?;
    let json: serde_json::Value = serde_json::from_str(body)?;
    json["id"]
        .as_i64()
        .ok_or_else(|| format!("create failed: {response}").into())
}

async fn patch_note(server: SocketAddr, id: i64, round: usize) -> Result<(), Error> {
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

async fn metrics(server: SocketAddr) -> Result<String, Error> {
    request(server, "GET /metrics HTTP/1.1\r\n", "").await
}

/// A metric's value in a `/metrics` exposition (0 if absent).
fn metric(exposition: &str, name: &str) -> u64 {
    exposition
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

fn peak_rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:")
}
