//! The accept loop out of file descriptors: it backs off, logs, keeps serving the
//! connections it has, and accepts again once descriptors are free.
//!
//! A test binary of its own, because it lowers this process's `RLIMIT_NOFILE`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use pgbridge::server::{ConnectionStats, Limits, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_server_keeps_serving_and_recovers() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, 256.min(hard), hard).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    let stats = Arc::new(ConnectionStats::default());
    let limits = Limits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        // Far above the descriptor limit: accept itself must fail.
        max_connections: 100_000,
        // Every client here is 127.0.0.1.
        max_connections_per_address: 0,
    };
    let server = Server::new(listener, router, limits, stats.clone());
    tokio::spawn(server.run(std::future::pending(), Duration::from_secs(1)));

    let mut first = TcpStream::connect(addr).await.unwrap();
    assert!(healthz(&mut first).await.contains("200 OK"));

    // Use up every descriptor but one; the next client socket takes that one, and the
    // server's accept for it fails with EMFILE.
    let mut files = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => files.push(file),
            Err(err) => {
                assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
                break;
            }
        }
    }
    files.pop();
    let mut second = TcpStream::connect(addr).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stats.refused() == 0 {
        assert!(std::time::Instant::now() < deadline, "accept never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection it has is still served.
    assert!(healthz(&mut first).await.contains("200 OK"));

    // Descriptors back: the waiting connection is accepted and served.
    files.truncate(files.len().saturating_sub(20));
    assert!(healthz(&mut second).await.contains("200 OK"));
    drop(files);
}
