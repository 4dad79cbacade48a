//! Notes belong to their owner, and Postgres itself enforces it (row-level security):
//! another owner's note is a 404 everywhere, idempotency keys and event streams are per
//! owner, and a revoked token's open stream ends.

use crate::common;

use std::time::Duration;

use common::accounts::{Account, assert_401};
use common::service::{TestService, connect, start_live};
use common::sse;
use pgbridge::apps::notes::events::replay;
use pgbridge::config::Config;
use pgbridge::db::migrate::{EMBEDDED, Migrator};
use pgbridge::db::{Db, DbConfig, Scoped};
use serde_json::json;
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(5);

async fn service(configure: impl FnOnce(&mut Config)) -> TestService {
    start_live(configure, WAIT).await
}

async fn account_id(service: &TestService, username: &str) -> i64 {
    connect(&service.database_url)
        .await
        .query_one("SELECT id FROM accounts WHERE username = $1", &[&username])
        .await
        .unwrap()
        .get(0)
}

async fn titles_of(service: &TestService, owner: i64) -> Vec<String> {
    connect(&service.database_url)
        .await
        .query(
            "SELECT title FROM notes WHERE owner_id = $1 ORDER BY id",
            &[&owner],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The database refuses by itself: SQL with no owner filter at all, run as the service
/// runs it, reads and changes the scope's owner's rows and no others.
#[tokio::test]
async fn the_database_itself_confines_sql_without_an_owner_filter() {
    let service = service(|_| {}).await;
    let alice = Account::new(service.addr, "alice").await;
    let bob = Account::new(service.addr, "bob").await;
    for title in ["a1", "a2"] {
        alice.create(title).await;
    }
    for title in ["b1", "b2", "b3"] {
        bob.create(title).await;
    }
    let (alice_id, bob_id) = (
        account_id(&service, "alice").await,
        account_id(&service, "bob").await,
    );

    let db = Db::connect(&DbConfig::new(service.database_url.clone())).unwrap();
    let scoped = Scoped::begin(db.conn().await.unwrap(), alice_id)
        .await
        .unwrap();
    let rows = scoped.query("SELECT title FROM notes", &[]).await.unwrap();
    let titles: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(titles.len(), 2, "{titles:?}");
    assert!(titles.iter().all(|t| t.starts_with('a')), "{titles:?}");
    let changed = scoped
        .execute("UPDATE notes SET title = 'changed'", &[])
        .await
        .unwrap();
    assert_eq!(changed, 2, "only alice's rows change");
    let events: i64 = scoped
        .query_one("SELECT count(*) FROM note_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 4, "alice's 2 creates and 2 updates only");
    // Writing a row for someone else is refused, not silently done.
    let err = scoped
        .execute(
            "INSERT INTO notes (title, owner_id) VALUES ('planted', $1)",
            &[&bob_id],
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("row-level security"), "{err:?}");
    drop(scoped); // rolled back, with the failed insert

    let scoped = Scoped::begin(db.conn().await.unwrap(), alice_id)
        .await
        .unwrap();
    assert_eq!(
        scoped
            .execute("UPDATE notes SET title = 'changed'", &[])
            .await
            .unwrap(),
        2
    );
    assert_eq!(scoped.execute("DELETE FROM notes", &[]).await.unwrap(), 2);
    scoped.commit().await.unwrap();
    assert_eq!(titles_of(&service, alice_id).await, Vec::<String>::new());
    assert_eq!(titles_of(&service, bob_id).await, ["b1", "b2", "b3"]);

    // The setting ended with the transaction: the same pooled connection, unscoped but in
    // the same role, sees nothing at all.
    let conn = db.conn().await.unwrap();
    conn.client()
        .batch_execute("BEGIN; SET LOCAL ROLE pgbridge_rls")
        .await
        .unwrap();
    let n: i64 = conn
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "no owner set: no rows");
    conn.client().batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn another_owners_note_is_404_everywhere() {
    let service = service(|_| {}).await;
    let alice = Account::new(service.addr, "alice").await;
    let bob = Account::new(service.addr, "bob").await;
    let id = alice.create("alice's secret").await;
    let path = format!("/notes/{id}");
    let never = "/notes/999999";

    for (method, body, headers) in [
        ("GET", None, vec![]),
        ("HEAD", None, vec![]),
        (
            "PATCH",
            Some(json!({"title": "bob was here"})),
            vec![("If-Match", "*")],
        ),
        (
            "PATCH",
            Some(json!({"title": "bob was here"})),
            vec![("If-Match", "\"v1\"")],
        ),
        ("DELETE", None, vec![]),
        ("DELETE", None, vec![("If-Match", "\"v1\"")]),
    ] {
        let theirs = bob.send(method, &path, body.clone(), &headers).await;
        let nobodys = bob.send(method, never, body.clone(), &headers).await;
        assert_eq!(
            theirs.status,
            404,
            "{method} {headers:?}: {}",
            theirs.text()
        );
        assert_eq!(nobodys.status, 404, "{method}");
        if method != "HEAD" {
            assert_eq!(theirs.json()["error"]["code"], "not_found");
        }
    }
    let stream = sse::open_with(
        service.addr,
        &format!("/notes/events?note={id}"),
        None,
        &[("Authorization", &format!("Bearer {}", bob.token))],
    )
    .await;
    assert_eq!(stream.status, 404, "?note= on the event stream");
    let own = sse::open_with(
        service.addr,
        &format!("/notes/events?note={id}"),
        None,
        &[("Authorization", &format!("Bearer {}", alice.token))],
    )
    .await;
    assert_eq!(own.status, 200);

    for list in ["/notes", "/notes?q=secret", "/notes?q=alice"] {
        let reply = bob.get(list).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["notes"], json!([]), "{list}");
        let reply = alice.get(list).await;
        assert_eq!(reply.json()["notes"][0]["id"], id, "{list}");
    }
    let note = alice.get(&path).await;
    assert_eq!(note.status, 200);
    assert_eq!(note.json()["title"], "alice's secret");
    assert_eq!(note.json()["version"], 1, "untouched");
}

#[tokio::test]
async fn two_accounts_racing_on_the_same_note_ids() {
    let service = service(|_| {}).await;
    let alice = Account::new(service.addr, "alice").await;
    let bob = Account::new(service.addr, "bob").await;
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(alice.create(&format!("alice {n}")).await);
    }
    // Bob hammers the very ids alice is updating, at the same moment.
    let attacks = ids.iter().map(|id| {
        let bob = bob.clone();
        let path = format!("/notes/{id}");
        async move {
            let mut statuses = Vec::new();
            for _ in 0..3 {
                statuses.push(bob.get(&path).await.status);
                statuses.push(
                    bob.send(
                        "PATCH",
                        &path,
                        Some(json!({"title": "bob"})),
                        &[("If-Match", "*")],
                    )
                    .await
                    .status,
                );
                statuses.push(bob.send("DELETE", &path, None, &[]).await.status);
            }
            statuses
        }
    });
    let edits = ids.iter().map(|id| {
        let alice = alice.clone();
        let path = format!("/notes/{id}");
        async move {
            let mut statuses = Vec::new();
            for n in 0..3 {
                statuses.push(
                    alice
                        .send(
                            "PATCH",
                            &path,
                            Some(json!({"title": format!("alice edit {n}")})),
                            &[("If-Match", "*")],
                        )
                        .await
                        .status,
                );
            }
            statuses
        }
    });
    let (attacks, edits) = tokio::join!(
        futures_util::future::join_all(attacks),
        futures_util::future::join_all(edits)
    );
    assert!(attacks.iter().flatten().all(|s| *s == 404), "{attacks:?}");
    assert!(edits.iter().flatten().all(|s| *s == 200), "{edits:?}");
    let alice_id = account_id(&service, "alice").await;
    let titles = titles_of(&service, alice_id).await;
    assert_eq!(titles.len(), 10);
    assert!(titles.iter().all(|t| t == "alice edit 2"), "{titles:?}");
    let bob_id = account_id(&service, "bob").await;
    assert!(titles_of(&service, bob_id).await.is_empty());
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_owner() {
    let service = service(|_| {}).await;
    let alice = Account::new(service.addr, "alice").await;
    let bob = Account::new(service.addr, "bob").await;
    let key = [("Idempotency-Key", "same-key")];
    let body = Some(json!({"title": "same body"}));
    let a = alice.send("POST", "/notes", body.clone(), &key).await;
    let b = bob.send("POST", "/notes", body.clone(), &key).await;
    assert_eq!(
        (a.status, b.status),
        (201, 201),
        "{} {}",
        a.text(),
        b.text()
    );
    assert!(
        b.header("idempotent-replayed").is_none(),
        "not alice's response"
    );
    assert_ne!(a.json()["id"], b.json()["id"], "two notes");
    let again = alice.send("POST", "/notes", body, &key).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["id"], a.json()["id"]);

    let db = connect(&service.database_url).await;
    let routes: Vec<String> = db
        .query("SELECT DISTINCT route FROM idempotency_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(routes, ["POST /notes"], "recorded per route");

    // A key recorded on another route (a resource that copies the pattern) never replays
    // on /notes, even for the same owner.
    let alice_id = account_id(&service, "alice").await;
    db.execute(
        "INSERT INTO idempotency_keys (owner_id, route, key, request_hash, status, location, etag, response) \
         VALUES ($1, 'POST /tasks', 'task-key', $2, 201, '/tasks/1', '\"v1\"', '{\"id\": 1}')",
        &[&alice_id, &sha2::Sha256::digest(json!({"title": "t"}).to_string()).to_vec()],
    )
    .await
    .unwrap();
    let fresh = alice
        .send(
            "POST",
            "/notes",
            Some(json!({"title": "t"})),
            &[("Idempotency-Key", "task-key")],
        )
        .await;
    assert_eq!(fresh.status, 201, "{}", fresh.text());
    assert!(
        fresh.header("idempotent-replayed").is_none(),
        "not the /tasks response"
    );
    assert!(fresh.header("location").unwrap().starts_with("/notes/"));
}

#[tokio::test]
async fn streams_deliver_and_replay_only_the_subscribers_notes() {
    let service = service(|_| {}).await;
    let alice = Account::new(service.addr, "alice").await;
    let bob = Account::new(service.addr, "bob").await;
    let as_alice = format!("Bearer {}", alice.token);
    let mut live = sse::open_with(
        service.addr,
        "/notes/events",
        None,
        &[("Authorization", &as_alice)],
    )
    .await;
    assert_eq!(live.status, 200);
    bob.create("bob 1").await;
    let mine = alice.create("alice 1").await;
    bob.create("bob 2").await;
    let event = live.next_event(WAIT).await.expect("alice's event");
    assert_eq!(event.data["note_id"], mine);
    assert!(event.data.get("owner_id").is_none(), "not sent to clients");
    assert!(live.next_event(Duration::from_millis(300)).await.is_none());

    let mut replay = sse::open_with(
        service.addr,
        "/notes/events",
        Some(0),
        &[("Authorization", &as_alice)],
    )
    .await;
    let events = replay.take(1, WAIT).await;
    assert_eq!(events[0].data["note_id"], mine);
    assert!(
        replay
            .next_event(Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_token_revoked_while_its_stream_is_open_ends_the_stream() {
    let service = service(|c| c.sse_heartbeat_ms = 100).await;
    let alice = Account::new(service.addr, "alice").await;
    let other_session = Account::new(service.addr, "alice").await;
    let mut stream = sse::open_with(
        service.addr,
        "/notes/events",
        None,
        &[("Authorization", &format!("Bearer {}", alice.token))],
    )
    .await;
    let mut kept = sse::open_with(
        service.addr,
        "/notes/events",
        None,
        &[("Authorization", &format!("Bearer {}", other_session.token))],
    )
    .await;
    assert_eq!(stream.status, 200);
    assert!(
        !stream.ends_within(Duration::from_millis(300)).await,
        "open"
    );

    let logout = alice.send("DELETE", "/sessions/current", None, &[]).await;
    assert_eq!(logout.status, 204);
    assert!(
        stream.ends_within(WAIT).await,
        "the revoked token's stream ends"
    );
    assert_401(&alice.get("/notes/events").await, "and cannot reopen");
    assert!(
        !kept.ends_within(Duration::from_millis(500)).await,
        "the account's other session is unaffected"
    );
}

#[tokio::test]
async fn notes_from_before_accounts_go_to_the_legacy_account() {
    let url = common::pg::Cluster::shared().await.create_database().await;
    let before: Vec<_> = EMBEDDED
        .iter()
        .copied()
        .filter(|(name, _)| *name < "20261127000100")
        .collect();
    Migrator::from_files(before)
        .unwrap()
        .run_url(&url)
        .await
        .unwrap();
    let db = connect(&url).await;
    db.batch_execute("INSERT INTO notes (title) VALUES ('old one')")
        .await
        .unwrap();
    Migrator::embedded().unwrap().run_url(&url).await.unwrap();
    let row = db
        .query_one(
            "SELECT a.username, a.password_hash IS NULL FROM notes n JOIN accounts a ON a.id = n.owner_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "~legacy");
    assert!(row.get::<_, bool>(1), "the legacy account cannot log in");
    let owners: i64 = db
        .query_one(
            "SELECT count(*) FROM note_events e JOIN notes n ON n.owner_id = e.owner_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owners, 1, "its event is the legacy account's too");
}

/// The same rules when the service is not a superuser but the tables' owner with only
/// `CREATEROLE`: the migration can create and join the role, and `FORCE ROW LEVEL
/// SECURITY` confines even the owner's own unscoped queries.
#[tokio::test]
async fn a_non_superuser_table_owner_is_confined_too() {
    let url = common::pg::Cluster::shared().await.create_database().await;
    // The database is the URL's last path segment; over TLS a query (`?sslmode=…&sslrootcert=
    // /path/…`) follows it, and is kept for the owner's URL.
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let (base, database) = path.rsplit_once('/').unwrap();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    let role = format!("owner_{database}");
    let admin = connect(&url).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN CREATEROLE PASSWORD 'owner password'; \
             ALTER DATABASE \"{database}\" OWNER TO {role}"
        ))
        .await
        .unwrap();
    let owner_url = format!(
        "{}/{database}{query}",
        base.replacen("postgres@", &format!("{role}:owner%20password@"), 1)
    );
    Migrator::embedded()
        .unwrap()
        .run_url(&owner_url)
        .await
        .unwrap();
    let service = common::service::start_on(owner_url.clone(), |_| {}).await;
    let alice = Account::new(service.addr, "alice").await;
    let bob = Account::new(service.addr, "bob").await;
    let id = alice.create("alice's").await;
    assert_eq!(alice.get(&format!("/notes/{id}")).await.status, 200);
    assert_eq!(bob.get(&format!("/notes/{id}")).await.status, 404);

    let owner = connect(&owner_url).await;
    let is_super: bool = owner
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!is_super);
    let seen: i64 = owner
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        seen, 0,
        "FORCE: the owner's own unscoped query sees no one's notes"
    );
    let all: i64 = admin
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(all, 1);

    // Pruning runs in no owner's scope, as the owner: the pruning policies let it delete
    // every owner's old events and raise the horizon, and nothing else sees them.
    bob.create("bob's").await;
    let seen: i64 = owner
        .query_one("SELECT count(*) FROM note_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0, "unscoped, not pruning: no one's events");
    let scoped = Scoped::begin(service.state.db.conn().await.unwrap(), 1)
        .await
        .unwrap();
    scoped
        .query_one("SELECT set_config('pgbridge.pruning', 'on', true)", &[])
        .await
        .unwrap();
    let seen: i64 = scoped
        .query_one("SELECT count(*) FROM note_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0, "the scoped role never prunes");
    drop(scoped);
    admin
        .batch_execute("UPDATE note_events SET at = now() - interval '1 hour'")
        .await
        .unwrap();
    let pruned = replay::prune(&service.state.db, Duration::from_secs(60), 1000)
        .await
        .unwrap();
    assert_eq!(pruned, 2, "alice's and bob's events");
    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM note_events), \
                    (SELECT pruned_through FROM note_events_horizon)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    assert!(row.get::<_, i64>(1) > 0);
    // A replay from before the horizon is a reset, read under the policies.
    let mut stream = sse::open_with(
        service.addr,
        "/notes/events",
        Some(0),
        &[("Authorization", &format!("Bearer {}", alice.token))],
    )
    .await;
    let reset = stream.next_event(WAIT).await.expect("a reset event");
    assert_eq!(reset.data["reset"], true, "{:?}", reset.data);
}

/// With `DB_POOL_MODE=transaction` statements run unnamed and learn their parameter types
/// with a prepare; inside a scope that prepare must stay in the scope's transaction. Done
/// in a `BEGIN … COMMIT` of its own (as outside a transaction), its `COMMIT` would end the
/// scope and the statements after it would run unscoped, as the table owner.
#[tokio::test]
async fn a_scope_keeps_its_owner_and_role_with_unnamed_statements() {
    let service = service(|_| {}).await;
    let alice = Account::new(service.addr, "alice").await;
    let bob = Account::new(service.addr, "bob").await;
    alice.create("a1").await;
    bob.create("b1").await;
    let alice_id = account_id(&service, "alice").await;

    let mut config = DbConfig::new(service.database_url.clone());
    config.pool_mode = pgbridge::db::PoolMode::Transaction;
    let db = Db::connect(&config).unwrap();
    let scoped = Scoped::begin(db.conn().await.unwrap(), alice_id)
        .await
        .unwrap();
    // Statement texts this pool has not seen yet: each learns its types first.
    let titles: Vec<String> = scoped
        .query("SELECT title FROM notes WHERE id > $1", &[&0_i64])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(titles, ["a1"]);
    let row = scoped
        .query_one(
            "SELECT current_user::text, current_setting($1), count(*) FROM notes",
            &[&pgbridge::db::ACCOUNT_SETTING],
        )
        .await
        .unwrap();
    let (user, owner, n): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(user, pgbridge::db::RLS_ROLE);
    assert_eq!(owner, alice_id.to_string());
    assert_eq!(n, 1, "alice's note only");
    // The commit answers a WAL position (read-your-writes) in the same round trip.
    let lsn = scoped.commit_lsn().await.unwrap();
    assert!(lsn.0 > 0);
}
