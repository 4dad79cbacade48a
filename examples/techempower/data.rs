//! The data functions both variants call: the same statements, the same work.

use std::cell::Cell;

use futures_util::future::try_join_all;
use pgbridge::db::{Conn, Db, DbError, Queries};
use serde::Serialize;
use tokio_postgres::types::ToSql;

use crate::fortunes_page;
use crate::shares::PoolShares;

/// A `world` row, as the benchmark's JSON names it.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct World {
    pub(crate) id: i32,
    #[serde(rename = "randomNumber")]
    pub(crate) random_number: i32,
}

pub(crate) const SELECT_WORLD: &str = "SELECT id, randomnumber FROM world WHERE id = $1";
pub(crate) const SELECT_FORTUNES: &str = "SELECT id, message FROM fortune";
pub(crate) const UPDATE_WORLDS: &str = "UPDATE world SET randomnumber = v.r \
     FROM (SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) AS v \
     WHERE world.id = v.id";

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

pub(crate) fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let addr = &nanos as *const u64 as u64;
    (nanos ^ addr.rotate_left(32)) | 1
}

/// 1..=10000, from a per-thread xorshift: cheap, and good enough to spread the ids.
pub(crate) fn random_id() -> i32 {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x % 10_000) as i32 + 1
    })
}

/// `queries`, clamped to 1..=500; anything unparsable is 1 (the benchmark's rule).
pub(crate) fn query_count(raw: Option<&str>) -> usize {
    raw.and_then(|q| q.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 500) as usize
}

/// One row, on the shared pipelined connections: a single short statement.
pub(crate) async fn one_world(db: &Db) -> Result<World, DbError> {
    let row = db.shared().query_one(SELECT_WORLD, &[&random_id()]).await?;
    Ok(World {
        id: row.get(0),
        random_number: row.get(1),
    })
}

/// The one pool every core takes its exclusive connections from under `RUNTIME=percore` with
/// `POOL_LAYOUT=process`, attached to each core's `Db`: one FIFO queue over all
/// `DB_POOL_SIZE` connections, as plain axum + deadpool has. With a pool per core
/// (`POOL_LAYOUT=percore`), a core that falls behind does so on its own queue while the
/// other's stays short, and its clients see several times the other core's latency; one
/// queue evens them out, at the price of a wake-up of the other core for a connection it
/// opened. `POOL_LAYOUT=steal` (the default, [`PoolShares`]) evens them out only for the
/// requests its own queue has kept waiting.
#[derive(Clone)]
pub(crate) struct ProcessPool(pub(crate) Db);

/// An exclusive connection: from the [`ProcessPool`] attached to `db` if there is one, else
/// by the [`PoolShares`] attached to it if there are (`POOL_LAYOUT=steal`), else from
/// `db`'s own pool.
pub(crate) async fn exclusive(db: &Db) -> Result<Conn, DbError> {
    if let Some(pool) = db.extension::<ProcessPool>() {
        return pool.0.conn().await;
    }
    match db.extension::<PoolShares>() {
        Some(shares) => shares.conn().await,
        None => db.conn().await,
    }
}

/// Where a request's `n` statements go: fan-outs of at least `FANOUT_TO_POOL` statements
/// (default 8; `0`: never) run pipelined on one pooled connection of their own, smaller
/// ones on the shared connections. Read once.
pub(crate) fn fanout_to_pool() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        std::env::var("FANOUT_TO_POOL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8)
    })
}

/// `n` rows, all in flight at once: on a pooled connection of its own for a large fan-out
/// (see [`fanout_to_pool`]), else on the shared connections.
pub(crate) async fn many_worlds(db: &Db, n: usize) -> Result<Vec<World>, DbError> {
    let min = fanout_to_pool();
    if min > 0 && n >= min {
        many_worlds_pooled(db, n).await
    } else {
        many_worlds_shared(db, n).await
    }
}

/// `n` rows on the shared connections, pipelined with every other request's statements.
pub(crate) async fn many_worlds_shared(db: &Db, n: usize) -> Result<Vec<World>, DbError> {
    let conn = db.shared();
    let ids: Vec<i32> = (0..n).map(|_| random_id()).collect();
    let params: Vec<[&(dyn ToSql + Sync); 1]> =
        ids.iter().map(|id| [id as &(dyn ToSql + Sync)]).collect();
    let rows = try_join_all(params.iter().map(|p| conn.query_one(SELECT_WORLD, p))).await?;
    Ok(worlds(&rows))
}

/// `n` rows pipelined on one exclusive pooled connection: the request's statements do not
/// queue behind other requests' on the two shared connections, and the pool's backends
/// work in parallel.
pub(crate) async fn many_worlds_pooled(db: &Db, n: usize) -> Result<Vec<World>, DbError> {
    let conn = exclusive(db).await?;
    let ids: Vec<i32> = (0..n).map(|_| random_id()).collect();
    let params: Vec<[&(dyn ToSql + Sync); 1]> =
        ids.iter().map(|id| [id as &(dyn ToSql + Sync)]).collect();
    let rows = try_join_all(params.iter().map(|p| conn.query_one(SELECT_WORLD, p))).await?;
    Ok(worlds(&rows))
}

fn worlds(rows: &[tokio_postgres::Row]) -> Vec<World> {
    rows.iter()
        .map(|row| World {
            id: row.get(0),
            random_number: row.get(1),
        })
        .collect()
}

/// The obvious version: one query after another, on an exclusive connection.
pub(crate) async fn many_worlds_sequentially(db: &Db, n: usize) -> Result<Vec<World>, DbError> {
    let conn = exclusive(db).await?;
    let mut worlds = Vec::with_capacity(n);
    for _ in 0..n {
        let row = conn.query_one(SELECT_WORLD, &[&random_id()]).await?;
        worlds.push(World {
            id: row.get(0),
            random_number: row.get(1),
        });
    }
    Ok(worlds)
}

/// Reads `n` rows (pipelined), gives each a new number, and writes them back in one
/// statement, ids sorted so that concurrent updates lock rows in the same order.
pub(crate) async fn update_worlds(db: &Db, n: usize) -> Result<Vec<World>, DbError> {
    let mut worlds = many_worlds(db, n).await?;
    for world in &mut worlds {
        world.random_number = random_id();
    }
    let mut sorted = worlds.clone();
    sorted.sort_by_key(|w| w.id);
    sorted.dedup_by_key(|w| w.id);
    let ids: Vec<i32> = sorted.iter().map(|w| w.id).collect();
    let numbers: Vec<i32> = sorted.iter().map(|w| w.random_number).collect();
    // One statement: the shared path too.
    db.shared()
        .execute(UPDATE_WORLDS, &[&ids, &numbers])
        .await?;
    // A repeated id was written once, with its last number: answer consistently.
    for world in &mut worlds {
        if let Some(written) = sorted.iter().find(|w| w.id == world.id) {
            world.random_number = written.random_number;
        }
    }
    Ok(worlds)
}

/// The fortunes page: the rows, one more added now, sorted by message, escaped. The rows'
/// messages are borrowed, not copied; ids are written without a `String` each.
pub(crate) async fn fortunes_html(db: &Db) -> Result<String, DbError> {
    let rows = db.shared().query(SELECT_FORTUNES, &[]).await?;
    Ok(fortunes_page::page(&rows)?)
}
