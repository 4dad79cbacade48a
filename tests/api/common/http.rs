//! A small HTTP client and server for tests: real TCP on loopback, no mocks.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves `router` on a free loopback port until the test process ends; returns its address.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        axum::serve(listener, service).await.expect("test server");
    });
    addr
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Services whose `/notes…` requests carry a bearer token by default, and that token once
/// signed up (lazily: on the first such request, after the test has migrated).
static DEFAULT_ACCOUNTS: std::sync::Mutex<
    Vec<(SocketAddr, std::sync::Arc<tokio::sync::OnceCell<String>>)>,
> = std::sync::Mutex::new(Vec::new());

/// The harness's own account on every service it starts.
pub const HARNESS_USER: &str = "harness";
pub const HARNESS_PASSWORD: &str = "harness password";

/// From now on, requests to `/notes…` on `addr` without an `Authorization` header get the
/// harness account's token (see [`default_token`]).
pub fn authenticate_by_default(addr: SocketAddr) {
    let mut accounts = DEFAULT_ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    accounts.retain(|(a, _)| *a != addr);
    accounts.push((addr, Default::default()));
}

/// From now on, requests to `/notes…` on `addr` without an `Authorization` header carry
/// `token`: one session shared by several processes of one service (sessions live in the
/// shared database, so a token from one replica works on every replica).
pub fn authenticate_with(addr: SocketAddr, token: &str) {
    let cell = tokio::sync::OnceCell::new_with(Some(token.to_owned()));
    let mut accounts = DEFAULT_ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    accounts.retain(|(a, _)| *a != addr);
    accounts.push((addr, std::sync::Arc::new(cell)));
}

/// The token requests to `path` on `addr` carry by default: the harness account's, for
/// `/notes…` paths of services started with [`authenticate_by_default`].
pub async fn default_token(addr: SocketAddr, path: &str) -> Option<String> {
    if !path.starts_with("/notes") {
        return None;
    }
    let cell = DEFAULT_ACCOUNTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(a, _)| *a == addr)
        .map(|(_, cell)| cell.clone())?;
    let token = cell
        .get_or_init(|| async { account(addr, HARNESS_USER, HARNESS_PASSWORD).await })
        .await;
    Some(token.clone())
}

/// Signs `username` up (if it is not yet) and logs in: its bearer token.
pub async fn account(addr: SocketAddr, username: &str, password: &str) -> String {
    let credentials = serde_json::json!({"username": username, "password": password}).to_string();
    let post = |path: &str| {
        http::Request::post(path)
            .header("Content-Type", "application/json")
            .body(credentials.clone())
            .expect("request")
    };
    let signed_up = send_as_is(addr, post("/accounts"))
        .await
        .expect("POST /accounts");
    assert!(
        signed_up.status == 201 || signed_up.status == 409,
        "sign up: {} {}",
        signed_up.status,
        signed_up.text()
    );
    let session = send_as_is(addr, post("/sessions"))
        .await
        .expect("POST /sessions");
    assert_eq!(session.status, 201, "log in: {}", session.text());
    session.json()["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// Sends one request on a fresh connection and reads the whole response.
/// Fails (rather than panics) when the server aborts the response. Requests to `/notes…`
/// without `Authorization` get the harness account's token (see [`default_token`]).
pub async fn send(addr: SocketAddr, mut request: http::Request<String>) -> Result<Reply, String> {
    if !request.headers().contains_key(http::header::AUTHORIZATION)
        && let Some(token) = default_token(addr, request.uri().path()).await
    {
        let value = format!("Bearer {token}").parse().expect("header value");
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    send_as_is(addr, request).await
}

/// [`send`] without the default token: the request goes exactly as built.
pub async fn send_as_is(addr: SocketAddr, request: http::Request<String>) -> Result<Reply, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = request;
    if !request.headers().contains_key(http::header::HOST) {
        let host = addr.to_string().parse().expect("host header");
        request.headers_mut().insert(http::header::HOST, host);
    }
    let response = sender
        .send_request(request.map(|b| http_body_util::Full::new(Bytes::from(b))))
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body aborted: {e}"))?
        .to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// `GET path`, expecting a complete response.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    let request = http::Request::get(path)
        .body(String::new())
        .expect("request");
    send(addr, request)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Writes raw bytes and reads until the server closes the connection (or `wait` passes):
/// for looking at exactly what went over the wire.
pub async fn raw(addr: SocketAddr, request: &str, wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            Ok(Ok(_)) => break,
            Ok(Err(err)) => {
                eprintln!("raw read ended: {err}");
                break;
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `stream` into `seen` until it holds `needle`; panics with `what` if that takes
/// more than 5 seconds or the stream ends first.
pub async fn read_until(stream: &mut TcpStream, seen: &mut Vec<u8>, needle: &str, what: &str) {
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(seen).contains(needle) {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what}: waited 5 s for {needle:?}"))
            .expect("read");
        assert!(
            n > 0,
            "{what}: closed before {needle:?}: {}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}
