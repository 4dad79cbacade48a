//! The Postgres test harness itself: shared and private clusters, stop and restart,
//! clean-up.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::pg::Cluster;

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn current_database(url: &str) -> String {
    let client = connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("SELECT 1")
        .get(0);
    assert_eq!(one, 1);
    client
        .query_one("SELECT current_database()", &[])
        .await
        .expect("current_database()")
        .get(0)
}

/// Processes whose command line mentions `dir`: the postmaster (`-D dir/data`) and the
/// cluster's watchdog (`pgbridge-test-watchdog ... dir`).
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(&needle)
                .then(|| format!("{}: {cmdline}", entry.file_name().to_string_lossy()))
        })
        .collect()
}

#[tokio::test]
async fn shared_cluster_gives_distinct_usable_databases() {
    let cluster = Cluster::shared().await;
    let first = cluster.create_database().await;
    let second = cluster.create_database().await;
    assert_ne!(first, second);

    let first_name = current_database(&first).await;
    let second_name = current_database(&second).await;
    assert_ne!(first_name, second_name);
    assert!(first.contains(&first_name), "{first} names {first_name}");
    assert!(
        second.contains(&second_name),
        "{second} names {second_name}"
    );

    // Really separate: a table in one is not in the other.
    let a = connect(&first)
        .await
        .expect("connect to the first database");
    a.batch_execute("CREATE TABLE only_here (x int)")
        .await
        .expect("create a table");
    let b = connect(&second)
        .await
        .expect("connect to the second database");
    let seen: i64 = b
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'",
            &[],
        )
        .await
        .expect("look for the table")
        .get(0);
    assert_eq!(seen, 0);

    // Same process-wide cluster every time.
    assert!(std::ptr::eq(cluster, Cluster::shared().await));
    assert_eq!(current_database(&cluster.admin_url()).await, "postgres");
}

#[tokio::test]
async fn many_databases_at_once() {
    let cluster = Cluster::shared().await;
    let urls = futures_util::future::join_all((0..8).map(|_| cluster.create_database())).await;
    let mut names = Vec::new();
    for url in &urls {
        names.push(current_database(url).await);
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), urls.len());
}

#[tokio::test]
async fn private_cluster_stops_and_restarts_with_its_data() {
    let cluster = Cluster::start_private().await;
    let dir = cluster
        .directory()
        .expect("a private cluster has a directory")
        .to_owned();
    assert!(dir.join("data").is_dir());

    let url = cluster.create_database().await;
    let client = connect(&url).await.expect("connect before the stop");
    client
        .batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
        .await
        .expect("write before the stop");

    cluster.stop().await;
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "the old connection must be gone"
    );
    assert!(
        connect(&url).await.is_err(),
        "a stopped server must refuse connections"
    );
    // `pg_ctl stop` returns once the postmaster has removed its pid file, a moment before
    // the process itself exits: allow that moment (a loaded machine once caught it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let servers = loop {
        let servers: Vec<String> = processes_using(&dir.join("data"))
            .into_iter()
            .filter(|p| !p.contains("pgbridge-test-watchdog"))
            .collect();
        if servers.is_empty() || std::time::Instant::now() > deadline {
            break servers;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        servers.is_empty(),
        "still running 5 s after stop: {servers:?}"
    );

    cluster.restart().await;
    let client = connect(&url).await.expect("connect after the restart");
    let v: String = client
        .query_one("SELECT v FROM kept", &[])
        .await
        .expect("read after the restart")
        .get(0);
    assert_eq!(v, "still here");

    // Twice, to be sure restart leaves things as start did.
    cluster.stop().await;
    cluster.restart().await;
    assert_eq!(
        current_database(&url).await,
        url.rsplit('/').next().unwrap()
    );

    drop(client);
    drop(cluster);
    assert!(!dir.exists(), "{} outlived its cluster", dir.display());
    let left = processes_using(&dir);
    assert!(
        left.is_empty(),
        "processes outlived their cluster: {left:?}"
    );
}

#[tokio::test]
async fn a_private_cluster_is_not_the_shared_one() {
    let shared = Cluster::shared().await;
    let private = Cluster::start_private().await;
    assert_ne!(shared.admin_url(), private.admin_url());
    assert_ne!(shared.directory(), private.directory());
    current_database(&private.create_database().await).await;
}

#[tokio::test]
#[should_panic(expected = "the shared test cluster must not be stopped")]
async fn the_shared_cluster_cannot_be_stopped() {
    Cluster::shared().await.stop().await;
}

#[tokio::test]
async fn an_external_server_by_url() {
    // What `DATABASE_URL` does, aimed at a private cluster's own database.
    let private = Cluster::start_private().await;
    let named = private.create_database().await;
    let external = Cluster::external(&format!("{named}?connect_timeout=5"));
    assert!(external.directory().is_none());
    assert!(
        external
            .admin_url()
            .ends_with("/postgres?connect_timeout=5"),
        "{}",
        external.admin_url()
    );
    let url = external.create_database().await;
    assert_ne!(url, named);
    assert!(url.ends_with("?connect_timeout=5"), "{url}");
    let name = current_database(&url).await;
    assert!(name.starts_with(&format!("t_{}_", std::process::id())));

    // And as a key=value connection string.
    let port = private
        .admin_url()
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .expect("a port in the admin URL")
        .to_owned();
    let external = Cluster::external(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=whatever"
    ));
    current_database(&external.create_database().await).await;
}

#[test]
fn url_derivation() {
    let c = Cluster::external("postgres://u:p@db.example:5433/app?sslmode=disable");
    assert_eq!(
        c.admin_url(),
        "postgres://u:p@db.example:5433/postgres?sslmode=disable"
    );
    assert_eq!(
        c.url("t_1_2"),
        "postgres://u:p@db.example:5433/t_1_2?sslmode=disable"
    );
    let c = Cluster::external("postgresql://localhost");
    assert_eq!(c.admin_url(), "postgresql://localhost/postgres");
    let c = Cluster::external("postgres://localhost:5432/");
    assert_eq!(c.url("x"), "postgres://localhost:5432/x");
}

/// For checking the watchdog by hand: run with `--ignored --nocapture`, then kill the test
/// process (`kill -9`, or Ctrl-C); the servers and directories printed must go away.
#[tokio::test]
#[ignore = "holds its clusters until killed"]
async fn hold_clusters_until_killed() {
    let shared = Cluster::shared().await;
    let private = Cluster::start_private().await;
    shared.create_database().await;
    private.create_database().await;
    println!(
        "holding {:?} and {:?}",
        shared.directory(),
        private.directory()
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
}
