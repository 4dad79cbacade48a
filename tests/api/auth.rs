//! Accounts, sessions and bearer tokens against a real Postgres: sign up, log in, log out,
//! every refused credential, failed-login limits, and the routes that stay public.

use crate::common;

use std::time::Instant;

use common::accounts::{Account, anonymous, assert_401};
use common::http::{Reply, get, send_as_is};
use common::service::{TestService, connect, start_migrated};
use common::sse;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

async fn post(service: &TestService, path: &str, body: Value) -> Reply {
    let request = http::Request::post(path)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .unwrap();
    send_as_is(service.addr, request).await.unwrap()
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

    // Expired.
    let db = connect(&service.database_url).await;
    db.execute(
        "UPDATE sessions SET expires_at = now() - interval '1 second'",
        &[],
    )
    .await
    .unwrap();
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
    let service = start_migrated(|_| {}).await;
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
    assert!(scopes.contains(&"account:".to_owned()), "{scopes:?}");
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
async fn repeated_failures_are_limited_per_account_across_replicas() {
    let service = start_migrated(|c| {
        c.login_max_failures_per_account = 3;
        c.login_max_failures_per_address = 1000;
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
        "even the right password: {}",
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
    })
    .await;
    let limited = login(&replica, "alice", "alice password").await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    // Other accounts are not affected.
    Account::new(service.addr, "bob").await;
}

#[tokio::test]
async fn repeated_failures_are_limited_per_address() {
    let service = start_migrated(|c| {
        c.login_max_failures_per_account = 1000;
        c.login_max_failures_per_address = 4;
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
