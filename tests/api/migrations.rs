//! Migrations: sqlx's bookkeeping, applied once under concurrency, refused when tampered
//! with, and agreed on by sqlx-cli itself.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::http::get;
use common::pg::Cluster;
use common::service::{application_on, connect};
use pgbridge::db::migrate::{MigrateError, Migrator};

fn embedded_count() -> usize {
    Migrator::embedded().unwrap().migrations().len()
}

async fn applied_versions(url: &str) -> Vec<(i64, bool)> {
    let client = connect(url).await;
    client
        .query(
            "SELECT version, success FROM _sqlx_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn concurrent_runs_apply_each_migration_once() {
    let url = Cluster::shared().await.create_database().await;
    let runs = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { Migrator::embedded().unwrap().run_url(&url).await })
    });
    let mut total = 0;
    for run in futures_util::future::join_all(runs).await {
        total += run.unwrap().expect("every run succeeds").len();
    }
    assert_eq!(
        total,
        embedded_count(),
        "each migration applied exactly once in all"
    );
    let applied = applied_versions(&url).await;
    assert_eq!(applied.len(), embedded_count());
    assert!(applied.iter().all(|(_, ok)| *ok));
    // And again: nothing pending.
    assert!(
        Migrator::embedded()
            .unwrap()
            .run_url(&url)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Two services started at once on one new database (each applies the migrations at
/// start, as the binary does): both come up, and each migration is applied once.
#[tokio::test]
async fn two_services_started_together_both_come_up() {
    let url = Cluster::shared().await.create_database().await;
    let (first, second) = tokio::join!(
        application_on(url.clone(), |_| {}),
        application_on(url.clone(), |_| {}),
    );
    for service in [&first, &second] {
        assert_eq!(get(service.addr, "/readyz").await.status, 200);
        common::http::authenticate_by_default(service.addr); // /notes needs an account's token
        assert_eq!(
            get(service.addr, "/notes").await.status,
            200,
            "the schema is there"
        );
    }
    let applied = applied_versions(&url).await;
    assert_eq!(applied.len(), embedded_count(), "applied once: {applied:?}");
}

#[tokio::test]
async fn a_changed_or_missing_migration_is_refused() {
    let url = Cluster::shared().await.create_database().await;
    Migrator::from_files([("1_first.sql", "CREATE TABLE t (id int);")])
        .unwrap()
        .run_url(&url)
        .await
        .unwrap();

    let edited = Migrator::from_files([("1_first.sql", "CREATE TABLE t (id bigint);")]).unwrap();
    assert!(matches!(
        edited.run_url(&url).await,
        Err(MigrateError::Modified(1))
    ));

    let forgotten = Migrator::from_files([("2_second.sql", "SELECT 1;")]).unwrap();
    assert!(matches!(
        forgotten.run_url(&url).await,
        Err(MigrateError::Missing(1))
    ));

    // A failing migration changes nothing: its transaction rolls back, no row is recorded.
    let failing = Migrator::from_files([
        ("1_first.sql", "CREATE TABLE t (id int);"),
        (
            "2_broken.sql",
            "CREATE TABLE u (id int); SELECT * FROM no_such_table;",
        ),
    ])
    .unwrap();
    let err = failing.run_url(&url).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::Apply { version: 2, .. }),
        "{err}"
    );
    let client = connect(&url).await;
    let u_exists: bool = client
        .query_one("SELECT to_regclass('u') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!u_exists, "the failed migration's table was rolled back");
    assert_eq!(applied_versions(&url).await, vec![(1, true)]);
}

/// sqlx-cli agrees with the service about what is applied, and the service agrees with what
/// sqlx-cli applied.
#[tokio::test]
#[cfg_attr(
    skip_sqlx,
    ignore = "SKIPPED: needs sqlx-cli: cargo install sqlx-cli --locked --no-default-features --features postgres,rustls"
)]
async fn sqlx_cli_agrees() {
    let sqlx = common::programs::path("sqlx");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");

    // Applied by the service, reported as installed by sqlx-cli.
    let url = Cluster::shared().await.create_database().await;
    Migrator::embedded().unwrap().run_url(&url).await.unwrap();
    let info = run(&sqlx, &["migrate", "info", "--source"], &source, &url);
    assert!(
        !info.contains("pending"),
        "sqlx-cli sees pending migrations:\n{info}"
    );
    assert_eq!(
        info.matches("installed").count(),
        embedded_count(),
        "{info}"
    );
    let rerun = run(&sqlx, &["migrate", "run", "--source"], &source, &url);
    assert!(
        !rerun.contains("Applied"),
        "sqlx-cli re-applied something:\n{rerun}"
    );

    // Applied by sqlx-cli, accepted (checksums match) and not re-applied by the service.
    let url = Cluster::shared().await.create_database().await;
    run(&sqlx, &["migrate", "run", "--source"], &source, &url);
    let applied = Migrator::embedded()
        .unwrap()
        .run_url(&url)
        .await
        .expect("checksums agree");
    assert!(applied.is_empty(), "the service re-applied {applied:?}");
}

fn run(sqlx: &Path, args: &[&str], source: &Path, url: &str) -> String {
    let out = Command::new(sqlx)
        .args(args)
        .arg(source)
        .args(["--database-url", url])
        .output()
        .expect("run sqlx");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sqlx {args:?} failed:\n{text}");
    text
}
