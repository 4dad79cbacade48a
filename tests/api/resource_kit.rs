//! The resource kit's promise, kept by a resource that is not in the product: one
//! migration (`resource_kit/gadgets.sql`), one module (`resource_kit/gadgets.rs`, under 250
//! lines), one test file (this one) and one line in a route table (the `extra` routes the
//! test mounts beside the service's own) make an owned resource with list/get/create/
//! patch/delete, conditional requests, idempotency keys, owner isolation and a live feed —
//! documented in the API document, on the process's one `LISTEN` connection.

use crate::common;

#[path = "resource_kit/gadgets.rs"]
mod gadgets;

use std::time::Duration;

use common::resource::{self as kit, Owned};
use common::service::{TestService, connect, start_with_resource};
use gadgets::Gadgets;
use serde_json::json;

async fn service() -> (TestService, Owned) {
    let service = start_with_resource(
        include_str!("resource_kit/gadgets.sql"),
        pgbridge::resource::routes::<Gadgets>(),
        Duration::from_secs(10),
    )
    .await;
    let owned = Owned {
        addr: service.addr,
        path: "/gadgets",
        noun: "gadget",
        sample: json!({"title": "first", "done": false}),
        change: json!({"done": true}),
    };
    (service, owned)
}

#[tokio::test]
async fn crud() {
    kit::crud(&service().await.1).await;
}

#[tokio::test]
async fn conditional_requests() {
    kit::conditional(&service().await.1).await;
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_route() {
    let (_service, owned) = service().await;
    kit::idempotency(&owned).await;
    // The same key on another resource records its own response.
    let alice = owned.account("idem").await;
    let key = [("Idempotency-Key", "kit-retry-1")];
    let note = alice
        .send("POST", "/notes", Some(json!({"title": "n"})), &key)
        .await;
    assert_eq!(note.status, 201, "{}", note.text());
    assert!(note.header("idempotent-replayed").is_none());
}

#[tokio::test]
async fn owners_are_isolated() {
    kit::owner_isolation(&service().await.1).await;
}

#[tokio::test]
async fn the_live_feed_shares_the_one_listen_connection() {
    let (service, owned) = service().await;
    kit::live_feed(&owned).await;
    let listeners: i64 = connect(&service.database_url)
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'pgbridge-listener'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(listeners, 1, "one LISTEN connection for notes and gadgets");
    // Notes still arrive on their own feed, with their own names.
    let mut notes = common::sse::open(service.addr, "/notes/events", None).await;
    let alice = common::accounts::Account::new(service.addr, "harness").await;
    let id = alice.create("a note").await;
    let event = notes
        .next_event(Duration::from_secs(10))
        .await
        .expect("a note event");
    assert_eq!(event.data["note_id"], id, "{:?}", event.data);
}

#[tokio::test]
async fn every_bad_field_is_named_and_the_api_document_has_it() {
    let (service, owned) = service().await;
    let alice = owned.account("input").await;
    let bad = alice
        .send(
            "POST",
            "/gadgets",
            Some(json!({"title": "  ", "done": "yes", "colour": 1})),
            &[],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text());
    let mut fields: Vec<String> = bad.json()["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    assert_eq!(fields, ["colour", "done", "title"]);
    let nul = alice
        .send("POST", "/gadgets", Some(json!({"title": "a\u{0}"})), &[])
        .await;
    assert_eq!(nul.status, 422);
    let index = common::http::get(service.addr, "/").await.json();
    assert!(
        index.to_string().contains("GET|PATCH|DELETE /gadgets/{id}"),
        "{index}"
    );
    // The routes document themselves in the served /openapi.json: no hand-written JSON.
    let doc = common::http::get(service.addr, "/openapi.json")
        .await
        .json();
    for (path, method, id) in [
        ("/gadgets", "get", "listGadgets"),
        ("/gadgets", "post", "createGadget"),
        ("/gadgets/{id}", "get", "getGadget"),
        ("/gadgets/{id}", "patch", "patchGadget"),
        ("/gadgets/{id}", "delete", "deleteGadget"),
        ("/gadgets/events", "get", "gadgetEvents"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["operationId"], id,
            "{method} {path}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    let gadget = &schemas["Gadget"]["properties"];
    assert!(
        gadget["title"].is_object() && gadget["done"].is_object(),
        "{gadget}"
    );
    assert_eq!(schemas["NewGadget"]["additionalProperties"], false);
    assert_eq!(
        schemas["NewGadget"]["required"],
        json!(["title"]),
        "done has a default"
    );
    assert_eq!(
        schemas["NewGadget"]["properties"]["done"]["type"],
        json!(["boolean", "null"]),
        "null resets done"
    );
    assert!(schemas["GadgetPatch"].get("required").is_none());
    assert!(schemas["GadgetEvent"]["properties"]["gadget_id"].is_object());
}

#[tokio::test]
async fn old_events_are_pruned_under_the_resources_own_policies() {
    use pgbridge::resource::Resource;
    let (service, owned) = service().await;
    let alice = owned.account("prune").await;
    for _ in 0..3 {
        alice.create_in(owned.path, owned.sample.clone()).await;
    }
    let admin = connect(&service.database_url).await;
    admin
        .batch_execute("UPDATE gadget_events SET at = now() - interval '1 hour'")
        .await
        .unwrap();
    let feed = &Gadgets::SPEC.feed;
    let pruned = pgbridge::resource::feed::replay::prune(
        &service.state.db,
        feed,
        Duration::from_secs(60),
        2,
    )
    .await
    .unwrap();
    assert_eq!(pruned, 3, "in batches of 2");
    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM gadget_events), \
                    (SELECT pruned_through FROM gadget_events_horizon), \
                    (SELECT count(*) FROM gadgets)",
            &[],
        )
        .await
        .unwrap();
    let (left, horizon, gadgets): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((left, gadgets), (0, 3), "the events go, the gadgets stay");
    assert!(horizon >= 3, "the horizon rose past them: {horizon}");
}
