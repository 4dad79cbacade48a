//! Bulkheads against hostile clients, on the real server loop (`pgbridge::server`) and
//! clients on other loopback addresses (127.0.0.2, .3 …: Linux routes all of 127/8 to `lo`):
//! an anonymous flood of slow database requests leaves signed-in requests their pooled
//! connections; at the connection cap the long anonymous request goes first; one address
//! cannot hold more than its connections or long requests; one account more than its
//! streams; and hyper's own 400/414/431 carry the JSON error shape and an `X-Request-Id`.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use common::http::account;
use common::pg::Cluster;
use common::service::{active_sleeps, connect};
use pgbridge::config::Config;
use pgbridge::server::Server;
use pgbridge::{AppState, router};

const PASSWORD: &str = "bulkhead password";
const WAIT: Duration = Duration::from_secs(20);

/// The service on the real server loop, stopped when dropped.
struct Running {
    addr: SocketAddr,
    state: AppState,
    database_url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(configure: impl FnOnce(&mut Config)) -> Running {
    let database_url = Cluster::shared().await.create_database().await;
    pgbridge::db::migrate::Migrator::embedded()
        .expect("embedded migrations")
        .run_url(&database_url)
        .await
        .expect("migrate");
    let mut config = Config::new(database_url.clone());
    configure(&mut config);
    let state = AppState::new(config).expect("valid config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = Server::new(
        listener,
        router(state.clone()),
        state.config.connection_limits(),
        state.metrics.connections.clone(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    Running {
        addr,
        state,
        database_url,
        _stop: stop,
    }
}

impl Running {
    /// Waits until exactly `n` client connections are open.
    async fn wait_open(&self, n: u64) {
        let deadline = Instant::now() + WAIT;
        while self.state.metrics.connections.open() != n {
            assert!(
                Instant::now() < deadline,
                "{} connections open, not {n}",
                self.state.metrics.connections.open()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A connection to `server` from the loopback address `127.0.0.<host>`.
async fn connect_from(host: u8, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, host], 0)))
        .expect("bind a loopback address");
    socket.connect(server).await.expect("connect")
}

/// A whole response read from a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn parse(bytes: &[u8]) -> Raw {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head in {text:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        Raw {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n.trim() == name).then(|| v.trim())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// Reads until the peer closes (a reset counts as closed), within [`WAIT`].
async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "not closed within {WAIT:?}: {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

/// Reads until `needle` is seen, within [`WAIT`].
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    common::http::read_until(stream, &mut seen, needle, needle).await;
    String::from_utf8_lossy(&seen).into_owned()
}

/// Whether `stream` is closed by the peer within `within` (data that arrives is read and
/// dropped).
async fn ends_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// One `GET` from `127.0.0.<host>` on a connection of its own, with extra header lines.
async fn get_from(host: u8, server: SocketAddr, path: &str, headers: &str) -> Raw {
    let mut stream = connect_from(host, server).await;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    Raw::parse(&read_to_end(&mut stream).await)
}

/// Starts a `GET` that streams (a sleep, an event stream) from `127.0.0.<host>` and waits
/// until its first bytes (`first`) arrived: it is surely running.
async fn start_long(
    host: u8,
    server: SocketAddr,
    path: &str,
    headers: &str,
    first: &str,
) -> TcpStream {
    let mut stream = connect_from(host, server).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    read_until(&mut stream, first).await;
    stream
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_database_flood_leaves_signed_in_requests_their_connections() {
    // A pool of 8: the anonymous share is 2. Without the bulkhead, 24 ten-second sleeps
    // hold all 8 and a signed-in request gets 503 after the 500 ms pool wait.
    let server = start(|c| {
        c.db_pool_size = 8;
        c.db_pool_timeout_ms = 500;
    })
    .await;
    let addr = server.addr;
    let token = account(addr, "bulkhead-reader", PASSWORD).await;
    let flood: Vec<_> = (0..24u8)
        .map(|i| {
            tokio::spawn(async move {
                get_from(2 + i % 4, addr, "/seed/postgres-async?delay=10", "").await
            })
        })
        .collect();
    let admin = connect(&server.database_url).await;
    let deadline = Instant::now() + WAIT;
    while active_sleeps(&admin).await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the flood's sleeps never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Past its share, an anonymous request is refused at once, with Retry-After.
    let refused = get_from(6, addr, "/seed/postgres-async?delay=10", "").await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.json()["error"]["code"], "overloaded");

    // Signed-in requests meanwhile: every one served.
    for i in 0..20 {
        let reply = get_from(9, addr, "/notes", &bearer(&token)).await;
        assert_eq!(reply.status, 200, "signed-in request {i}: {reply:?}");
    }
    assert_eq!(
        active_sleeps(&admin).await.len(),
        2,
        "the flood held its whole share throughout, and no more"
    );
    for request in &flood {
        request.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_oldest_long_anonymous_request_goes_first() {
    let server = start(|c| {
        c.max_connections = 8;
        c.sse_heartbeat_ms = 200;
    })
    .await;
    let addr = server.addr;
    let token = account(addr, "bulkhead-streamer", PASSWORD).await;
    server.wait_open(0).await;

    // A signed-in event stream and seven anonymous 30-second sleeps fill the cap.
    let mut stream = start_long(3, addr, "/notes/events", &bearer(&token), "connected").await;
    let mut sleepers = Vec::new();
    for i in 0..7u8 {
        let path = "/seed/poll-sleep?seconds=30";
        sleepers.push(start_long(4 + i % 3, addr, path, "", "sleeping").await);
    }
    server.wait_open(8).await;

    // A signed-in request from another address is served: a sleeper made room.
    let reply = get_from(2, addr, "/notes", &bearer(&token)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(server.state.metrics.connections.evicted(), 1);

    // The one that went is the oldest sleeper; the others and the stream run on.
    assert!(
        ends_within(&mut sleepers[0], Duration::from_secs(5)).await,
        "the oldest sleeper is closed"
    );
    for (i, sleeper) in sleepers.iter_mut().enumerate().skip(1) {
        assert!(
            !ends_within(sleeper, Duration::from_millis(300)).await,
            "sleeper {i} was closed too"
        );
    }
    assert!(
        !ends_within(&mut stream, Duration::from_millis(600)).await,
        "the signed-in stream is never evicted"
    );
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_connections() {
    let server = start(|c| c.max_connections_per_address = 3).await;
    let addr = server.addr;
    server.wait_open(0).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(2, addr).await);
    }
    server.wait_open(3).await;

    let refused = get_from(2, addr, "/healthz", "").await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.json()["error"]["code"], "too_many_connections");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        refused
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(server.state.metrics.connections.address_refused(), 1);

    // Another address is not affected; and a closed connection frees its address's place.
    assert_eq!(get_from(3, addr, "/healthz", "").await.status, 200);
    drop(held.pop());
    server.wait_open(2).await;
    assert_eq!(get_from(2, addr, "/healthz", "").await.status, 200);
}

#[tokio::test]
async fn one_address_cannot_run_more_than_its_long_requests() {
    let server = start(|c| c.max_long_requests_per_address = 2).await;
    let addr = server.addr;
    let path = "/seed/poll-sleep?seconds=30";
    let _a = start_long(2, addr, path, "", "sleeping").await;
    let _b = start_long(2, addr, path, "", "sleeping").await;

    let refused = get_from(2, addr, path, "").await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.json()["error"]["code"], "too_many_open");
    assert_eq!(refused.header("retry-after"), Some("1"));

    // Short requests from that address, and long ones from another, are served.
    assert_eq!(get_from(2, addr, "/healthz", "").await.status, 200);
    let other = get_from(3, addr, "/seed/poll-sleep?seconds=0", "").await;
    assert_eq!(other.status, 200, "{other:?}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_long_request_limit_counts_each_forwarded_client() {
    let server = start(|c| {
        c.max_long_requests_per_address = 1;
        c.trusted_proxies = vec!["127.0.0.2/32".parse().expect("a network")];
    })
    .await;
    let addr = server.addr;
    let path = "/seed/poll-sleep?seconds=30";
    let from = |client: &str| format!("X-Forwarded-For: {client}\r\n");
    // Two clients behind the one proxy address each get their own place.
    let _a = start_long(2, addr, path, &from("198.51.100.1"), "sleeping").await;
    let _b = start_long(2, addr, path, &from("198.51.100.2"), "sleeping").await;
    // The first client's second long request is its own second: refused.
    let refused = get_from(2, addr, path, &from("198.51.100.1")).await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.json()["error"]["code"], "too_many_open");
    // An untrusted peer's header is not believed: it counts as its own address.
    let _c = start_long(3, addr, path, &from("198.51.100.3"), "sleeping").await;
    let spoofed = get_from(3, addr, path, &from("198.51.100.4")).await;
    assert_eq!(spoofed.status, 429, "{spoofed:?}");
}

#[tokio::test]
async fn one_account_cannot_open_more_than_its_event_streams() {
    let server = start(|c| c.events_max_streams_per_account = 2).await;
    let addr = server.addr;
    let greedy = account(addr, "bulkhead-greedy", PASSWORD).await;
    let other = account(addr, "bulkhead-other", PASSWORD).await;
    let _a = start_long(2, addr, "/notes/events", &bearer(&greedy), "connected").await;
    let _b = start_long(3, addr, "/notes/events", &bearer(&greedy), "connected").await;

    let refused = get_from(4, addr, "/notes/events", &bearer(&greedy)).await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.json()["error"]["code"], "too_many_open");
    assert!(refused.header("retry-after").is_some());
    assert_eq!(server.state.apps.notes.streams.open_streams(), 2);

    let _c = start_long(4, addr, "/notes/events", &bearer(&other), "connected").await;
    assert_eq!(server.state.apps.notes.streams.open_streams(), 3);
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_the_json_shape_and_a_request_id() {
    let server = start(|_| {}).await;
    let addr = server.addr;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases = [
        (long_uri, 414, "uri_too_long"),
        (many_headers, 431, "headers_too_large"),
        ("NONSENSE\r\n\r\n".to_owned(), 400, "bad_request"),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n".to_owned(),
            400,
            "bad_request",
        ),
    ];
    for (request, status, code) in &cases {
        let mut stream = connect_from(2, addr).await;
        stream.write_all(request.as_bytes()).await.expect("write");
        let reply = Raw::parse(&read_to_end(&mut stream).await);
        assert_eq!(reply.status, *status, "{code}: {reply:?}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str())
        );
        assert!(
            reply
                .header("x-request-id")
                .is_some_and(|id| id.len() == 36),
            "{reply:?}"
        );
        assert_eq!(reply.header("connection"), Some("close"));
        assert_eq!(reply.json()["error"]["code"], *code);
        assert!(reply.json()["error"]["message"].is_string());
    }
    assert_eq!(server.state.metrics.connections.malformed(), 4);
    // Well-formed requests, and their own errors, are untouched.
    let fine = get_from(2, addr, "/healthz", "").await;
    assert_eq!(fine.status, 200, "{fine:?}");
    let not_found = get_from(2, addr, "/no-such-route", "").await;
    assert_eq!(not_found.status, 404);
    assert_eq!(server.state.metrics.connections.malformed(), 4);
}
