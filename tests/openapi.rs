//! `/openapi.json` cannot drift from the router: every documented path and method is
//! served, every method a path does not document is answered 405, and every route
//! `src/lib.rs` registers is documented. Also: the pages behind `/`, `/docs` and
//! `/assets/` are served under a strict CSP, and JSON clients keep the JSON index.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::http::{get, send};
use common::service::{TestService, start};
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// Methods probed on every path; HEAD is checked beside GET.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

async fn service() -> TestService {
    let service = start(|_| {}).await;
    pgbridge::db::migrate::Migrator::embedded()
        .unwrap()
        .run_url(&service.database_url)
        .await
        .expect("migrate");
    service
}

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

fn document() -> Value {
    serde_json::from_str(pgbridge::apps::web::OPENAPI).expect("openapi.json is JSON")
}

#[tokio::test]
async fn every_documented_operation_is_served_and_nothing_else() {
    let service = service().await;
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

/// Every path `src/lib.rs` routes (`.route("…"` and `mount.at(routes, "…"`) is documented,
/// and every documented path is routed there.
#[test]
fn every_routed_path_is_documented() {
    let source = include_str!("../src/lib.rs");
    let mut routed = BTreeSet::new();
    // A call may be split over lines by rustfmt (`.route(\n "/metrics"`): the path is the
    // first argument of `.route(`/`.route_service(`, the second of `mount.at(`.
    for call in [".route(", ".route_service(", "mount.at("] {
        for (at, _) in source.match_indices(call) {
            let rest = source[at + call.len()..].trim_start();
            let rest = match call {
                "mount.at(" => rest.split_once(',').map_or("", |(_, r)| r).trim_start(),
                _ => rest,
            };
            let Some(rest) = rest.strip_prefix('"').filter(|r| r.starts_with('/')) else {
                continue;
            };
            if let Some(end) = rest.find('"') {
                routed.insert(rest[..end].to_owned());
            }
        }
    }
    assert!(routed.len() >= 10, "found too few routes: {routed:?}");
    let doc = document();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        routed, documented,
        "src/lib.rs's routes and openapi.json's paths differ"
    );
}

/// The JSON index at `/` lists every documented operation (GET standing for HEAD too).
#[test]
fn the_index_lists_every_documented_operation() {
    let listed: BTreeSet<(String, String)> = pgbridge::apps::index::ROUTES
        .iter()
        .flat_map(|route| {
            let (methods, path) = route.route.split_once(' ').expect("METHOD /path");
            let path = path.split('?').next().unwrap_or(path).to_owned();
            methods
                .split('|')
                .map(move |m| (m.to_owned(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let doc = document();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method.to_ascii_lowercase()).is_some() {
                documented.insert((method.to_string(), path.clone()));
            }
        }
    }
    assert_eq!(
        listed, documented,
        "apps::index::ROUTES and openapi.json differ"
    );
}

#[tokio::test]
async fn browsers_get_the_live_page_and_json_clients_the_index() {
    let service = service().await;
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
