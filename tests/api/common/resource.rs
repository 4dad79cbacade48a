//! What every owned resource of the resource kit does, checked over HTTP for any one of
//! them: list/get/create/patch/delete, conditional requests, idempotency keys, owner
//! isolation and the live feed. A resource's test file calls these with its own names and
//! a valid body, then tests what is its own (its field rules, its filters).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use super::accounts::Account;
use super::sse;

const WAIT: Duration = Duration::from_secs(10);

/// An owned resource under test.
#[derive(Debug, Clone)]
pub struct Owned {
    pub addr: SocketAddr,
    /// `/tasks`.
    pub path: &'static str,
    /// `task`.
    pub noun: &'static str,
    /// A valid body for `POST`.
    pub sample: Value,
    /// A valid merge patch.
    pub change: Value,
}

impl Owned {
    /// An account of its own for this resource's test `who` (signed up if needed).
    pub async fn account(&self, who: &str) -> Account {
        let name = format!("{}-{who}", self.noun.replace('_', "-"));
        Account::new(self.addr, &name[..name.len().min(32)]).await
    }

    fn item(&self, id: i64) -> String {
        format!("{}/{id}", self.path)
    }

    fn collection_key(&self) -> &str {
        self.path.trim_start_matches('/')
    }
}

/// Create (201, `Location`, `ETag`), list, get, patch, delete, and the 404 after.
pub async fn crud(owned: &Owned) {
    let alice = owned.account("crud").await;
    let created = alice
        .send("POST", owned.path, Some(owned.sample.clone()), &[])
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let body = created.json();
    let id = body["id"].as_i64().expect("id");
    assert_eq!(created.header("location"), Some(owned.item(id).as_str()));
    assert_eq!(created.header("etag"), Some("\"v1\""));
    for (field, value) in owned.sample.as_object().expect("an object") {
        assert_eq!(&body[field], value, "{field}");
    }
    let listed = alice.get(owned.path).await;
    assert_eq!(listed.status, 200);
    let page = listed.json();
    assert_eq!(page[owned.collection_key()][0]["id"], id, "{page}");
    assert!(page.get("next_cursor").is_some());
    let shown = alice.get(&owned.item(id)).await;
    assert_eq!((shown.status, shown.json()), (200, body));
    assert!(shown.header("last-modified").is_some());
    let patched = alice
        .send(
            "PATCH",
            &owned.item(id),
            Some(owned.change.clone()),
            &[("If-Match", "\"v1\"")],
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["version"], 2);
    for (field, value) in owned.change.as_object().expect("an object") {
        assert_eq!(&patched.json()[field], value, "{field}");
    }
    let deleted = alice.send("DELETE", &owned.item(id), None, &[]).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(alice.get(&owned.item(id)).await.status, 404);
    assert_eq!(
        alice
            .send("DELETE", &owned.item(id), None, &[])
            .await
            .status,
        404
    );
}

/// `If-None-Match` (304), `If-Match` required on `PATCH` (428) and checked (412).
pub async fn conditional(owned: &Owned) {
    let alice = owned.account("cond").await;
    let id = alice.create_in(owned.path, owned.sample.clone()).await;
    let item = owned.item(id);
    let etag = alice
        .get(&item)
        .await
        .header("etag")
        .map(str::to_owned)
        .expect("ETag");
    let cached = alice
        .send("GET", &item, None, &[("If-None-Match", &etag)])
        .await;
    assert_eq!(cached.status, 304);
    let page_etag = alice
        .get(owned.path)
        .await
        .header("etag")
        .map(str::to_owned)
        .expect("a page's ETag");
    let page = alice
        .send("GET", owned.path, None, &[("If-None-Match", &page_etag)])
        .await;
    assert_eq!(page.status, 304);
    let blind = alice
        .send("PATCH", &item, Some(owned.change.clone()), &[])
        .await;
    assert_eq!(blind.status, 428, "{}", blind.text());
    let stale = alice
        .send(
            "PATCH",
            &item,
            Some(owned.change.clone()),
            &[("If-Match", "\"v9\"")],
        )
        .await;
    assert_eq!(stale.status, 412, "{}", stale.text());
    let done = alice
        .send(
            "PATCH",
            &item,
            Some(owned.change.clone()),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(done.status, 200);
    let late = alice
        .send("DELETE", &item, None, &[("If-Match", &etag)])
        .await;
    assert_eq!(late.status, 412, "a delete against the old version");
}

/// A retried `POST` with the same `Idempotency-Key` gets the first response; another body
/// with that key is a 422.
pub async fn idempotency(owned: &Owned) {
    let alice = owned.account("idem").await;
    let key = [("Idempotency-Key", "kit-retry-1")];
    let first = alice
        .send("POST", owned.path, Some(owned.sample.clone()), &key)
        .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let again = alice
        .send("POST", owned.path, Some(owned.sample.clone()), &key)
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let mut changed = owned.sample.clone();
    if let (Some(body), Some(change)) = (changed.as_object_mut(), owned.change.as_object()) {
        body.extend(change.clone());
    }
    assert_ne!(changed, owned.sample, "the change must change the sample");
    let other = alice.send("POST", owned.path, Some(changed), &key).await;
    assert_eq!(other.status, 422, "{}", other.text());
    assert_eq!(
        other.json()["error"]["fields"][0]["field"],
        "Idempotency-Key"
    );
}

/// Two accounts never see, change or delete each other's items, nor hear of them.
pub async fn owner_isolation(owned: &Owned) {
    let alice = owned.account("alice").await;
    let bob = owned.account("bob").await;
    let mut bobs_feed = sse::open_with(
        owned.addr,
        &format!("{}/events", owned.path),
        None,
        &[("Authorization", &format!("Bearer {}", bob.token))],
    )
    .await;
    assert_eq!(bobs_feed.status, 200);
    let id = alice.create_in(owned.path, owned.sample.clone()).await;
    let item = owned.item(id);
    assert_eq!(bob.get(&item).await.status, 404);
    let page = bob.get(owned.path).await.json();
    assert_eq!(page[owned.collection_key()], json!([]), "{page}");
    let patch = bob
        .send(
            "PATCH",
            &item,
            Some(owned.change.clone()),
            &[("If-Match", "\"v1\"")],
        )
        .await;
    assert_eq!(patch.status, 404);
    assert_eq!(bob.send("DELETE", &item, None, &[]).await.status, 404);
    let one = format!("{}/events?{}={id}", owned.path, owned.noun);
    let theirs = sse::open_with(
        owned.addr,
        &one,
        None,
        &[("Authorization", &format!("Bearer {}", bob.token))],
    )
    .await;
    assert_eq!(theirs.status, 404, "another owner's item on the feed");
    // Bob's own change arrives on his feed; Alice's never did.
    let own = bob.create_in(owned.path, owned.sample.clone()).await;
    let seen = bobs_feed.next_event(WAIT).await.expect("bob's own event");
    assert_eq!(
        seen.data[format!("{}_id", owned.noun)],
        own,
        "{:?}",
        seen.data
    );
    assert_eq!(
        alice.get(&item).await.status,
        200,
        "alice's item is untouched"
    );
}

/// Changes arrive live, in order, as `{noun}` events; `Last-Event-ID` replays what came after.
pub async fn live_feed(owned: &Owned) {
    let alice = owned.account("feed").await;
    let auth = format!("Bearer {}", alice.token);
    let events = format!("{}/events", owned.path);
    let mut live = sse::open_with(owned.addr, &events, None, &[("Authorization", &auth)]).await;
    assert_eq!(live.status, 200);
    assert_eq!(live.content_type.as_deref(), Some("text/event-stream"));
    let id = alice.create_in(owned.path, owned.sample.clone()).await;
    let patched = alice
        .send(
            "PATCH",
            &owned.item(id),
            Some(owned.change.clone()),
            &[("If-Match", "\"v1\"")],
        )
        .await;
    assert_eq!(patched.status, 200);
    assert_eq!(
        alice
            .send("DELETE", &owned.item(id), None, &[])
            .await
            .status,
        204
    );
    let seen = live.take(3, WAIT).await;
    let key = format!("{}_id", owned.noun);
    let kinds: Vec<(&str, i64, i64)> = seen
        .iter()
        .map(|e| {
            let kind = e.data["kind"].as_str().expect("kind");
            (
                kind,
                e.data[&key].as_i64().expect("item id"),
                e.data["version"].as_i64().expect("version"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("created", id, 1), ("updated", id, 2), ("deleted", id, 2)]
    );
    assert!(seen[0].id < seen[1].id && seen[1].id < seen[2].id);
    let mut replay = sse::open_with(
        owned.addr,
        &events,
        Some(seen[0].id),
        &[("Authorization", &auth)],
    )
    .await;
    let again = replay.take(2, WAIT).await;
    assert_eq!((again[0].id, again[1].id), (seen[1].id, seen[2].id));
}
