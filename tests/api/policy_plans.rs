//! The `note_events` policies use their index: opening a stream and replaying, run as the
//! service runs them (the scoped role, the owner setting, its own statements), are index
//! scans on `note_events (owner_id, id)` for an account with no events, whatever the other
//! tenants hold — many tenants, or one huge one.

use crate::common;

use common::accounts::Account;
use common::service::{connect, start_migrated};
use pgbridge::apps::notes::events::replay::{LATEST_SQL, PAGE_SQL};
use pgbridge::db::Scoped;

/// `EXPLAIN` of `sql` with `params`, in `owner`'s scope on the service's own pool.
async fn plan(
    db: &pgbridge::db::Db,
    owner: i64,
    generic: bool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> String {
    let scoped = Scoped::begin(db.conn().await.unwrap(), owner)
        .await
        .unwrap();
    let mode = if generic {
        "force_generic_plan"
    } else {
        "auto"
    };
    scoped
        .execute(&format!("SET LOCAL plan_cache_mode = {mode}"), &[])
        .await
        .unwrap();
    let rows = scoped
        .query(&format!("EXPLAIN {sql}"), params)
        .await
        .unwrap();
    drop(scoped);
    rows.iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_index_only(plan: &str, what: &str) {
    assert!(
        !plan.contains("Seq Scan on note_events "),
        "{what}: a sequential scan of every tenant's events:\n{plan}"
    );
    assert!(
        plan.contains("using note_events_owner_id_idx on note_events"),
        "{what}: not the (owner_id, id) index:\n{plan}"
    );
    assert!(
        !plan.contains("using note_events_pkey"),
        "{what}: walks the id index, filtering owners:\n{plan}"
    );
}

#[tokio::test]
async fn streams_and_replays_are_index_scans_for_an_empty_account() {
    let service = start_migrated(|_| {}).await;
    Account::new(service.addr, "empty").await;
    let admin = connect(&service.database_url).await;
    let empty: i64 = admin
        .query_one("SELECT id FROM accounts WHERE username = 'empty'", &[])
        .await
        .unwrap()
        .get(0);
    // Many tenants, then one huge one alone.
    for (what, owners) in [
        ("200 tenants", "100000 + g % 200"),
        ("one huge tenant", "99"),
    ] {
        admin
            .batch_execute(&format!(
                "DELETE FROM note_events; \
                 INSERT INTO note_events (note_id, kind, version, owner_id) \
                 SELECT g, 'created', 1, {owners} FROM generate_series(1, 100000) g; \
                 ANALYZE note_events"
            ))
            .await
            .unwrap();
        for generic in [false, true] {
            let what = format!("{what}, generic plan: {generic}");
            let latest = plan(&service.state.db, empty, generic, LATEST_SQL, &[]).await;
            assert_index_only(&latest, &format!("latest ({what})"));
            let after = 0_i64;
            let limit = 500_i64;
            let page = plan(
                &service.state.db,
                empty,
                generic,
                PAGE_SQL,
                &[&after, &None::<i64>, &limit],
            )
            .await;
            assert_index_only(&page, &format!("page ({what})"));
        }
    }
    // And what the plans say is what runs: the empty account sees nothing of the rest.
    let scoped = Scoped::begin(service.state.db.conn().await.unwrap(), empty)
        .await
        .unwrap();
    let seen: i64 = scoped
        .query_one("SELECT count(*) FROM note_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0);
}
