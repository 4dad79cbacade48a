//! The session cache (`src/auth/cache.rs`) across replicas: two services on one database,
//! a token used on both; whatever ends the session on one (logout, a row changed in SQL,
//! the per-account cap) stops it on the other within 1 s; revocations made while a
//! service's `LISTEN` connection is down are honoured; the cache stays within its bound;
//! an event stream of a revoked session ends. Also through PgBouncer in transaction mode.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use common::accounts::{Account, assert_401};
use common::http::{Reply, get, send_as_is};
use common::pg::Cluster;
use common::service::{TestService, connect, start_live, start_on};
use common::sse;
use pgbridge::auth::SessionCache;
use pgbridge::config::Config;

/// The bound the brief sets: no replica accepts a revoked token more than 1 s later.
const REVOCATION_BOUND: Duration = Duration::from_secs(1);
/// Generous waits for things that are not under test (a listener connecting).
const WAIT: Duration = Duration::from_secs(15);

fn cache(service: &TestService) -> Arc<SessionCache> {
    service
        .state
        .db
        .extension::<Arc<SessionCache>>()
        .cloned()
        .expect("the session cache is on by default")
}

/// Waits until `service`'s LISTEN connection listens and its cache trusts itself (the
/// trigger seen, within its lease).
async fn wait_listening(service: &TestService) {
    let cache = cache(service);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(service.state.apps.notes.listener.is_connected() && cache.is_trusted()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two services on one fresh, migrated database, both listening.
async fn two_services(configure: impl Fn(&mut Config) + Clone) -> (TestService, TestService) {
    let a = start_live(configure.clone(), WAIT).await;
    let b = start_on(a.database_url.clone(), configure).await;
    wait_listening(&a).await;
    wait_listening(&b).await;
    (a, b)
}

/// `account`'s token, sent to `service`.
fn on(service: &TestService, account: &Account) -> Account {
    Account {
        addr: service.addr,
        token: account.token.clone(),
    }
}

/// A counter or gauge of `service`'s `/metrics`.
async fn metric(service: &TestService, name: &str) -> f64 {
    let page = get(service.addr, "/metrics").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

/// Polls `GET path` as `account` until it is refused (401), for at most `within`: the
/// reply that refused it, or `None` if none did within the bound.
async fn refused_within(account: &Account, path: &str, within: Duration) -> Option<Reply> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let reply = account.get(path).await;
        if reply.status == 401 {
            return Some(reply);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Uses `account`'s token on `service` until the cache answers it (a hit is counted).
async fn cached_on(service: &TestService, account: &Account, path: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut hits = metric(service, "pgbridge_session_cache_hits_total").await;
    for n in 0.. {
        let reply = on(service, account).get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let now = metric(service, "pgbridge_session_cache_hits_total").await;
        if n > 0 && now > hits {
            return;
        }
        hits = now;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cache never answered"
        );
    }
}

async fn log_in(service: &TestService, username: &str) -> Account {
    let request = http::Request::post("/sessions")
        .header("Content-Type", "application/json")
        .body(json!({"username": username, "password": format!("{username} password")}).to_string())
        .expect("request");
    let reply = send_as_is(service.addr, request).await.expect("log in");
    assert_eq!(reply.status, 201, "{}", reply.text());
    Account {
        addr: service.addr,
        token: reply.json()["token"].as_str().expect("token").to_owned(),
    }
}

#[tokio::test]
async fn a_logout_on_one_service_stops_the_token_on_the_other_within_a_second() {
    let (a, b) = two_services(|_| {}).await;
    let alice = Account::new(a.addr, "alice").await;
    let note = format!("/notes/{}", alice.create("shared").await);
    cached_on(&a, &alice, &note).await;
    cached_on(&b, &alice, &note).await;
    for path in ["/notes", "/accounts/me"] {
        assert_eq!(on(&b, &alice).get(path).await.status, 200, "{path}");
    }

    let logout = alice.send("DELETE", "/sessions/current", None, &[]).await;
    assert_eq!(logout.status, 204, "{}", logout.text());
    // The service that logged out forgets it before answering.
    assert_401(
        &alice.get(&note).await,
        "the token on A right after its logout",
    );
    let refused = refused_within(&on(&b, &alice), &note, REVOCATION_BOUND)
        .await
        .expect("B refused the logged-out token within 1 s");
    assert_401(&refused, "the token on B after the logout on A");
    for path in ["/notes", "/accounts/me", &note] {
        assert_401(&on(&b, &alice).get(path).await, path);
    }
    assert!(metric(&b, "pgbridge_session_cache_invalidations_total").await >= 1.0);
}

#[tokio::test]
async fn sessions_ended_in_sql_or_by_the_cap_stop_on_every_service_within_a_second() {
    let (a, b) = two_services(|c| c.session_max_per_account = 1).await;
    let cases = [
        "DELETE FROM sessions WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
        "UPDATE sessions SET revoked_at = now() WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
        "UPDATE sessions SET expires_at = now() WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
        // An account deleted: the foreign key's cascade deletes its sessions (and notes).
        "DELETE FROM accounts WHERE id = \
           (SELECT account_id FROM sessions WHERE token_hash = sha256(convert_to($1, 'UTF8')))",
    ];
    let admin = connect(&a.database_url).await;
    for (n, sql) in cases.iter().enumerate() {
        let user = Account::new(a.addr, &format!("user{n}")).await;
        let note = format!("/notes/{}", user.create("x").await);
        cached_on(&a, &user, &note).await;
        cached_on(&b, &user, &note).await;
        let changed = admin.execute(*sql, &[&user.token]).await.unwrap();
        assert_eq!(changed, 1, "{sql}");
        for service in [&a, &b] {
            let refused = refused_within(&on(service, &user), &note, REVOCATION_BOUND)
                .await
                .unwrap_or_else(|| panic!("{sql}: still accepted after 1 s"));
            assert_401(&refused, sql);
        }
    }

    // A login past SESSION_MAX_PER_ACCOUNT (1 here) revokes the older session.
    let first = Account::new(a.addr, "capped").await;
    let note = format!("/notes/{}", first.create("x").await);
    cached_on(&b, &first, &note).await;
    let second = log_in(&a, "capped").await;
    assert_401(&first.get(&note).await, "the capped token on A at once");
    let refused = refused_within(&on(&b, &first), &note, REVOCATION_BOUND)
        .await
        .expect("B refused the capped token within 1 s");
    assert_401(&refused, "the capped token on B");
    assert_eq!(on(&b, &second).get(&note).await.status, 200);
}

#[tokio::test]
async fn revocations_while_the_listen_connection_is_down_are_honoured() {
    let service = start_live(|_| {}, WAIT).await;
    wait_listening(&service).await;
    let cache = cache(&service);
    let asked_during = Account::new(service.addr, "during").await;
    let asked_after = Account::new(service.addr, "after").await;
    let untouched = Account::new(service.addr, "untouched").await;
    let note = format!("/notes/{}", asked_during.create("x").await);
    let other = format!("/notes/{}", asked_after.create("x").await);
    let own = format!("/notes/{}", untouched.create("x").await);
    cached_on(&service, &asked_during, &note).await;
    cached_on(&service, &asked_after, &other).await;
    cached_on(&service, &untouched, &own).await;

    // Keep the listener from coming back (existing connections stay; `admin` is one),
    // then cut it.
    let admin = connect(&service.database_url).await;
    let database: String = admin
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let cluster = connect(&Cluster::shared().await.admin_url()).await;
    cluster
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS false"
        ))
        .await
        .unwrap();
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'pgbridge-listener' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    let deadline = tokio::time::Instant::now() + WAIT;
    while service.state.apps.notes.listener.is_connected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the loss was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Revoked while nobody listens: the notices are lost.
    for account in [&asked_during, &asked_after] {
        let changed = admin
            .execute(
                "UPDATE sessions SET revoked_at = now() \
                 WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
                &[&account.token],
            )
            .await
            .unwrap();
        assert_eq!(changed, 1);
    }
    // Refused at once: without LISTEN the cache is not trusted and the database decides.
    assert_401(&asked_during.get(&note).await, "revoked during the outage");
    assert_401(
        &asked_during.get("/accounts/me").await,
        "the same, via authenticate",
    );
    assert_eq!(
        untouched.get(&own).await.status,
        200,
        "live tokens still work"
    );
    assert!(cache.is_empty(), "nothing is kept while LISTEN is down");

    cluster
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS true"
        ))
        .await
        .unwrap();
    wait_listening(&service).await;
    assert_401(
        &asked_after.get(&other).await,
        "revoked during the outage, asked after",
    );
    assert_401(&asked_during.get(&note).await, "still refused");
    cached_on(&service, &untouched, &own).await;
}

/// Sends SIGCONT to a stopped backend when dropped, whatever the test's outcome.
struct Stopped(i32);

impl Stopped {
    fn signal(pid: i32, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        Self::signal(self.0, "-CONT");
    }
}

#[tokio::test]
async fn a_listen_connection_that_stops_answering_is_not_trusted_past_its_lease() {
    let (a, b) = two_services(|_| {}).await;
    let alice = Account::new(a.addr, "alice").await;
    let note = format!("/notes/{}", alice.create("x").await);
    cached_on(&b, &alice, &note).await;

    // B's LISTEN backend stops, its socket open: nothing tells B the connection is dead,
    // and the revocation's notice never reaches it.
    let admin = connect(&b.database_url).await;
    let pids: Vec<i32> = admin
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name = 'pgbridge-listener' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let _stopped: Vec<Stopped> = pids
        .iter()
        .map(|pid| {
            Stopped::signal(*pid, "-STOP");
            Stopped(*pid)
        })
        .collect();

    let changed = admin
        .execute(
            "UPDATE sessions SET revoked_at = now() \
             WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
            &[&alice.token],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let refused = refused_within(&on(&b, &alice), &note, REVOCATION_BOUND)
        .await
        .expect("B refused the revoked token within its lease");
    assert_401(&refused, "B, its LISTEN connection silent");
    // A's lease may end a little later than B's (its last ping was answered later).
    let refused = refused_within(&alice, &note, REVOCATION_BOUND)
        .await
        .expect("A refused the revoked token within its lease");
    assert_401(&refused, "A, its LISTEN connection silent");
}

#[tokio::test]
async fn the_cache_stays_off_until_the_sessions_trigger_is_installed() {
    let service = common::service::start(|_| {}).await;
    let cache = cache(&service);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !service.state.apps.notes.listener.is_connected() {
        assert!(tokio::time::Instant::now() < deadline, "never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !cache.is_trusted(),
        "listening, but no trigger would ever tell it of a revocation"
    );
    pgbridge::db::migrate::Migrator::embedded()
        .expect("embedded migrations")
        .run_url(&service.database_url)
        .await
        .expect("migrate");
    wait_listening(&service).await;
    let alice = Account::new(service.addr, "alice").await;
    let note = format!("/notes/{}", alice.create("x").await);
    cached_on(&service, &alice, &note).await;
}

#[tokio::test]
async fn the_cache_keeps_no_more_sessions_than_its_size() {
    let service = start_live(|c| c.session_cache_size = 3, WAIT).await;
    wait_listening(&service).await;
    let first = Account::new(service.addr, "many").await;
    let note = format!("/notes/{}", first.create("x").await);
    let mut tokens = vec![first];
    for _ in 0..7 {
        tokens.push(log_in(&service, "many").await);
    }
    for _ in 0..2 {
        for account in &tokens {
            assert_eq!(account.get(&note).await.status, 200);
            assert!(cache(&service).len() <= 3, "{}", cache(&service).len());
        }
    }
    assert!(metric(&service, "pgbridge_session_cache_entries").await <= 3.0);
    assert_eq!(
        metric(&service, "pgbridge_session_cache_capacity").await,
        3.0
    );

    // And SESSION_CACHE_SIZE=0 turns it off: every request looks its session up.
    let off = start_on(service.database_url.clone(), |c| c.session_cache_size = 0).await;
    assert!(off.state.db.extension::<Arc<SessionCache>>().is_none());
    assert_eq!(on(&off, &tokens[0]).get(&note).await.status, 200);
    assert!(
        !get(off.addr, "/metrics")
            .await
            .text()
            .contains("session_cache")
    );
}

#[tokio::test]
async fn an_event_stream_of_a_revoked_session_ends_on_the_other_service() {
    let heartbeat = Duration::from_millis(200);
    let (a, b) = two_services(move |c| c.sse_heartbeat_ms = heartbeat.as_millis() as u64).await;
    let alice = Account::new(a.addr, "alice").await;
    let bearer = format!("Bearer {}", alice.token);
    let mut stream =
        sse::open_with(b.addr, "/notes/events", None, &[("Authorization", &bearer)]).await;
    assert_eq!(stream.status, 200);
    // Heartbeats pass, answered by the cache (no lookup per heartbeat).
    let hits = metric(&b, "pgbridge_session_cache_hits_total").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&b, "pgbridge_session_cache_hits_total").await < hits + 2.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat hit the cache"
        );
        assert!(stream.next_event(heartbeat).await.is_none() && !stream.ended);
    }

    let logout = alice.send("DELETE", "/sessions/current", None, &[]).await;
    assert_eq!(logout.status, 204);
    assert!(
        stream.ends_within(heartbeat + REVOCATION_BOUND).await,
        "the stream on B ended within a heartbeat and the revocation bound"
    );
}

#[tokio::test]
#[cfg_attr(
    skip_pgbouncer,
    ignore = "SKIPPED: needs pgbouncer: apt-get install pgbouncer"
)]
async fn revocations_reach_services_behind_a_transaction_pooler() {
    let cluster = Cluster::shared().await;
    let direct = cluster.create_database().await;
    if direct.contains("sslmode=") {
        // The harness's PgBouncer speaks plain TCP to the server, which here is TLS-only.
        eprintln!("skipped: the test cluster requires TLS (PGBRIDGE_TEST_TLS)");
        return;
    }
    pgbridge::db::migrate::Migrator::embedded()
        .expect("embedded migrations")
        .run_url(&direct)
        .await
        .expect("migrate");
    let bouncer = common::pgbouncer::PgBouncer::start(common::standby::port_of(&direct), 4).await;
    let database = direct.rsplit('/').next().unwrap().to_owned();
    let through = {
        let (pooled, direct) = (bouncer.url(&database), direct.clone());
        move |c: &mut Config| {
            c.database_url = pooled.clone();
            c.db_pool_mode = pgbridge::db::PoolMode::Transaction;
            c.events_database_url = Some(direct.clone());
            c.migrate_database_url = Some(direct.clone());
        }
    };
    let a = start_on(direct.clone(), through.clone()).await;
    let b = start_on(direct.clone(), through).await;
    wait_listening(&a).await;
    wait_listening(&b).await;

    let alice = Account::new(a.addr, "alice").await;
    let note = format!("/notes/{}", alice.create("pooled").await);
    cached_on(&a, &alice, &note).await;
    cached_on(&b, &alice, &note).await;
    let logout = alice.send("DELETE", "/sessions/current", None, &[]).await;
    assert_eq!(logout.status, 204);
    assert_401(&alice.get(&note).await, "A, at once");
    let refused = refused_within(&on(&b, &alice), &note, REVOCATION_BOUND)
        .await
        .expect("B refused the logged-out token within 1 s");
    assert_401(&refused, "B, through the pooler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_served_by_a_standby_stop_with_the_session_too() {
    let primary = Cluster::start_private().await;
    let direct = primary.create_database().await;
    pgbridge::db::migrate::Migrator::embedded()
        .expect("embedded migrations")
        .run_url(&direct)
        .await
        .expect("migrate");
    let mut standby = common::standby::Standby::start(common::standby::port_of(&direct)).await;
    let standby_url = standby.url(direct.rsplit('/').next().unwrap());
    let a = start_on(direct.clone(), |_| {}).await;
    // B reads from the standby; its LISTEN stays on the primary (EVENTS_DATABASE_URL unset:
    // DATABASE_URL).
    let b = start_on(direct.clone(), |c| {
        c.database_read_url = Some(standby_url.clone());
        c.read_max_lag_ms = 60_000;
    })
    .await;
    wait_listening(&a).await;
    wait_listening(&b).await;
    let alice = Account::new(a.addr, "alice").await;
    let note = format!("/notes/{}", alice.create("replicated").await);
    standby.catch_up(&direct).await;

    // Until B's router uses the standby, and then once more so that the cache answers.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = on(&b, &alice).get(&note).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        if reply.header("pgbridge-served-by") == Some("standby") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby was never used"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cached_on(&b, &alice, &note).await;

    let logout = alice.send("DELETE", "/sessions/current", None, &[]).await;
    assert_eq!(logout.status, 204);
    let refused = refused_within(&on(&b, &alice), &note, REVOCATION_BOUND)
        .await
        .expect("B refused the logged-out token within 1 s");
    assert_401(&refused, "a standby read after the logout");
    standby.stop();
}
