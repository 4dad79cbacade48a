//! A small HTTP client and server for tests: real TCP on loopback, no mocks. The wire part
//! (serving a router, one request per connection, raw bytes) is the contract crate's own
//! test client, `awsgi/tests/support`; this adds the harness's accounts: requests to an
//! owned resource (`/notes…`, and any other [`owns`] names) carry a bearer token by default.

use std::net::SocketAddr;

#[path = "../../../awsgi/tests/support/mod.rs"]
mod wire;

pub use wire::{Reply, raw, read_until, send as send_as_is, serve};

/// Services whose `/notes…` requests carry a bearer token by default, and that token once
/// signed up (lazily: on the first such request, after the test has migrated).
static DEFAULT_ACCOUNTS: std::sync::Mutex<
    Vec<(SocketAddr, std::sync::Arc<tokio::sync::OnceCell<String>>)>,
> = std::sync::Mutex::new(Vec::new());

/// The collections whose requests carry the harness account's token by default.
static OWNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// From now on, requests to `collection…` (`/tasks`, `/tasks/7`, `/tasks/events`) carry the
/// harness account's token by default, as `/notes…` always do.
pub fn owns(collection: &str) {
    let mut owned = OWNED.lock().unwrap_or_else(|p| p.into_inner());
    if !owned.iter().any(|c| c == collection) {
        owned.push(collection.to_owned());
    }
}

/// Whether `path` is in an owned resource: `/notes…`, or a collection named by [`owns`].
pub fn is_owned(path: &str) -> bool {
    let in_collection = |collection: &str| {
        path.strip_prefix(collection)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
    };
    path.starts_with("/notes")
        || OWNED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|c| in_collection(c))
}

/// The harness's own account on every service it starts.
pub const HARNESS_USER: &str = "harness";
pub const HARNESS_PASSWORD: &str = "harness password";

/// From now on, requests to an owned resource (`/notes…`, see [`is_owned`]) on `addr` without an `Authorization` header get the
/// harness account's token (see [`default_token`]).
pub fn authenticate_by_default(addr: SocketAddr) {
    let mut accounts = DEFAULT_ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    accounts.retain(|(a, _)| *a != addr);
    accounts.push((addr, Default::default()));
}

/// From now on, requests to an owned resource (`/notes…`, see [`is_owned`]) on `addr` without an `Authorization` header carry
/// `token`: one session shared by several processes of one service (sessions live in the
/// shared database, so a token from one replica works on every replica).
pub fn authenticate_with(addr: SocketAddr, token: &str) {
    let cell = tokio::sync::OnceCell::new_with(Some(token.to_owned()));
    let mut accounts = DEFAULT_ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    accounts.retain(|(a, _)| *a != addr);
    accounts.push((addr, std::sync::Arc::new(cell)));
}

/// The token requests to `path` on `addr` carry by default: the harness account's, for
/// owned resources' paths ([`is_owned`]) of services started with [`authenticate_by_default`].
pub async fn default_token(addr: SocketAddr, path: &str) -> Option<String> {
    if !is_owned(path) {
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
/// Fails (rather than panics) when the server aborts the response. Requests to an owned
/// resource without `Authorization` get the harness account's token (see [`default_token`]).
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

/// `GET path`, expecting a complete response.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    let request = http::Request::get(path)
        .body(String::new())
        .expect("request");
    send(addr, request)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}
