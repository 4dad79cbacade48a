//! The template resource against a real Postgres: every status it answers, and for each
//! bad input, proof that nothing changed.

use crate::common;

use common::http::{Reply, get, send};
use common::service::{TestService, connect, start_migrated};
use serde_json::{Value, json};

fn request(method: &str, path: &str) -> http::request::Builder {
    http::Request::builder().method(method).uri(path)
}

async fn post(service: &TestService, body: Value) -> Reply {
    let req = request("POST", "/notes")
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .unwrap();
    send(service.addr, req).await.unwrap()
}

async fn count(service: &TestService) -> i64 {
    let client = connect(&service.database_url).await;
    client
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn create_read_update_delete() {
    let service = start_migrated(|_| {}).await;
    let created = post(
        &service,
        json!({"title": "First", "body": "hello", "tags": ["a", "b"]}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let note = created.json();
    let id = note["id"].as_i64().unwrap();
    assert_eq!(
        created.header("location"),
        Some(format!("/notes/{id}").as_str())
    );
    assert_eq!(created.header("etag"), Some("\"v1\""));
    assert_eq!(note["version"], 1);
    assert_eq!(note["tags"], json!(["a", "b"]));
    assert!(note["created_at"].as_str().unwrap().ends_with('Z'));

    let fetched = get(service.addr, &format!("/notes/{id}")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json(), note);
    assert_eq!(fetched.header("etag"), Some("\"v1\""));

    // If-None-Match with the current ETag: 304, no body.
    let req = request("GET", &format!("/notes/{id}"))
        .header("If-None-Match", "\"v1\"")
        .body(String::new())
        .unwrap();
    let not_modified = send(service.addr, req).await.unwrap();
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());

    let req = request("PATCH", &format!("/notes/{id}"))
        .header("Content-Type", "application/merge-patch+json")
        .header("If-Match", "\"v1\"")
        .body(json!({"title": "Renamed", "tags": null}).to_string())
        .unwrap();
    let patched = send(service.addr, req).await.unwrap();
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.header("etag"), Some("\"v2\""));
    let patched = patched.json();
    assert_eq!(
        (patched["title"].as_str(), patched["body"].as_str()),
        (Some("Renamed"), Some("hello"))
    );
    assert_eq!(patched["tags"], json!([]));
    assert_eq!(patched["version"], 2);

    let req = request("DELETE", &format!("/notes/{id}"))
        .body(String::new())
        .unwrap();
    assert_eq!(send(service.addr, req).await.unwrap().status, 204);
    let gone = get(service.addr, &format!("/notes/{id}")).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["error"]["code"], "not_found");
    let req = request("DELETE", &format!("/notes/{id}"))
        .body(String::new())
        .unwrap();
    assert_eq!(send(service.addr, req).await.unwrap().status, 404);
}

#[tokio::test]
async fn a_stale_if_match_is_412_and_changes_nothing() {
    let service = start_migrated(|_| {}).await;
    let id = post(&service, json!({"title": "v1"})).await.json()["id"]
        .as_i64()
        .unwrap();
    let patch = |etag: Option<&str>, title: &str| {
        let mut req =
            request("PATCH", &format!("/notes/{id}")).header("Content-Type", "application/json");
        if let Some(etag) = etag {
            req = req.header("If-Match", etag);
        }
        req.body(json!({"title": title}).to_string()).unwrap()
    };
    // Two clients read v1; the first update wins, the second is refused, not lost.
    assert_eq!(
        send(service.addr, patch(Some("\"v1\""), "first"))
            .await
            .unwrap()
            .status,
        200
    );
    let second = send(service.addr, patch(Some("\"v1\""), "second"))
        .await
        .unwrap();
    assert_eq!(second.status, 412);
    assert_eq!(second.json()["error"]["code"], "precondition_failed");
    let missing = send(service.addr, patch(None, "third")).await.unwrap();
    assert_eq!(missing.status, 428);
    assert_eq!(missing.json()["error"]["code"], "precondition_required");
    let note = get(service.addr, &format!("/notes/{id}")).await.json();
    assert_eq!(
        (note["title"].as_str(), note["version"].as_i64()),
        (Some("first"), Some(2))
    );
    // A stale DELETE is refused too.
    let req = request("DELETE", &format!("/notes/{id}"))
        .header("If-Match", "\"v1\"")
        .body(String::new())
        .unwrap();
    assert_eq!(send(service.addr, req).await.unwrap().status, 412);
    assert_eq!(get(service.addr, &format!("/notes/{id}")).await.status, 200);
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_first_result() {
    let service = start_migrated(|_| {}).await;
    let attempt = |body: Value| {
        request("POST", "/notes")
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", "order-7f3a")
            .body(body.to_string())
            .unwrap()
    };
    let first = send(service.addr, attempt(json!({"title": "Once"})))
        .await
        .unwrap();
    assert_eq!(first.status, 201);
    let retry = send(service.addr, attempt(json!({"title": "Once"})))
        .await
        .unwrap();
    assert_eq!(retry.status, 201);
    assert_eq!(retry.json(), first.json());
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(count(&service).await, 1);

    // The same key with another body is refused, and creates nothing.
    let other = send(service.addr, attempt(json!({"title": "Twice"})))
        .await
        .unwrap();
    assert_eq!(other.status, 422);
    assert_eq!(
        other.json()["error"]["fields"][0]["field"],
        "Idempotency-Key"
    );
    assert_eq!(count(&service).await, 1);

    // Concurrent retries still make one note.
    let concurrent = (0..8).map(|_| {
        let req = request("POST", "/notes")
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", "burst")
            .body(json!({"title": "Burst"}).to_string())
            .unwrap();
        send(service.addr, req)
    });
    let replies = futures_util::future::join_all(concurrent).await;
    let ids: Vec<Value> = replies
        .into_iter()
        .map(|r| r.unwrap().json()["id"].clone())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(count(&service).await, 2);
}

#[tokio::test]
async fn listing_pages_filters_and_searches() {
    let service = start_migrated(|_| {}).await;
    for i in 0..7 {
        let tags = if i % 2 == 0 {
            json!(["even"])
        } else {
            json!(["odd"])
        };
        post(&service, json!({"title": format!("note {i}"), "body": if i == 3 { "has 100% of it" } else { "plain" }, "tags": tags})).await;
    }
    // Pages of 3, newest first, with no note twice and none missing.
    let mut seen = Vec::new();
    let mut path = String::from("/notes?limit=3");
    loop {
        let page = get(service.addr, &path).await.json();
        let notes = page["notes"].as_array().unwrap();
        assert!(notes.len() <= 3);
        seen.extend(
            notes
                .iter()
                .map(|n| n["title"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/notes?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).rev().map(|i| format!("note {i}")).collect();
    assert_eq!(seen, expected);

    let even = get(service.addr, "/notes?tag=even").await.json();
    assert_eq!(even["notes"].as_array().unwrap().len(), 4);
    let search = get(service.addr, "/notes?q=100%25").await.json();
    assert_eq!(search["notes"].as_array().unwrap().len(), 1);
    let wildcard = get(service.addr, "/notes?q=%25").await.json();
    assert_eq!(
        wildcard["notes"].as_array().unwrap().len(),
        1,
        "% is matched literally"
    );

    for bad in [
        "/notes?limit=0",
        "/notes?limit=201",
        "/notes?limit=x",
        "/notes?cursor=forged",
        "/notes?cursor=bjE6LTE",
    ] {
        let reply = get(service.addr, bad).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
        assert_eq!(reply.json()["error"]["code"], "bad_request");
    }
    let default = get(service.addr, "/notes").await.json();
    assert_eq!(default["notes"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let service = start_migrated(|_| {}).await;
    let id = post(&service, json!({"title": "Keep me", "tags": ["x"]}))
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    let before = get(service.addr, &format!("/notes/{id}")).await.json();

    let cases: Vec<(http::Request<String>, u16, &str)> = vec![
        (request("POST", "/notes").header("Content-Type", "application/json").body("{\"title\": ".into()).unwrap(), 400, "bad_request"),
        (request("POST", "/notes").header("Content-Type", "text/plain").body("{\"title\":\"x\"}".into()).unwrap(), 415, "unsupported_media_type"),
        (request("POST", "/notes").body("{\"title\":\"x\"}".into()).unwrap(), 415, "unsupported_media_type"),
        (request("POST", "/notes").header("Content-Type", "application/json").body(json!({"title": ""}).to_string()).unwrap(), 422, "invalid_fields"),
        (request("POST", "/notes").header("Content-Type", "application/json").body(json!({"title": "x".repeat(201)}).to_string()).unwrap(), 422, "invalid_fields"),
        (request("POST", "/notes").header("Content-Type", "application/json").body(json!({"title": "x", "tags": (0..11).map(|i| i.to_string()).collect::<Vec<_>>()}).to_string()).unwrap(), 422, "invalid_fields"),
        (request("POST", "/notes").header("Content-Type", "application/json").body(json!({"title": "x", "body": "y".repeat(2_000_000)}).to_string()).unwrap(), 413, "payload_too_large"),
        (request("PATCH", &format!("/notes/{id}")).header("Content-Type", "application/json").header("If-Match", "\"v1\"").body(json!({"title": ""}).to_string()).unwrap(), 422, "invalid_fields"),
        (request("PATCH", &format!("/notes/{id}")).header("Content-Type", "application/json").header("If-Match", "\"v1\"").body("nope".into()).unwrap(), 400, "bad_request"),
        (request("PATCH", "/notes/999999").header("Content-Type", "application/json").header("If-Match", "\"v1\"").body("{}".into()).unwrap(), 404, "not_found"),
        (request("GET", "/notes/not-a-number").body(String::new()).unwrap(), 404, "not_found"),
        (request("PUT", &format!("/notes/{id}")).body(String::new()).unwrap(), 405, "method_not_allowed"),
    ];
    for (req, status, code) in cases {
        let label = format!("{} {}", req.method(), req.uri());
        let reply = send(service.addr, req).await.unwrap();
        assert_eq!(reply.status, status, "{label}: {}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{label}"
        );
        assert_eq!(reply.json()["error"]["code"], code, "{label}");
        assert!(reply.json()["error"]["message"].is_string(), "{label}");
    }
    let invalid = post(
        &service,
        json!({"title": "", "tags": ["a", "a"], "color": "red"}),
    )
    .await
    .json();
    let mut fields: Vec<&str> = invalid["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        ["color", "tags", "title"],
        "every bad field is named"
    );

    assert_eq!(
        get(service.addr, &format!("/notes/{id}")).await.json(),
        before,
        "the note is unchanged"
    );
    assert_eq!(count(&service).await, 1, "no note was created");
}

#[tokio::test]
async fn injection_strings_are_stored_verbatim() {
    let service = start_migrated(|_| {}).await;
    let nasty = [
        "'; DROP TABLE notes; --",
        "\" OR 1=1 --",
        "Robert'); DELETE FROM notes WHERE ('1'='1",
        "$1 $2 \\x00 %s %_ \u{202e}",
    ];
    for text in nasty {
        let created = post(
            &service,
            json!({"title": text, "body": text, "tags": [text]}),
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.text());
        let note = get(service.addr, created.header("location").unwrap())
            .await
            .json();
        assert_eq!(
            (note["title"].as_str(), note["body"].as_str()),
            (Some(text), Some(text))
        );
        assert_eq!(note["tags"], json!([text]));
    }
    assert_eq!(count(&service).await, nasty.len() as i64);
    let found = get(service.addr, "/notes?q=DROP%20TABLE").await.json();
    assert_eq!(found["notes"].as_array().unwrap().len(), 1);
}

fn with_headers(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Request<String> {
    let mut req = request(method, path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(body.to_owned()).unwrap()
}

#[tokio::test]
async fn nul_characters_are_refused_naming_the_field() {
    let service = start_migrated(|_| {}).await;
    let created = post(&service, json!({"title": "clean"})).await;
    let id = created.json()["id"].as_i64().unwrap();
    let json_ct = [("Content-Type", "application/json")];
    let cases: Vec<(http::Request<String>, &str)> = vec![
        (
            with_headers("POST", "/notes", &json_ct, r#"{"title":"a\u0000b"}"#),
            "title",
        ),
        (
            with_headers(
                "POST",
                "/notes",
                &json_ct,
                r#"{"title":"a","body":"\u0000"}"#,
            ),
            "body",
        ),
        (
            with_headers(
                "POST",
                "/notes",
                &json_ct,
                r#"{"title":"a","tags":["x\u0000"]}"#,
            ),
            "tags",
        ),
        (
            with_headers(
                "PATCH",
                &format!("/notes/{id}"),
                &[("Content-Type", "application/json"), ("If-Match", "\"v1\"")],
                r#"{"title":"\u0000"}"#,
            ),
            "title",
        ),
        (
            with_headers(
                "PATCH",
                &format!("/notes/{id}"),
                &[("Content-Type", "application/json"), ("If-Match", "\"v1\"")],
                r#"{"tags":["\u0000"]}"#,
            ),
            "tags",
        ),
    ];
    for (req, field) in cases {
        let label = format!("{} {} {}", req.method(), req.uri(), req.body());
        let reply = send(service.addr, req).await.unwrap();
        assert_eq!(reply.status, 422, "{label}: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["error"]["fields"][0]["field"], field, "{label}");
        assert!(
            body["error"]["fields"][0]["message"]
                .as_str()
                .unwrap()
                .contains("NUL")
        );
    }
    for path in ["/notes?q=%00", "/notes?tag=a%00", "/notes?q=x&tag=%00"] {
        let reply = get(service.addr, path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        assert_eq!(reply.json()["error"]["code"], "bad_request");
    }
    let cursor = base64_url("n1:1\u{0}");
    assert_eq!(
        get(service.addr, &format!("/notes?cursor={cursor}"))
            .await
            .status,
        400
    );
    assert_eq!(count(&service).await, 1);
    let note = get(service.addr, &format!("/notes/{id}")).await.json();
    assert_eq!(
        (note["title"].as_str(), note["version"].as_i64()),
        (Some("clean"), Some(1))
    );
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn a_path_that_does_not_decode_never_reaches_the_collection() {
    let service = start_migrated(|_| {}).await;
    post(&service, json!({"title": "one"})).await;
    for method in ["POST", "GET", "PATCH", "DELETE", "PUT"] {
        for path in ["/notes/%FF", "/notes/%C3%28"] {
            let req = with_headers(
                method,
                path,
                &[("Content-Type", "application/json"), ("If-Match", "*")],
                r#"{"title":"sneaky"}"#,
            );
            let reply = send(service.addr, req).await.unwrap();
            // POST and PUT are not served on `/notes/{id}` at all: the router answers 405
            // before the parameter is looked at. Either way the collection is never reached.
            let expected = if matches!(method, "POST" | "PUT") {
                (405, "method_not_allowed")
            } else {
                (400, "bad_request")
            };
            assert_eq!(
                reply.status,
                expected.0,
                "{method} {path}: {}",
                reply.text()
            );
            assert_eq!(reply.json()["error"]["code"], expected.1);
        }
    }
    assert_eq!(count(&service).await, 1, "nothing was created");
}

#[tokio::test]
async fn etags_are_opaque_strings_in_lists() {
    let service = start_migrated(|_| {}).await;
    let id = post(&service, json!({"title": "t"})).await.json()["id"]
        .as_i64()
        .unwrap();
    let path = format!("/notes/{id}");
    let patch = |if_match: &[&str], title: &str| {
        let mut req = request("PATCH", &path).header("Content-Type", "application/json");
        for value in if_match {
            req = req.header("If-Match", *value);
        }
        req.body(json!({"title": title}).to_string()).unwrap()
    };
    for refused in [
        &["\"v01\""][..],
        &["W/\"v1\""],
        &["\"V1\""],
        &["\"v2\", \"v3\""],
    ] {
        let reply = send(service.addr, patch(refused, "no")).await.unwrap();
        assert_eq!(reply.status, 412, "{refused:?}: {}", reply.text());
    }
    for malformed in [&["v1"][..], &["\"v1"], &["*, \"v1\""]] {
        let reply = send(service.addr, patch(malformed, "no")).await.unwrap();
        assert_eq!(reply.status, 400, "{malformed:?}: {}", reply.text());
        assert_eq!(reply.json()["error"]["code"], "bad_request");
    }
    assert_eq!(
        get(service.addr, &path).await.json()["version"],
        1,
        "nothing changed"
    );
    let reply = send(service.addr, patch(&["\"v9\", \"v1\""], "listed"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = send(service.addr, patch(&["\"v9\"", "\"v2\""], "two lines"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = send(service.addr, patch(&["*"], "any")).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("etag"), Some("\"v4\""));
    // If-None-Match compares weakly.
    let reply = send(
        service.addr,
        with_headers("GET", &path, &[("If-None-Match", "\"x\", W/\"v4\"")], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 304);
    assert_eq!(reply.header("etag"), Some("\"v4\""));
    let reply = send(
        service.addr,
        with_headers("GET", &path, &[("If-None-Match", "\"v04\"")], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    // A stale DELETE with a list is refused, a current one goes through.
    let reply = send(
        service.addr,
        with_headers("DELETE", &path, &[("If-Match", "\"v1\", \"v3\"")], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 412);
    let reply = send(
        service.addr,
        with_headers("DELETE", &path, &[("If-Match", "\"v1\", \"v4\"")], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 204);
}

#[tokio::test]
async fn preconditions_on_reads_and_on_the_collection() {
    let service = start_migrated(|_| {}).await;
    let id = post(&service, json!({"title": "t"})).await.json()["id"]
        .as_i64()
        .unwrap();
    let path = format!("/notes/{id}");
    // If-Match on a GET: 412 when it does not match (RFC 9110 §13.1.1).
    let reply = send(
        service.addr,
        with_headers("GET", &path, &[("If-Match", "\"v2\"")], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 412);
    assert_eq!(reply.json()["error"]["code"], "precondition_failed");
    let reply = send(
        service.addr,
        with_headers("GET", &path, &[("If-Match", "\"v1\"")], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    // If-None-Match: * on POST /notes: the collection exists, so 412 and nothing created.
    let json_ct = ("Content-Type", "application/json");
    let reply = send(
        service.addr,
        with_headers(
            "POST",
            "/notes",
            &[json_ct, ("If-None-Match", "*")],
            r#"{"title":"x"}"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 412, "{}", reply.text());
    assert_eq!(count(&service).await, 1);
    let reply = send(
        service.addr,
        with_headers(
            "POST",
            "/notes",
            &[json_ct, ("If-Match", "\"nope\"")],
            r#"{"title":"x"}"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 412, "{}", reply.text());
    assert_eq!(count(&service).await, 1);
    // If-Match with the collection's ETag (its first page) or * holds.
    let list_etag = get(service.addr, "/notes")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let reply = send(
        service.addr,
        with_headers(
            "POST",
            "/notes",
            &[json_ct, ("If-Match", &list_etag)],
            r#"{"title":"x"}"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = send(
        service.addr,
        with_headers(
            "POST",
            "/notes",
            &[json_ct, ("If-Match", "*")],
            r#"{"title":"y"}"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(count(&service).await, 3);
}

#[tokio::test]
async fn caching_headers_and_revalidation() {
    let service = start_migrated(|_| {}).await;
    let created = post(&service, json!({"title": "t"})).await;
    assert_eq!(created.header("cache-control"), Some("private, no-cache"));
    let id = created.json()["id"].as_i64().unwrap();
    let path = format!("/notes/{id}");

    let note = get(service.addr, &path).await;
    assert_eq!(note.header("cache-control"), Some("private, no-cache"));
    let last_modified = note.header("last-modified").unwrap().to_owned();
    assert!(last_modified.ends_with(" GMT"), "{last_modified}");
    // If-Modified-Since at Last-Modified: 304; a day earlier: 200; If-None-Match wins.
    let reply = send(
        service.addr,
        with_headers("GET", &path, &[("If-Modified-Since", &last_modified)], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 304);
    assert_eq!(reply.header("etag"), Some("\"v1\""));
    assert_eq!(reply.header("cache-control"), Some("private, no-cache"));
    let earlier = "Thu, 01 Jan 2015 00:00:00 GMT";
    let reply = send(
        service.addr,
        with_headers("GET", &path, &[("If-Modified-Since", earlier)], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let reply = send(
        service.addr,
        with_headers(
            "GET",
            &path,
            &[
                ("If-Modified-Since", &last_modified),
                ("If-None-Match", "\"v0\""),
            ],
            "",
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        reply.status, 200,
        "If-Modified-Since is ignored when If-None-Match is sent"
    );
    let reply = send(
        service.addr,
        with_headers("GET", &path, &[("If-Modified-Since", "not a date")], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);

    // Lists: an ETag, 304 on revalidation, a new ETag once the page changes.
    let page = get(service.addr, "/notes").await;
    assert_eq!(page.header("cache-control"), Some("private, no-cache"));
    let etag = page.header("etag").unwrap().to_owned();
    let reply = send(
        service.addr,
        with_headers("GET", "/notes", &[("If-None-Match", &etag)], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 304);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("etag"), Some(etag.as_str()));
    let req = with_headers(
        "PATCH",
        &path,
        &[("Content-Type", "application/json"), ("If-Match", "\"v1\"")],
        r#"{"body":"new"}"#,
    );
    let patched = send(service.addr, req).await.unwrap();
    assert_eq!(patched.status, 200);
    assert_eq!(patched.header("cache-control"), Some("private, no-cache"));
    let reply = send(
        service.addr,
        with_headers("GET", "/notes", &[("If-None-Match", &etag)], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "a changed note changes the page's ETag");
    let etag2 = reply.header("etag").unwrap().to_owned();
    assert_ne!(etag, etag2);
    post(&service, json!({"title": "another"})).await;
    let reply = send(
        service.addr,
        with_headers("GET", "/notes", &[("If-None-Match", &etag2)], ""),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "a new note changes the page's ETag");
    // Filters are other resources with their own ETags.
    let filtered = get(service.addr, "/notes?q=another").await;
    assert_ne!(filtered.header("etag"), reply.header("etag"));
}

/// The route table is the only place the notes' methods are declared: a method it does not
/// list is a 405 whose `Allow` is the table's (HEAD riding along with GET), answered before
/// any application runs (so before authentication: even without a token), and nothing
/// changes.
#[tokio::test]
async fn methods_not_in_the_table_are_405_with_the_tables_allow() {
    let service = start_migrated(|_| {}).await;
    let id = post(&service, json!({"title": "kept"})).await.json()["id"].clone();
    let before = count(&service).await;
    let item = format!("/notes/{id}");
    for (method, path, allow) in [
        ("PUT", "/notes", "GET,HEAD,POST"),
        ("DELETE", "/notes", "GET,HEAD,POST"),
        ("PATCH", "/notes", "GET,HEAD,POST"),
        ("POST", item.as_str(), "GET,HEAD,PATCH,DELETE"),
        ("PUT", item.as_str(), "GET,HEAD,PATCH,DELETE"),
    ] {
        for token in [true, false] {
            let mut req = request(method, path);
            if !token {
                // An explicit empty Authorization: the harness adds no default token then.
                req = req.header("Authorization", "");
            }
            let reply = send(service.addr, req.body(String::new()).unwrap())
                .await
                .unwrap();
            let label = format!("{method} {path} (token: {token})");
            assert_eq!(reply.status, 405, "{label}: {}", reply.text());
            let mut got: Vec<&str> = reply
                .header("allow")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .collect();
            got.sort_unstable();
            let mut want: Vec<&str> = allow.split(',').collect();
            want.sort_unstable();
            assert_eq!(got, want, "{label}");
            assert_eq!(
                reply.json()["error"]["code"],
                "method_not_allowed",
                "{label}"
            );
        }
    }
    assert_eq!(count(&service).await, before, "a 405 changes nothing");
    let kept = get(service.addr, &item).await;
    assert_eq!(kept.status, 200, "{}", kept.text());
}
