//! The service across a failover: a primary that turns read-only (SQLSTATE `25006`) and,
//! with the real programs, Patroni + etcd + HAProxy failing over and switching over under a
//! write load (see [`patroni`]).

use crate::common;

use std::time::{Duration, Instant};

use common::http::{get, send};
use common::pg::Cluster;
use common::service::{connect, start_on};
use pgbridge::db::migrate::Migrator;

mod patroni;

fn create(title: &str) -> http::Request<String> {
    http::Request::post("/notes")
        .header("Content-Type", "application/json")
        .body(format!(r#"{{"title":"{title}"}}"#))
        .expect("request")
}

/// The service's own backends (pool and shared path; not the `LISTEN` connection).
async fn service_backends(admin: &tokio_postgres::Client, database: &str) -> Vec<i32> {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = $1 AND application_name IN ('pgbridge', 'pgbridge-shared') \
             ORDER BY pid",
            &[&database],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// `default_transaction_read_only` for every session, existing ones included (a reload
/// reaches every backend at its next statement), as a demoted primary would refuse writes.
async fn set_read_only(admin: &tokio_postgres::Client, on: bool) {
    let sql = if on {
        "ALTER SYSTEM SET default_transaction_read_only = on"
    } else {
        "ALTER SYSTEM RESET default_transaction_read_only"
    };
    admin.batch_execute(sql).await.expect(sql);
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
}

#[tokio::test]
async fn a_read_only_primary_is_a_503_with_retry_after_and_its_connections_are_replaced() {
    let cluster = Cluster::start_private().await;
    let url = cluster.create_database().await;
    let database = url.rsplit('/').next().unwrap_or_default().to_owned();
    Migrator::embedded().unwrap().run_url(&url).await.unwrap();
    let service = start_on(url, |c| {
        c.db_pool_size = 1;
        c.db_shared_connections = 1;
        c.ready_timeout_ms = 2_000;
    })
    .await;
    let admin = connect(&cluster.admin_url()).await;
    assert_eq!(
        send(service.addr, create("before")).await.unwrap().status,
        201
    );
    assert_eq!(get(service.addr, "/notes").await.status, 200);
    let before = service_backends(&admin, &database).await;
    assert!(!before.is_empty(), "the service has connections open");
    let count_before = count_notes(&admin, &cluster, &database).await;

    set_read_only(&admin, true).await;
    // The reload reaches backends asynchronously: the first writes may still succeed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let reply = send(service.addr, create("refused")).await.unwrap();
        assert_ne!(reply.status, 500, "never a 500: {}", reply.text());
        if reply.status == 503 {
            break reply;
        }
        assert_eq!(reply.status, 201, "{}", reply.text());
        assert!(Instant::now() < deadline, "writes never became read-only");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.json()["error"]["code"], "database_unavailable");
    assert!(
        !refused.text().contains("read-only transaction"),
        "driver text stays in the log: {}",
        refused.text()
    );
    let written_while_flipping = count_notes(&admin, &cluster, &database).await;

    let ready = get(service.addr, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let body = ready.json();
    assert_eq!(body["status"], "read_only", "{body}");
    assert_eq!(body["database"], "read_only", "{body}");
    assert_eq!(body["error"]["code"], "database_read_only", "{body}");
    assert_eq!(body["last_failover_sign"]["sign"], "read_only", "{body}");
    assert_eq!(ready.header("retry-after"), Some("1"));
    // Reads still work on a read-only server.
    assert_eq!(get(service.addr, "/notes").await.status, 200);
    // A refused write changed nothing.
    for _ in 0..3 {
        let reply = send(service.addr, create("refused again")).await.unwrap();
        assert_eq!(reply.status, 503, "{}", reply.text());
    }
    assert_eq!(
        count_notes(&admin, &cluster, &database).await,
        written_while_flipping
    );
    assert!(written_while_flipping >= count_before);

    set_read_only(&admin, false).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = send(service.addr, create("after")).await.unwrap();
        assert_ne!(reply.status, 500, "never a 500: {}", reply.text());
        if reply.status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "writes never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = get(service.addr, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["database"], "writable");
    // The connections that were open when the server turned read-only were not reused:
    // every backend of the service now is a new one.
    let after = service_backends(&admin, &database).await;
    assert!(!after.is_empty());
    for pid in &after {
        assert!(
            !before.contains(pid),
            "backend {pid} predates the read-only error and was reused (before {before:?}, after {after:?})"
        );
    }
    let metrics = get(service.addr, "/metrics").await.text();
    let read_only_errors = metrics
        .lines()
        .find_map(|line| line.strip_prefix("pgbridge_db_read_only_errors_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("pgbridge_db_read_only_errors_total on /metrics");
    assert!(read_only_errors >= 1.0, "{read_only_errors}");
}

async fn count_notes(_admin: &tokio_postgres::Client, cluster: &Cluster, database: &str) -> i64 {
    let client = connect(&cluster.url(database)).await;
    client
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .expect("count")
        .get(0)
}
