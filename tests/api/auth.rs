//! Accounts, sessions and bearer tokens against a real Postgres: sign up, log in, log out,
//! every refused credential, failed-login limits, and the routes that stay public.

use crate::common;

use std::time::{Duration, Instant};

use common::accounts::{Account, anonymous, assert_401};
use common::http::{Reply, get, send_as_is};
use common::service::{TestService, connect, start_migrated};
use common::sse;
use pgbridge::config::Config;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

async fn post(service: &TestService, path: &str, body: Value) -> Reply {
    let request = http::Request::post(path)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .unwrap();
    send_as_is(service.addr, request).await.unwrap()
}

/// The login throttle's window in seconds: `LOGIN_FAILURE_WINDOW_SECS`' default (read from the
/// flags, which hold it), which the tests that call [`clear_of_a_window_start`] keep.
fn login_window_secs() -> f64 {
    Config::new(String::new()).login_failure_window_secs as f64
}

/// Seconds since the epoch, as the throttle's windows are aligned to it.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
}

/// The login throttle's count slides from one window to the next (`src/auth/throttle.rs`):
/// just after a window starts, the previous window's failures count a little less than
/// their number, so one more attempt fits under the limit. A test that counts failures up
/// to an exact limit must not straddle that moment (CI once logged in at 22:30:00.3, just
/// past one, and got 201 where the limit said 429); if the current window ends within 20
/// seconds, wait for the next.
async fn clear_of_a_window_start() {
    let window = login_window_secs();
    let left = window - unix_now() % window;
    if left < 20.0 {
        tokio::time::sleep(Duration::from_secs_f64(left + 0.5)).await;
    }
}

async fn login(service: &TestService, username: &str, password: &str) -> Reply {
    post(
        service,
        "/sessions",
        json!({"username": username, "password": password}),
    )
    .await
}

#[tokio::test]
async fn sign_up_log_in_use_the_token_log_out() {
    let service = start_migrated(|_| {}).await;
    let signed_up = post(
        &service,
        "/accounts",
        json!({"username": "Alice", "password": "correct horse"}),
    )
    .await;
    assert_eq!(signed_up.status, 201, "{}", signed_up.text());
    assert_eq!(
        signed_up.json()["username"],
        "alice",
        "names are lower-cased"
    );
    assert!(signed_up.json().get("password_hash").is_none());

    let again = post(
        &service,
        "/accounts",
        json!({"username": "alice", "password": "another one"}),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(again.json()["error"]["code"], "conflict");

    let session = login(&service, "alice", "correct horse").await;
    assert_eq!(session.status, 201, "{}", session.text());
    let token = session.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43, "256 bits, base64url");
    assert!(
        session.json()["expires_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let cookie = session.header("set-cookie").unwrap();
    for part in [
        "pgbridge_session=",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/notes/events",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP, not configured: {cookie}"
    );

    let alice = Account {
        addr: service.addr,
        token: token.clone(),
    };
    let me = alice.get("/accounts/me").await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["username"], "alice");
    let id = alice.create("mine").await;
    assert_eq!(alice.get(&format!("/notes/{id}")).await.status, 200);

    // Stored only as a hash; the password as Argon2id.
    let db = connect(&service.database_url).await;
    let row = db
        .query_one(
            "SELECT s.token_hash, a.password_hash FROM sessions s JOIN accounts a ON a.id = s.account_id",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<u8> = row.get(0);
    assert_eq!(stored, Sha256::digest(token.as_bytes()).to_vec());
    let hash: String = row.get(1);
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );

    let logout = alice.send("DELETE", "/sessions/current", None, &[]).await;
    assert_eq!(logout.status, 204, "{}", logout.text());
    assert!(logout.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_401(&alice.get("/accounts/me").await, "after log out");
    assert_401(&alice.get(&format!("/notes/{id}")).await, "after log out");
    assert_401(
        &alice.send("DELETE", "/sessions/current", None, &[]).await,
        "log out twice",
    );
}

#[tokio::test]
async fn sign_up_input_is_checked() {
    let service = start_migrated(|_| {}).await;
    for (body, field) in [
        (
            json!({"username": "ab", "password": "long enough"}),
            "username",
        ),
        (
            json!({"username": "bad name", "password": "long enough"}),
            "username",
        ),
        (
            json!({"username": "~legacy", "password": "long enough"}),
            "username",
        ),
        (json!({"username": "bob", "password": "short"}), "password"),
        (
            json!({"username": "bob", "password": "x".repeat(129)}),
            "password",
        ),
    ] {
        let reply = post(&service, "/accounts", body.clone()).await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.text());
        assert_eq!(reply.json()["error"]["fields"][0]["field"], field, "{body}");
    }
    for body in [
        json!({"username": "bob"}),
        json!([1]),
        json!({"username": "bob", "password": "long enough", "admin": true}),
    ] {
        let reply = post(&service, "/accounts", body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
    }
    let db = connect(&service.database_url).await;
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM accounts WHERE password_hash IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing was created");
}

#[tokio::test]
async fn missing_malformed_expired_and_revoked_tokens_are_401() {
    let service = start_migrated(|_| {}).await;
    let alice = Account::new(service.addr, "alice").await;
    let id = alice.create("a note").await;
    let note = format!("/notes/{id}");
    let paths = ["/notes", note.as_str(), "/notes/events", "/accounts/me"];

    for path in paths {
        assert_401(&anonymous(service.addr, "GET", path, &[]).await, path);
        for bad in [
            "Bearer",
            "Basic YWxpY2U6cGFzc3dvcmQ=",
            "Bearer not-a-token",
            "Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // well formed, unknown
        ] {
            let reply = anonymous(service.addr, "GET", path, &[("Authorization", bad)]).await;
            assert_401(&reply, &format!("{path} with {bad}"));
            assert!(
                reply
                    .header("www-authenticate")
                    .unwrap()
                    .contains("invalid_token"),
                "{path} {bad}"
            );
        }
    }
    // Writes are refused before anything is read or changed.
    let reply = anonymous(service.addr, "DELETE", &note, &[]).await;
    assert_401(&reply, "DELETE without a token");
    assert_eq!(alice.get(&note).await.status, 200, "still there");

    // Expired. A row changed in SQL reaches the session cache through the sessions
    // trigger's NOTIFY, within moments (at most 1 s: tests/api/sessions_cache.rs).
    let db = connect(&service.database_url).await;
    db.execute(
        "UPDATE sessions SET expires_at = now() - interval '1 second'",
        &[],
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while alice.get(paths[0]).await.status == 200 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for path in paths {
        assert_401(&alice.get(path).await, &format!("{path}, expired"));
    }
}

#[tokio::test]
async fn the_stream_cookie_opens_event_streams_and_nothing_else() {
    let service = start_migrated(|_| {}).await;
    let alice = Account::new(service.addr, "alice").await;
    let cookie = format!("pgbridge_session={}", alice.token);
    let stream = sse::open_with(service.addr, "/notes/events", None, &[("Cookie", &cookie)]).await;
    assert_eq!(stream.status, 200);
    for (method, path) in [
        ("GET", "/notes"),
        ("POST", "/notes"),
        ("GET", "/accounts/me"),
    ] {
        let reply = anonymous(service.addr, method, path, &[("Cookie", &cookie)]).await;
        assert_401(&reply, &format!("{method} {path} with only the cookie"));
    }
}

#[tokio::test]
async fn the_cookie_is_secure_when_configured() {
    let service = start_migrated(|c| c.session_cookie_secure = true).await;
    Account::new(service.addr, "alice").await;
    let session = login(&service, "alice", "alice password").await;
    assert!(session.header("set-cookie").unwrap().contains("; Secure"));
}

#[tokio::test]
async fn a_failed_login_is_the_same_401_whether_or_not_the_account_exists() {
    let service = start_migrated(|c| c.login_max_failures_per_account = 1000).await;
    Account::new(service.addr, "alice").await;
    let wrong = login(&service, "alice", "wrong password").await;
    let missing = login(&service, "nobody", "wrong password").await;
    assert_401(&wrong, "wrong password");
    assert_401(&missing, "no such account");
    assert_eq!(wrong.body, missing.body);
    assert_eq!(
        wrong.header("www-authenticate"),
        missing.header("www-authenticate")
    );

    // And in about the same time: both verify an Argon2id hash. Medians of interleaved
    // tries, and a bound generous enough for a loaded machine (without the dummy hash the
    // missing account answers some 30 times faster).
    let mut times = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        login(&service, "alice", "wrong password").await;
        times.0.push(t.elapsed());
        let t = Instant::now();
        login(&service, "nobody", "wrong password").await;
        times.1.push(t.elapsed());
    }
    times.0.sort();
    times.1.sort();
    let (existing, missing) = (times.0[2], times.1[2]);
    assert!(
        missing * 3 >= existing,
        "missing account {missing:?} vs existing {existing:?}"
    );
}

/// Names no account can have — U+0000 (which Postgres cannot store), other characters,
/// too long — are the same 401 as a wrong password, not a 500, and are counted without
/// storing the name.
#[tokio::test]
async fn a_login_with_a_name_no_account_can_have_is_the_same_401() {
    // Every such name is one (account, address) pair: no delay, to see each answer.
    let service = start_migrated(|c| c.login_failure_delay_ms = 0).await;
    Account::new(service.addr, "alice").await;
    let wrong = login(&service, "alice", "wrong password").await;
    for name in [
        "ali\u{0}ce",
        "\u{0}",
        "alice smith",
        "é-accent",
        &"a".repeat(5000),
    ] {
        let reply = login(&service, name, "wrong password").await;
        assert_401(&reply, &format!("{name:?}"));
        assert_eq!(reply.body, wrong.body, "{name:?}");
    }
    let admin = connect(&service.database_url).await;
    let scopes: Vec<String> = admin
        .query("SELECT scope FROM login_failures ORDER BY scope", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        scopes.iter().all(|s| s.len() < 64),
        "stored scopes: {scopes:?}"
    );
    assert!(
        scopes.contains(&"login:@127.0.0.1".to_owned()),
        "{scopes:?}"
    );
    // Sign-up refuses such names.
    let reply = post(
        &service,
        "/accounts",
        json!({"username": "ali\u{0}ce", "password": "long enough"}),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
}

#[tokio::test]
async fn repeated_failures_are_limited_per_account_from_an_address_across_replicas() {
    clear_of_a_window_start().await;
    let service = start_migrated(|c| {
        c.login_max_failures_per_account = 3;
        c.login_max_failures_per_address = 1000;
        c.login_failure_delay_ms = 0;
    })
    .await;
    Account::new(service.addr, "alice").await;
    for _ in 0..3 {
        assert_eq!(login(&service, "alice", "wrong password").await.status, 401);
    }
    let limited = login(&service, "alice", "alice password").await;
    assert_eq!(
        limited.status,
        429,
        "from the same address, even the right password: {}",
        limited.text()
    );
    assert_eq!(limited.json()["error"]["code"], "too_many_requests");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // An account that does not exist is limited the same way.
    for _ in 0..3 {
        assert_eq!(login(&service, "ghost", "wrong password").await.status, 401);
    }
    assert_eq!(login(&service, "ghost", "wrong password").await.status, 429);

    // A second replica on the same database sees the same counts.
    let replica = common::service::start_on(service.database_url.clone(), |c| {
        c.login_max_failures_per_account = 3;
        c.login_failure_delay_ms = 0;
    })
    .await;
    let limited = login(&replica, "alice", "alice password").await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    // Other accounts are not affected.
    Account::new(service.addr, "bob").await;
}

/// The count slides: failures just before a window starts still count just after it, in
/// proportion to how much of their window is still within the last window's length. With
/// fixed windows the new window would start from zero and allow a limit's worth at once.
#[tokio::test]
async fn failures_just_before_a_window_starts_still_count_after_it() {
    const WINDOW: f64 = 4.0;
    let service = start_migrated(|c| {
        c.login_max_failures_per_account = 3;
        c.login_max_failures_per_address = 1000;
        c.login_failure_window_secs = WINDOW as u64;
        c.login_failure_delay_ms = 0;
    })
    .await;
    Account::new(service.addr, "alice").await;
    let into_window = || unix_now() % WINDOW;
    // The three failures in the last 1.5 seconds of a window...
    let wait = (WINDOW - 1.5 - into_window()).rem_euclid(WINDOW);
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    for _ in 0..3 {
        assert_eq!(login(&service, "alice", "wrong password").await.status, 401);
    }
    assert!(into_window() > WINDOW - 1.5, "the failures took too long");
    // ...then, 0.2 s into the next: 3 × 0.95 of them still count, so one more failure fits
    // under the limit of 3, and then nothing does (fixed windows would allow three).
    let wait = WINDOW - into_window() + 0.2;
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    assert_eq!(login(&service, "alice", "wrong password").await.status, 401);
    let limited = login(&service, "alice", "alice password").await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=4).contains(&retry), "Retry-After {retry}");
    assert!(
        into_window() < 1.5,
        "the attempts after the start took too long"
    );
}

#[tokio::test]
async fn repeated_failures_are_limited_per_address() {
    clear_of_a_window_start().await;
    let service = start_migrated(|c| {
        c.login_max_failures_per_account = 1000;
        c.login_max_failures_per_address = 4;
        c.login_failure_delay_ms = 0;
    })
    .await;
    Account::new(service.addr, "alice").await;
    for name in ["a1", "a2", "a3", "a4"] {
        assert_eq!(login(&service, name, "wrong password").await.status, 401);
    }
    let limited = login(&service, "alice", "alice password").await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(limited.header("retry-after").is_some());
}

#[tokio::test]
async fn public_routes_stay_public_and_metrics_needs_its_token() {
    let service = start_migrated(|c| c.metrics_token = Some("metrics-secret".into())).await;
    for path in ["/", "/healthz", "/readyz", "/seed/postgres-async?delay=0"] {
        let reply = get(service.addr, path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    assert_401(
        &get(service.addr, "/metrics").await,
        "/metrics without a token",
    );
    let wrong = anonymous(
        service.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer nope")],
    )
    .await;
    assert_401(&wrong, "/metrics, wrong token");
    let right = anonymous(
        service.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer metrics-secret")],
    )
    .await;
    assert_eq!(right.status, 200, "{}", right.text());

    let open = service_without_metrics_token().await;
    assert_eq!(get(open.addr, "/metrics").await.status, 200);
}

async fn service_without_metrics_token() -> TestService {
    start_migrated(|_| {}).await
}

#[tokio::test]
async fn sessions_last_the_configured_time() {
    let service = start_migrated(|c| c.session_ttl_secs = 60).await;
    Account::new(service.addr, "alice").await;
    let session = login(&service, "alice", "alice password").await;
    assert!(session.header("set-cookie").unwrap().contains("Max-Age=60"));
    let db = connect(&service.database_url).await;
    let secs: f64 = db
        .query_one(
            "SELECT extract(epoch FROM max(expires_at) - now())::float8 FROM sessions",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((0.0..=60.0).contains(&secs), "{secs}");

    // Expired sessions are cleared away at the account's next login.
    db.execute(
        "UPDATE sessions SET expires_at = now() - interval '1 second'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(login(&service, "alice", "alice password").await.status, 201);
    let left: i64 = db
        .query_one("SELECT count(*) FROM sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1, "only the new session is left");
}

/// Sends `request` from the loopback address `from` (127.0.0.2, .3 … are other clients).
async fn send_from(
    from: &str,
    addr: std::net::SocketAddr,
    request: http::Request<String>,
) -> Reply {
    use http_body_util::BodyExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (mut parts, body) = request.into_parts();
    parts
        .headers
        .insert(http::header::HOST, addr.to_string().parse().unwrap());
    let request =
        http::Request::from_parts(parts, http_body_util::Full::new(bytes::Bytes::from(body)));
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// `POST /sessions` from `from`, with `X-Forwarded-For: xff` if given.
async fn login_from(
    service: &TestService,
    from: &str,
    xff: Option<&str>,
    username: &str,
    password: &str,
) -> Reply {
    let mut request = http::Request::post("/sessions").header("Content-Type", "application/json");
    if let Some(xff) = xff {
        request = request.header("X-Forwarded-For", xff);
    }
    let body = json!({"username": username, "password": password}).to_string();
    send_from(from, service.addr, request.body(body).unwrap()).await
}

/// However many wrong guesses come from one address, the owner logs in from another at
/// once; the guessing address waits, with the right password too.
#[tokio::test]
async fn the_owner_logs_in_from_another_address_after_any_number_of_guesses() {
    clear_of_a_window_start().await;
    // No delay: the guessing pair then ends at its hard limit whatever the machine's speed
    // (with one, a slow run could find the delay just over when the guesser tries again).
    let service = start_migrated(|c| c.login_failure_delay_ms = 0).await;
    Account::new(service.addr, "alice").await;
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for _ in 0..100 {
        let reply = login_from(&service, "127.0.0.1", None, "alice", "wrong password").await;
        *statuses.entry(reply.status).or_default() += 1;
    }
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [401, 429],
        "{statuses:?}"
    );
    assert_eq!(statuses[&401], 5, "{statuses:?}");
    let owner = login_from(&service, "127.0.0.2", None, "alice", "alice password").await;
    assert_eq!(owner.status, 201, "{}", owner.text());
    let guesser = login_from(&service, "127.0.0.1", None, "alice", "alice password").await;
    assert_eq!(guesser.status, 429, "{}", guesser.text());
    let retry: u64 = guesser.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // The refused attempts were not counted: bob logs in from the guessing address.
    Account::new(service.addr, "bob").await;
}

/// Past half the limit, each failure makes the next attempt from that pair wait, doubling.
#[tokio::test]
async fn failures_past_half_the_limit_delay_the_next_attempt() {
    clear_of_a_window_start().await;
    let service = start_migrated(|c| {
        c.login_max_failures_per_account = 10;
        c.login_failure_delay_ms = 60_000;
    })
    .await;
    Account::new(service.addr, "alice").await;
    for _ in 0..5 {
        assert_eq!(login(&service, "alice", "wrong password").await.status, 401);
    }
    let delayed = login(&service, "alice", "alice password").await;
    assert_eq!(delayed.status, 429, "{}", delayed.text());
    let retry: u64 = delayed.header("retry-after").unwrap().parse().unwrap();
    assert!((2..=60).contains(&retry), "{retry}");
    let admin = connect(&service.database_url).await;
    let failures: i32 = admin
        .query_one(
            "SELECT failures FROM login_failures WHERE scope = 'login:alice@127.0.0.1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failures, 5, "the refused attempt is not counted");
    // The delay over (moved into the past here), the right password logs in and the
    // pair's failures are forgotten.
    admin
        .execute("UPDATE login_failures SET not_before = now()", &[])
        .await
        .unwrap();
    // The process remembers a refusal for a moment without asking the database.
    tokio::time::sleep(pgbridge::auth::throttle::REMEMBER_REFUSAL + Duration::from_millis(100))
        .await;
    assert_eq!(login(&service, "alice", "alice password").await.status, 201);
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM login_failures WHERE scope = 'login:alice@127.0.0.1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// 200 concurrent guesses on one account from one address have at most the limit of
/// passwords checked: each check is reserved first, atomically.
#[tokio::test]
async fn concurrent_guesses_check_at_most_the_limit() {
    clear_of_a_window_start().await;
    let service = start_migrated(|c| {
        c.login_max_failures_per_account = 5;
        c.login_failure_delay_ms = 0;
    })
    .await;
    Account::new(service.addr, "alice").await;
    let before = service.state.login_stats.password_checks();
    let guesses = (0..200).map(|i| {
        let addr = service.addr;
        tokio::spawn(async move {
            let request = http::Request::post("/sessions")
                .header("Content-Type", "application/json")
                .body(json!({"username": "alice", "password": format!("guess {i}")}).to_string())
                .unwrap();
            send_as_is(addr, request).await.map(|r| r.status)
        })
    });
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for guess in futures_util::future::join_all(guesses).await {
        let status = guess.unwrap().unwrap_or(0);
        *statuses.entry(status).or_default() += 1;
    }
    let checked = service.state.login_stats.password_checks() - before;
    assert!(checked <= 5, "{checked} passwords checked: {statuses:?}");
    assert_eq!(
        u64::from(statuses.get(&401).copied().unwrap_or(0)),
        checked,
        "{statuses:?}"
    );
    assert!(
        statuses.keys().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.get(&429).copied().unwrap_or(0) >= 150,
        "{statuses:?}"
    );
    let metrics = get(service.addr, "/metrics").await.text();
    assert!(
        metrics.contains("pgbridge_login_password_checks_total"),
        "{metrics}"
    );
}

/// `X-Forwarded-For` names the client only when the peer is in `TRUSTED_PROXIES`.
#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    clear_of_a_window_start().await;
    let service = start_migrated(|c| {
        c.login_max_failures_per_account = 2;
        c.login_failure_delay_ms = 0;
        c.trusted_proxies = vec![pgbridge::auth::client_addr::parse_trusted("127.0.0.2").unwrap()];
    })
    .await;
    Account::new(service.addr, "alice").await;
    // From an untrusted peer, the header changes nothing: the peer is the client.
    for xff in ["203.0.113.1", "203.0.113.2"] {
        let reply = login_from(&service, "127.0.0.1", Some(xff), "alice", "wrong password").await;
        assert_eq!(reply.status, 401);
    }
    let forged = login_from(
        &service,
        "127.0.0.1",
        Some("203.0.113.3"),
        "alice",
        "alice password",
    )
    .await;
    assert_eq!(forged.status, 429, "{}", forged.text());
    // Through the trusted proxy, each forwarded address is a client of its own.
    for _ in 0..2 {
        let reply = login_from(
            &service,
            "127.0.0.2",
            Some("203.0.113.9"),
            "alice",
            "wrong password",
        )
        .await;
        assert_eq!(reply.status, 401);
    }
    let limited = login_from(
        &service,
        "127.0.0.2",
        Some("203.0.113.9"),
        "alice",
        "alice password",
    )
    .await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    // A client's own entry left of the proxy's is not believed over the proxy's.
    let spoofed = login_from(
        &service,
        "127.0.0.2",
        Some("198.51.100.7, 203.0.113.9"),
        "alice",
        "alice password",
    )
    .await;
    assert_eq!(spoofed.status, 429, "{}", spoofed.text());
    let other = login_from(
        &service,
        "127.0.0.2",
        Some("203.0.113.10"),
        "alice",
        "alice password",
    )
    .await;
    assert_eq!(other.status, 201, "{}", other.text());
    let admin = connect(&service.database_url).await;
    let scopes: Vec<String> = admin
        .query("SELECT scope FROM login_failures ORDER BY scope", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        scopes.contains(&"login:alice@127.0.0.1".into()),
        "{scopes:?}"
    );
    assert!(
        scopes.contains(&"login:alice@203.0.113.9".into()),
        "{scopes:?}"
    );
    assert!(
        !scopes.iter().any(|s| s.ends_with(":203.0.113.1")
            || s.ends_with("@203.0.113.1")
            || s.contains("127.0.0.2")),
        "{scopes:?}"
    );
}

/// At most `SESSION_MAX_PER_ACCOUNT` live sessions: a login past it revokes the oldest;
/// revoked and expired rows are deleted at later logins.
#[tokio::test]
async fn sessions_per_account_are_capped_oldest_revoked_first() {
    let service = start_migrated(|c| c.session_max_per_account = 3).await;
    Account::new(service.addr, "alice").await; // the first session
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let session = login(&service, "alice", "alice password").await;
        assert_eq!(session.status, 201, "{}", session.text());
        tokens.push(session.json()["token"].as_str().unwrap().to_owned());
    }
    let me = |token: String| {
        let addr = service.addr;
        async move {
            let request = http::Request::get("/accounts/me")
                .header("Authorization", format!("Bearer {token}"))
                .body(String::new())
                .unwrap();
            send_as_is(addr, request).await.unwrap().status
        }
    };
    for token in &tokens {
        assert_eq!(me(token.clone()).await, 200);
    }
    let admin = connect(&service.database_url).await;
    let row = live(&admin).await;
    assert_eq!(row.get::<_, i64>(0), 3, "the cap");
    // One more: the oldest of these goes.
    let session = login(&service, "alice", "alice password").await;
    assert_eq!(session.status, 201);
    assert_eq!(me(tokens[0].clone()).await, 401, "the oldest was revoked");
    assert_eq!(me(tokens[1].clone()).await, 200);
    assert_eq!(live(&admin).await.get::<_, i64>(0), 3);
    // Revoked a while ago, or expired: deleted at the next login.
    admin
        .batch_execute(
            "UPDATE sessions SET revoked_at = now() - interval '1 hour' WHERE revoked_at IS NOT NULL",
        )
        .await
        .unwrap();
    assert_eq!(login(&service, "alice", "alice password").await.status, 201);
    let row = live(&admin).await;
    assert_eq!(row.get::<_, i64>(0), 3);
    assert_eq!(row.get::<_, i64>(1), 4, "3 live, and the one just revoked");
    let metrics = get(service.addr, "/metrics").await.text();
    assert!(
        metrics.contains("pgbridge_sessions_revoked_by_cap_total 3"),
        "{metrics}"
    );
}

/// Live (not revoked) sessions, and all session rows.
async fn live(admin: &tokio_postgres::Client) -> tokio_postgres::Row {
    admin
        .query_one(
            "SELECT count(*) FILTER (WHERE revoked_at IS NULL), count(*) FROM sessions",
            &[],
        )
        .await
        .unwrap()
}
