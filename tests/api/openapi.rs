//! `/openapi.json` cannot drift from the router: every documented path and method is
//! served, every method a path does not document is answered 405, and the route table
//! (`pgbridge::routes()`, which the router mounts and the index lists) is the document
//! (`pgbridge::routes::document`, built from that table: a route without its document fails
//! here).
//! The router and the index agree. Also: the pages behind `/`, `/docs` and
//! `/assets/` are served under a strict CSP, and JSON clients keep the JSON index.

use crate::common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::http::{get, send};
use common::service::start_migrated;
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// Methods probed on every path; HEAD is checked beside GET.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The status, `Allow` header and (up to a short wait) body of one request. Streams that
/// do not end (`/notes/events`) are judged by their head alone.
async fn probe(addr: SocketAddr, method: &str, uri: &str) -> (u16, Option<String>, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("Host", addr.to_string())
        .header("Accept", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .unwrap_or_else(|_| panic!("{method} {uri}: no response head within 10 s"))
        .unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
    let status = response.status().as_u16();
    let allow = response
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match tokio::time::timeout(Duration::from_secs(2), response.collect()).await {
        Ok(Ok(body)) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        _ => String::new(),
    };
    (status, allow, body)
}

/// A concrete request URI for a documented path: parameters filled in, slow routes asked
/// to be quick.
fn concrete(path: &str, note_id: i64) -> String {
    let path = path
        .replace("{id}", &note_id.to_string())
        .replace("{name}", "live.js");
    match path.as_str() {
        "/seed/poll-sleep" => "/seed/poll-sleep?seconds=0".into(),
        "/seed/postgres-async" => "/seed/postgres-async?delay=0".into(),
        _ => path,
    }
}

/// The document as `GET /openapi.json` serves it, built from the route table.
fn document() -> Value {
    pgbridge::api_doc::json(&pgbridge::routes::document(&pgbridge::routes()))
}

#[tokio::test]
async fn every_documented_operation_is_served_and_nothing_else() {
    let service = start_migrated(|_| {}).await;
    let created = send(
        service.addr,
        http::Request::post("/notes")
            .header("Content-Type", "application/json")
            .body(json!({"title": "probe"}).to_string())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let note_id = created.json()["id"].as_i64().unwrap();

    // What the service serves is what the document says.
    let served = get(service.addr, "/openapi.json").await;
    assert_eq!(served.status, 200);
    assert_eq!(served.json(), document());

    let doc = document();
    let mut problems = Vec::new();
    // DELETE last, so the note is there for the other methods.
    let mut order: Vec<&str> = METHODS.to_vec();
    order.sort_by_key(|m| *m == "DELETE");
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = concrete(path, note_id);
        for &method in &order {
            let documented = item.get(method.to_ascii_lowercase()).is_some();
            let (status, allow, body) = probe(service.addr, method, &uri).await;
            if documented {
                let unrouted = status == 404 && body.contains("no route for this path");
                if status == 405 || unrouted || status >= 500 {
                    problems.push(format!(
                        "{method} {uri}: documented but answered {status} {body}"
                    ));
                }
                if method == "GET" {
                    let (head, _, _) = probe(service.addr, "HEAD", &uri).await;
                    if head == 404 || head == 405 || head >= 500 {
                        problems.push(format!("HEAD {uri}: GET is documented but HEAD is {head}"));
                    }
                }
            } else if status != 405 {
                problems.push(format!(
                    "{method} {uri}: not in the document, so it must be 405, got {status} {body}"
                ));
            } else if allow.is_none() {
                problems.push(format!("{method} {uri}: 405 without Allow"));
            }
        }
    }
    assert!(problems.is_empty(), "drift:\n{}", problems.join("\n"));
}

/// Every (method, path) of the route table, GET standing for HEAD too.
fn table() -> BTreeSet<(String, String)> {
    pgbridge::routes()
        .iter()
        .flat_map(|route| {
            route
                .methods
                .iter()
                .map(|m| (m.as_str().to_owned(), route.path.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every (method, path) openapi.json documents.
fn documented() -> BTreeSet<(String, String)> {
    let doc = document();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method.to_ascii_lowercase()).is_some() {
                documented.insert((method.to_string(), path.clone()));
            }
        }
    }
    documented
}

/// The route table (what the router mounts and the index lists) and openapi.json name the
/// same operations.
#[test]
fn the_route_table_is_the_document() {
    let table = table();
    assert!(!table.is_empty(), "the route table is empty");
    assert_eq!(
        table,
        documented(),
        "pgbridge::routes() and openapi.json differ"
    );
}

/// The router and the index at `/` are built from one table, and agree: the index lists
/// exactly the table, every method of every entry is served (no 404 "no route", no 405),
/// every other probed method is a 405, and a path outside the table is a 404.
#[tokio::test]
async fn the_router_serves_what_the_index_lists() {
    let service = start_migrated(|_| {}).await;
    let index = get(service.addr, "/").await;
    assert_eq!(index.status, 200);
    let listed: Vec<String> = index.json()["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap().to_owned())
        .collect();
    let table = pgbridge::routes();
    let labels: Vec<String> = table.iter().map(|r| r.label()).collect();
    assert_eq!(listed, labels, "the index is not the route table");
    for path in [
        "/notes",
        "/notes/{id}",
        "/notes/events",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(
            table.iter().any(|r| r.path == path),
            "{path} missing from the table"
        );
    }

    let mut problems = Vec::new();
    for route in &table {
        // No token and a note id nobody has: the application answers (401, 404, 400...),
        // never the router's "no route" 404 or its 405.
        let uri = concrete(route.path, i64::MAX);
        for &method in METHODS {
            let listed = route.methods.iter().any(|m| m.as_str() == method);
            let (status, _, body) = probe(service.addr, method, &uri).await;
            let unrouted = status == 404 && body.contains("no route for this path");
            if listed && (status == 405 || unrouted) {
                problems.push(format!(
                    "{method} {uri}: listed but answered {status} {body}"
                ));
            }
            if !listed && status != 405 {
                problems.push(format!("{method} {uri}: not listed, so 405, got {status}"));
            }
        }
    }
    let (status, _, body) = probe(service.addr, "GET", "/not/in/the/table").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        problems.is_empty(),
        "router and index disagree:\n{}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn browsers_get_the_live_page_and_json_clients_the_index() {
    let service = start_migrated(|_| {}).await;
    let browser = send(
        service.addr,
        http::Request::get("/")
            .header(
                "Accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )
            .body(String::new())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(browser.status, 200);
    assert!(
        browser
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let csp = browser.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(browser.header("vary").unwrap().contains("Accept"));
    assert!(browser.text().contains("assets/live.js"));

    for accept in [None, Some("*/*"), Some("application/json")] {
        let mut request = http::Request::get("/");
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        let reply = send(service.addr, request.body(String::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["service"], "pgbridge", "Accept {accept:?}");
    }

    for (path, media) in [
        ("/docs", "text/html"),
        ("/assets/live.js", "text/javascript"),
        ("/assets/docs.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
    ] {
        let reply = get(service.addr, path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply.header("content-type").unwrap().starts_with(media),
            "{path}"
        );
        assert!(reply.header("content-security-policy").is_some(), "{path}");
    }
    let missing = get(service.addr, "/assets/nope.js").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "not_found");
}

/// The embedded files (the page, `/docs`, `/assets/*`, `/openapi.json`) are revalidated,
/// so each carries a validator, and a client that has the current copy gets a 304.
#[tokio::test]
async fn embedded_files_have_an_etag_and_answer_304_to_a_current_copy() {
    let service = start_migrated(|_| {}).await;
    for (path, accept) in [
        ("/", "text/html"),
        ("/docs", "text/html"),
        ("/openapi.json", "application/json"),
        ("/assets/live.js", "*/*"),
        ("/assets/style.css", "*/*"),
    ] {
        let request = http::Request::get(path)
            .header("accept", accept)
            .body(String::new())
            .unwrap();
        let first = send(service.addr, request).await.unwrap();
        assert_eq!(first.status, 200, "{path}");
        let etag = first
            .header("etag")
            .unwrap_or_else(|| panic!("{path}: no ETag"))
            .to_owned();
        assert_eq!(first.header("cache-control"), Some("no-cache"), "{path}");

        let again = http::Request::get(path)
            .header("accept", accept)
            .header("if-none-match", format!("\"other\", W/{etag}"))
            .body(String::new())
            .unwrap();
        let again = send(service.addr, again).await.unwrap();
        assert_eq!(again.status, 304, "{path}");
        assert_eq!(again.header("etag"), Some(etag.as_str()), "{path}");
        assert!(again.text().is_empty(), "{path}: a 304 has no body");

        let stale = http::Request::get(path)
            .header("accept", accept)
            .header("if-none-match", "\"stale\"")
            .body(String::new())
            .unwrap();
        assert_eq!(
            send(service.addr, stale).await.unwrap().status,
            200,
            "{path}"
        );
    }
}
