//! The contract's ten rules, each shown over real TCP against an axum server.
//! No database: `awsgi` is tested on its own (`cargo test -p awsgi`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use awsgi::{AwsgiLayer, Body, Environ, Error, StartResponse, Validator, fdevent};
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tower::Layer;

use support::{get as http_get, raw, read_until, send, serve};

const TEXT: [(&str, &str); 1] = [("Content-Type", "text/plain")];

async fn mount(path: &str, app: impl awsgi::Application) -> std::net::SocketAddr {
    serve(Router::new().route_service(path, AwsgiLayer::new().layer(Validator::new(app)))).await
}

/// An application that answers with its environ's CGI view, as JSON.
async fn dump(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let mut vars: serde_json::Map<String, serde_json::Value> = environ
        .vars()
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    let args: serde_json::Map<String, serde_json::Value> = environ
        .routing_args()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    vars.insert("wsgiorg.routing_args".into(), args.into());
    vars.insert(
        "ext".into(),
        environ.extensions().get::<&'static str>().copied().into(),
    );
    start_response.start("200 OK", [("Content-Type", "application/json")])?;
    Ok(Body::from(serde_json::to_vec(&vars)?))
}

// Rule 1: environ.

#[tokio::test]
async fn environ_for_a_nested_mount() {
    let router = Router::new()
        .nest_service(
            "/mount/p%C3%B6int",
            AwsgiLayer::new().layer(Validator::new(dump)),
        )
        .layer(Extension("server extension"));
    let addr = serve(router).await;
    let request = http::Request::post("/mount/p%C3%B6int/a%20b/c%2Fd?x=1&y=%20")
        .header("X-Repeat", "one")
        .header("X-Repeat", "two")
        .header("Content-Type", "text/plain")
        .body(String::from("hi"))
        .unwrap();
    let reply = send(addr, request).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let env = reply.json();
    assert_eq!(env["REQUEST_METHOD"], "POST");
    assert_eq!(env["SCRIPT_NAME"], "/mount/pöint");
    assert_eq!(env["PATH_INFO"], "/a b/c/d");
    assert_eq!(env["QUERY_STRING"], "x=1&y=%20");
    assert_eq!(env["HTTP_X_REPEAT"], "one, two");
    assert_eq!(env["CONTENT_TYPE"], "text/plain");
    assert_eq!(env["CONTENT_LENGTH"], "2");
    assert!(env.get("HTTP_CONTENT_TYPE").is_none());
    assert_eq!(env["SERVER_NAME"], "127.0.0.1");
    assert_eq!(env["SERVER_PORT"], addr.port().to_string());
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["wsgi.url_scheme"], "http");
    assert_eq!(env["wsgi.version"], "1.0");
    assert_eq!(env["wsgi.multithread"], "true");
    assert_eq!(env["wsgi.multiprocess"], "false");
    assert_eq!(env["wsgi.run_once"], "false");
    assert_eq!(env["ext"], "server extension");

    // The mount point itself: SCRIPT_NAME is the prefix, PATH_INFO is empty.
    let env = http_get(addr, "/mount/p%C3%B6int").await.json();
    assert_eq!(
        (env["SCRIPT_NAME"].as_str(), env["PATH_INFO"].as_str()),
        (Some("/mount/pöint"), Some(""))
    );
}

#[tokio::test]
async fn environ_at_the_root_with_routing_args() {
    let router = Router::new().route_service(
        "/items/{id}/parts/{part}",
        AwsgiLayer::new().layer(Validator::new(dump)),
    );
    let addr = serve(router).await;
    let env = http_get(addr, "/items/42/parts/a%2Fb").await.json();
    assert_eq!(env["SCRIPT_NAME"], "");
    assert_eq!(env["PATH_INFO"], "/items/42/parts/a/b");
    assert_eq!(env["wsgiorg.routing_args"]["id"], "42");
    assert_eq!(env["wsgiorg.routing_args"]["part"], "a/b");
}

#[tokio::test]
async fn a_path_parameter_that_does_not_decode_is_refused_before_the_app() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = {
        let calls = calls.clone();
        move |environ: Environ, start_response: StartResponse| {
            calls.fetch_add(1, Ordering::SeqCst);
            dump(environ, start_response)
        }
    };
    // The same application on the collection and the item, as the notes are mounted: a
    // dropped parameter would make `/items/%FF` look like `/items`.
    let layer = AwsgiLayer::new();
    let router = Router::new()
        .route_service("/items", layer.layer(counted.clone()))
        .route_service("/items/{id}", layer.layer(counted.clone()));
    let addr = serve(router).await;
    for path in ["/items/%FF", "/items/%C3%28", "/items/a%FFb"] {
        for method in ["GET", "POST", "DELETE"] {
            let request = http::Request::builder()
                .method(method)
                .uri(path)
                .body(String::new())
                .unwrap();
            let reply = send(addr, request).await.unwrap();
            assert_eq!(reply.status, 400, "{method} {path}: {}", reply.text());
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the application never ran");
    // Through a JSON error responder, the refusal has the JSON shape (pgbridge's own
    // responder is checked the same way in its tests/notes.rs).
    let json_error = |err: &Error| {
        let code = if err.downcast_ref::<awsgi::RequestError>().is_some() {
            "bad_request"
        } else {
            "internal"
        };
        let body = serde_json::json!({"error": {"code": code, "message": "refused"}});
        http::Response::builder()
            .status(err.status())
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .expect("a valid response")
    };
    let router = Router::new().route_service(
        "/items/{id}",
        AwsgiLayer::new().error_responder(json_error).layer(dump),
    );
    let addr = serve(router).await;
    let reply = http_get(addr, "/items/%FF").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], "bad_request");
    // What does decode still arrives, without parameters where the route has none.
    assert_eq!(
        http_get(addr, "/items/%C3%A9").await.json()["wsgiorg.routing_args"]["id"],
        "é"
    );
}

// Rule 2: status and header rules; nothing leaks.

#[tokio::test]
async fn bad_status_or_hop_by_hop_header_is_a_plain_500() {
    async fn bad_status(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        let _ignored = sr.start("200", TEXT); // the app ignores the refusal
        Ok(Body::from("secret-body"))
    }
    async fn hop_by_hop(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Connection", "secret-close"),
            ],
        )?;
        Ok(Body::from("secret-body"))
    }
    async fn injected(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        let _ignored = sr.start("200 OK", [("X-A", "ok\r\nSet-Cookie: secret=1")]);
        Ok(Body::from("secret-body"))
    }
    let router = Router::new()
        .route_service("/status", AwsgiLayer::new().layer(bad_status))
        .route_service("/hop", AwsgiLayer::new().layer(hop_by_hop))
        .route_service("/inject", AwsgiLayer::new().layer(injected));
    let addr = serve(router).await;
    for path in ["/status", "/hop", "/inject"] {
        let reply = http_get(addr, path).await;
        assert_eq!(reply.status, 500, "{path}");
        assert_eq!(reply.text(), "500 Internal Server Error\n", "{path}");
        assert!(reply.header("set-cookie").is_none());
        assert!(
            reply
                .headers
                .iter()
                .all(|(_, v)| !v.as_bytes().windows(6).any(|w| w == b"secret"))
        );
    }
}

// Rule 3: deferred commit and exc_info.

#[tokio::test]
async fn exc_info_replaces_the_response_before_the_first_chunk() {
    /// Starts 200, then a "query" fails before anything was sent: an error page replaces it.
    async fn fails_late(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("200 OK", TEXT)?;
        let failed: Result<(), std::io::Error> = Err(std::io::Error::other("query failed"));
        if let Err(err) = failed {
            sr.start_with_exc_info("503 Service Unavailable", TEXT, err.into())?;
            return Ok(Body::from("try again later\n"));
        }
        Ok(Body::from("unreachable"))
    }
    /// The body stream decides, before its first chunk, that it failed.
    async fn fails_in_body(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("200 OK", TEXT)?;
        let body = stream::once(async move {
            fdevent::sleep(Duration::from_millis(10)).await;
            sr.start_with_exc_info("502 Bad Gateway", TEXT, Error::msg("upstream"))?;
            Ok::<_, Error>("error page\n")
        });
        Ok(Body::from_stream(body))
    }
    let router = Router::new()
        .route_service("/late", AwsgiLayer::new().layer(Validator::new(fails_late)))
        .route_service(
            "/body",
            AwsgiLayer::new().layer(Validator::new(fails_in_body)),
        );
    let addr = serve(router).await;
    let reply = http_get(addr, "/late").await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (503, "try again later\n")
    );
    let reply = http_get(addr, "/body").await;
    assert_eq!((reply.status, reply.text().as_str()), (502, "error page\n"));
}

#[tokio::test]
async fn exc_info_after_the_commit_aborts_the_connection() {
    async fn fails_after_commit(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("200 OK", TEXT)?;
        let mut sent = false;
        let body = stream::poll_fn(move |_| {
            if !sent {
                sent = true;
                return std::task::Poll::Ready(Some(Ok(bytes::Bytes::from("part one\n"))));
            }
            // Re-raised: the headers are gone, so this comes back as the Err.
            let reraised = sr.start_with_exc_info("500 Oops", TEXT, Error::msg("failed mid-body"));
            std::task::Poll::Ready(Some(Err(reraised.expect_err("must re-raise after commit"))))
        });
        Ok(Body::from_stream(body))
    }
    let addr = mount("/", fails_after_commit).await;
    let wire = raw(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(wire.starts_with("HTTP/1.1 200 OK"), "{wire}");
    assert!(wire.contains("part one"), "{wire}");
    assert!(
        !wire.ends_with("0\r\n\r\n"),
        "the chunked body must not be terminated: {wire:?}"
    );
    let err = send(addr, http::Request::get("/").body(String::new()).unwrap())
        .await
        .unwrap_err();
    assert!(err.contains("aborted") || err.contains("body"), "{err}");
}

#[tokio::test]
async fn second_start_without_exc_info_is_a_500_even_if_ignored() {
    async fn twice(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("200 OK", TEXT)?;
        let second = sr.start("404 Not Found", TEXT);
        assert!(second.is_err());
        Ok(Body::from("body"))
    }
    let addr = serve(Router::new().route_service("/", AwsgiLayer::new().layer(twice))).await;
    assert_eq!(http_get(addr, "/").await.status, 500);
}

// Rule 4: body chunks and Content-Length.

#[tokio::test]
async fn empty_chunks_are_skipped_and_headers_wait_for_the_first_real_one() {
    async fn app(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("200 OK", TEXT)?;
        Ok(Body::from_stream(stream::iter([
            Ok::<_, Error>(""),
            Ok("a"),
            Ok(""),
            Ok("b"),
        ])))
    }
    let addr = mount("/", app).await;
    assert_eq!(http_get(addr, "/").await.text(), "ab");
}

#[tokio::test]
async fn content_length_is_honoured_both_ways() {
    async fn too_long(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start(
            "200 OK",
            [("Content-Type", "text/plain"), ("Content-Length", "5")],
        )?;
        Ok(Body::from_stream(stream::iter([
            Ok::<_, Error>("abc"),
            Ok("defgh"),
            Ok("ijk"),
        ])))
    }
    async fn too_short(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start(
            "200 OK",
            [("Content-Type", "text/plain"), ("Content-Length", "10")],
        )?;
        Ok(Body::from("abc"))
    }
    let router = Router::new()
        .route_service("/long", AwsgiLayer::new().layer(too_long))
        .route_service("/short", AwsgiLayer::new().layer(too_short));
    let addr = serve(router).await;

    // Never more than declared, and the connection stays usable (keep-alive).
    let wire = raw(
        addr,
        "GET /long HTTP/1.1\r\nHost: x\r\n\r\nGET /long HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(wire.matches("HTTP/1.1 200 OK").count(), 2, "{wire}");
    assert_eq!(wire.matches("\r\n\r\nabcde").count(), 2, "{wire}");
    assert!(!wire.contains('f'), "{wire}");

    // Fewer than declared: the connection is closed, the client sees a short body.
    let wire = raw(
        addr,
        "GET /short HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(wire.contains("content-length: 10"), "{wire}");
    assert!(wire.ends_with("\r\n\r\nabc"), "{wire:?}");
    let err = send(
        addr,
        http::Request::get("/short").body(String::new()).unwrap(),
    )
    .await;
    assert!(err.is_err(), "a short body must not look whole: {err:?}");
}

// Rule 5: close() when the response ends and when the client goes away.

#[tokio::test]
async fn body_is_dropped_when_the_response_finishes() {
    let closed = Arc::new(AtomicUsize::new(0));
    let counter = closed.clone();
    let app = move |_: Environ, sr: StartResponse| {
        let counter = counter.clone();
        async move {
            sr.start("200 OK", TEXT)?;
            Ok(Body::from("done").on_close(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }))
        }
    };
    let addr = mount("/", app).await;
    assert_eq!(http_get(addr, "/").await.text(), "done");
    assert_eq!(closed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn body_is_dropped_when_the_client_disconnects_mid_stream() {
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel::<()>();
    let app = move |_: Environ, sr: StartResponse| {
        let closed = closed_tx.clone();
        async move {
            sr.start("200 OK", TEXT)?;
            let endless = stream::unfold(0u64, |n| async move {
                fdevent::sleep(Duration::from_millis(20)).await;
                Some((Ok::<_, Error>(format!("line {n}\n")), n + 1))
            });
            Ok(Body::from_stream(endless).on_close(move || {
                let _ = closed.send(());
            }))
        }
    };
    let addr = mount("/", app).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    drop(stream);
    tokio::time::timeout(Duration::from_secs(5), closed_rx.recv())
        .await
        .expect("close() must run when the client goes away")
        .expect("channel open");
}

#[tokio::test]
async fn app_future_is_dropped_when_the_client_disconnects_before_the_commit() {
    struct Guard(mpsc::UnboundedSender<()>);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let (dropped_tx, mut dropped_rx) = mpsc::unbounded_channel::<()>();
    let app = move |_: Environ, _sr: StartResponse| {
        let guard = Guard(dropped_tx.clone());
        async move {
            let _guard = guard;
            fdevent::sleep(Duration::from_secs(3600)).await; // "waiting on a query"
            Ok::<Body, Error>(Body::empty())
        }
    };
    let addr = mount("/", app).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    tokio::time::timeout(Duration::from_secs(5), dropped_rx.recv())
        .await
        .expect("the application's future must be dropped when the client goes away")
        .expect("channel open");
}

// Rule 6: write().

#[tokio::test]
async fn write_goes_first_and_commits_the_headers() {
    async fn legacy(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        let write = sr.start("200 OK", TEXT)?;
        write.write("one,").await?;
        write.write("").await?;
        write.write("two,").await?;
        Ok(Body::from("body"))
    }
    let addr = mount("/", legacy).await;
    assert_eq!(http_get(addr, "/").await.text(), "one,two,body");
}

#[tokio::test]
async fn write_commits_before_the_application_returns() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release_rx = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let app = move |_: Environ, sr: StartResponse| {
        let release_rx = release_rx.clone();
        async move {
            let write = sr.start("200 OK", TEXT)?;
            write.write("early\n").await?;
            // The client must see "early" while we are still running.
            if let Some(rx) = release_rx.lock().await.take() {
                let _ = rx.await;
            }
            Ok::<_, Error>(Body::from("late\n"))
        }
    };
    let addr = mount("/", app).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    read_until(
        &mut stream,
        &mut seen,
        "early",
        "write() output must arrive before the app returns",
    )
    .await;
    release_tx.send(()).unwrap();
    stream.read_to_end(&mut seen).await.unwrap();
    let wire = String::from_utf8_lossy(&seen);
    assert!(
        wire.contains("early\n") && wire.contains("late\n"),
        "{wire}"
    );
    assert!(wire.find("early").unwrap() < wire.find("late").unwrap());
}

// Rule 7: wsgi.input streams, with a limit.

async fn echo_chunks(mut environ: Environ, sr: StartResponse) -> Result<Body, Error> {
    let write = sr.start("200 OK", TEXT)?;
    let mut total = 0;
    while let Some(chunk) = environ.input().chunk().await? {
        total += chunk.len();
        write.write(format!("got {total}\n")).await?;
    }
    Ok(Body::from(format!("total {total}\n")))
}

#[tokio::test]
async fn input_is_streamed_as_it_arrives() {
    let addr = mount("/", echo_chunks).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    // The app answers the first chunk before the client has sent the rest.
    let mut seen = Vec::new();
    read_until(
        &mut stream,
        &mut seen,
        "got 5",
        "the first chunk must reach the app before the body is complete",
    )
    .await;
    stream.write_all(b"6\r\n world\r\n0\r\n\r\n").await.unwrap();
    read_until(&mut stream, &mut seen, "total 11", "the rest of the body").await;
}

#[tokio::test]
async fn input_over_the_limit_is_413() {
    async fn read_all(mut environ: Environ, sr: StartResponse) -> Result<Body, Error> {
        let body = environ.input().read_to_end().await?;
        sr.start("200 OK", TEXT)?;
        Ok(Body::from(body))
    }
    let layer = AwsgiLayer::new().body_limit(8);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let counting = move |environ: Environ, sr: StartResponse| {
        counted.fetch_add(1, Ordering::SeqCst);
        read_all(environ, sr)
    };
    let addr = serve(Router::new().route_service("/", layer.layer(counting))).await;

    let ok = send(
        addr,
        http::Request::post("/").body("12345678".into()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!((ok.status, ok.text().as_str()), (200, "12345678"));

    // Declared too long: refused before the app runs.
    let big = send(
        addr,
        http::Request::post("/").body("123456789".into()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(big.status, 413);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Streamed (chunked, no length) past the limit: the read fails, the answer is 413.
    let wire = raw(
        addr,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(wire.starts_with("HTTP/1.1 413"), "{wire}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// Rule 8 (fdevent) is unit-tested in src/fdevent.rs; here, many waits at once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_wait_at_once_without_threads() {
    async fn waits(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        let waited = fdevent::timeout(Duration::from_millis(500)).await?;
        sr.start("200 OK", TEXT)?;
        Ok(Body::from(format!("{waited:?}")))
    }
    let addr = mount("/", waits).await;
    let started = std::time::Instant::now();
    let requests = (0..100).map(|_| http_get(addr, "/"));
    let replies = futures_util::future::join_all(requests).await;
    assert!(replies.iter().all(|r| r.text() == "TimedOut"));
    // 100 × 0.5 s in sequence would be 50 s; suspended, they overlap. The bound is coarse.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

// Rule 9: faults.

#[tokio::test]
async fn errors_and_panics_before_the_commit_are_500_and_the_server_goes_on() {
    async fn fails(_: Environ, _: StartResponse) -> Result<Body, Error> {
        Err(Error::msg("secret database detail"))
    }
    async fn panics(_: Environ, _: StartResponse) -> Result<Body, Error> {
        panic!("secret panic detail");
    }
    async fn panics_in_body(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("200 OK", TEXT)?;
        Ok(Body::from_stream(stream::poll_fn(
            |_| -> std::task::Poll<Option<Result<&'static str, Error>>> { panic!("in the body") },
        )))
    }
    let router = Router::new()
        .route_service("/fails", AwsgiLayer::new().layer(fails))
        .route_service("/panics", AwsgiLayer::new().layer(panics))
        .route_service("/panics-in-body", AwsgiLayer::new().layer(panics_in_body))
        .route("/native", get(|| async { "still here" }));
    let addr = serve(router).await;
    for round in 0..3 {
        for path in ["/fails", "/panics", "/panics-in-body"] {
            let reply = http_get(addr, path).await;
            assert_eq!(reply.status, 500, "{path} round {round}");
            assert!(!reply.text().contains("secret"), "{path}: {}", reply.text());
        }
        assert_eq!(http_get(addr, "/native").await.text(), "still here");
    }
}

#[tokio::test]
async fn a_panic_after_the_commit_aborts_the_connection() {
    async fn panics_late(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("200 OK", TEXT)?;
        let mut n = 0;
        Ok(Body::from_stream(stream::poll_fn(move |_| {
            n += 1;
            if n > 1 {
                panic!("late panic");
            }
            std::task::Poll::Ready(Some(Ok::<_, Error>("first\n")))
        })))
    }
    let addr = mount("/", panics_late).await;
    let err = send(addr, http::Request::get("/").body(String::new()).unwrap()).await;
    assert!(err.is_err(), "{err:?}");
    let again = send(addr, http::Request::get("/").body(String::new()).unwrap()).await;
    assert!(
        again.is_err(),
        "the server still answers, and still aborts: {again:?}"
    );
}

// Rule 10: the Validator.

#[tokio::test]
async fn validator_fails_responses_that_break_the_contract() {
    async fn no_content_type(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("200 OK", Vec::<(String, String)>::new())?;
        Ok(Body::from("x"))
    }
    async fn typed_204(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("204 No Content", TEXT)?;
        Ok(Body::empty())
    }
    async fn never_starts(_: Environ, _sr: StartResponse) -> Result<Body, Error> {
        Ok(Body::from("x"))
    }
    async fn good_204(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("204 No Content", Vec::<(String, String)>::new())?;
        Ok(Body::empty())
    }
    let v = |app| AwsgiLayer::new().layer(Validator::new(app));
    let router = Router::new()
        .route_service("/no-type", v(no_content_type))
        .route_service(
            "/typed-204",
            AwsgiLayer::new().layer(Validator::new(typed_204)),
        )
        .route_service(
            "/never",
            AwsgiLayer::new().layer(Validator::new(never_starts)),
        )
        .route_service("/good", AwsgiLayer::new().layer(Validator::new(good_204)));
    let addr = serve(router).await;
    for path in ["/no-type", "/typed-204", "/never"] {
        assert_eq!(http_get(addr, path).await.status, 500, "{path}");
    }
    assert_eq!(http_get(addr, "/good").await.status, 204);
}

/// The smallest application is a plain async fn; a closure works too.
#[tokio::test]
async fn plain_functions_are_applications() {
    async fn hello(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("200 OK", TEXT)?;
        Ok(Body::from("hello\n"))
    }
    let addr = serve(Router::new().route_service("/", AwsgiLayer::new().layer(hello))).await;
    let reply = http_get(addr, "/").await;
    assert_eq!(reply.text(), "hello\n");
    assert_eq!(
        reply.header("content-length"),
        Some("6"),
        "a whole body gets a length"
    );
}

/// Issue 9, item 7: the Validator keeps a whole body's exact length, so a validated
/// response is framed as production frames it — `Content-Length`, not chunks.
#[tokio::test]
async fn validated_whole_body_keeps_its_content_length() {
    async fn hello(_: Environ, sr: StartResponse) -> Result<Body, Error> {
        sr.start("200 OK", TEXT)?;
        Ok(Body::from("hello\n"))
    }
    let addr = mount("/", hello).await;
    let wire = raw(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let head = wire
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok"), "{wire:?}");
    assert!(head.contains("content-length: 6"), "{wire:?}");
    assert!(!head.contains("transfer-encoding"), "{wire:?}");
    assert!(wire.ends_with("\r\n\r\nhello\n"), "{wire:?}");
}
