//! `pgbridge::Application` in-process, the startup the binary runs: it serves once the
//! migrations are applied, a shutdown drains it (a request in flight still finishes) and
//! ends `run_until` with `Ok`, and a shutdown while the database does not answer yet ends it
//! at once. The process's side (signals, exit status, log lines) is `binary.rs`.

use crate::common;

use std::time::Duration;

use common::http::get;
use common::pg::Cluster;
use common::process::free_port;
use pgbridge::Application;
use pgbridge::config::Config;

#[tokio::test]
async fn serves_after_migrating_and_drains_on_shutdown() {
    let url = Cluster::shared().await.create_database().await;
    let mut config = Config::new(url);
    config.bind_addr = "127.0.0.1:0".parse().unwrap();
    let app = Application::build(config).await.expect("built");
    let addr = app.addr();
    assert_ne!(addr.port(), 0, "the bound port, not the asked-for one");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    // Waits in the listen backlog until the migrations are applied and it serves.
    assert_eq!(get(addr, "/readyz").await.status, 200);

    let in_flight = tokio::spawn(async move { get(addr, "/seed/poll-sleep?seconds=2").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("slept 2/2"), "{}", reply.text());
    tokio::time::timeout(Duration::from_secs(15), serving)
        .await
        .expect("run_until returns once drained")
        .unwrap()
        .expect("a clean stop");
}

#[tokio::test]
async fn a_shutdown_while_waiting_for_the_database_ends_it_cleanly() {
    let dead = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let mut config = Config::new(dead);
    config.bind_addr = "127.0.0.1:0".parse().unwrap();
    let app = Application::build(config)
        .await
        .expect("built: nothing connects yet");
    let run = app.run_until(tokio::time::sleep(Duration::from_millis(500)));
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("stopped at the shutdown, not after the database")
        .expect("a shutdown before serving is a clean stop");
}

#[tokio::test]
async fn a_busy_port_fails_the_build_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let mut config = Config::new("postgres://postgres@127.0.0.1:1/postgres");
    config.bind_addr = busy;
    let err = Application::build(config).await.unwrap_err();
    assert!(
        matches!(err, pgbridge::StartError::Listen { addr, .. } if addr == busy),
        "{err}"
    );
}
