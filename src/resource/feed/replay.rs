//! Reading stored events a page at a time, and pruning old ones.
//!
//! A page and the pruning horizon are read in one statement, so in one snapshot: either the
//! page is complete after the reader's last id, or the reader is told to reset. Pruning
//! deletes a small batch per transaction and raises the horizon in the same transaction;
//! `SKIP LOCKED` lets replicas prune side by side without waiting on each other.
//!
//! Pages are read in an owner scope ([`Scoped`]): row-level security shows the reader its
//! own events only, and "the newest event" is its own newest. The horizon is one row for
//! every owner. Pruning runs as the service's own role in no owner's scope; it says so with
//! the transaction-local `pgbridge.pruning` setting, which the events tables' policies let
//! read, lock and delete any owner's events — for members of `pgbridge_pruner` only, so a
//! scoped statement meets one policy, `owner_id = …`, which the `(owner_id, id)` index
//! serves (see the migrations `…_accounts_and_ownership` and `…_policies_use_index`).
//!
//! Every statement is the resource's, from its [`FeedSpec`].

use std::time::Duration;

use bytes::Bytes;

use crate::db::{Db, DbError, Scoped};

use super::{Event, FeedSpec};

/// What one catch-up query found.
#[derive(Debug)]
pub enum Page {
    /// Up to a page of events after the reader's last id, in id order.
    Events(Vec<Event>),
    /// Events after the reader's last id were pruned: it must re-read the collection and
    /// follow the stream from `latest`, the reader's newest stored id (or the horizon, if
    /// that is later).
    Reset {
        /// Where the stream resumes.
        latest: i64,
    },
}

/// Reads `owner`'s events of `spec`'s resource after `after` (for `item` only, if given),
/// at most `limit` of them, in `owner`'s scope.
pub async fn page(
    db: &Db,
    spec: &FeedSpec,
    owner: i64,
    after: i64,
    item: Option<i64>,
    limit: i64,
) -> Result<Page, DbError> {
    let conn = Scoped::begin(db.conn().await?, owner).await?;
    // `latest` is never below the horizon: every event up to it may be gone, and one of
    // this owner's events above it would be its newest. A reader resumed there is not
    // told to reset again.
    let rows = conn.query(spec.page, &[&after, &item, &limit]).await?;
    conn.commit().await?;
    let Some(first) = rows.first() else {
        return Ok(Page::Events(Vec::new()));
    };
    let pruned_through: i64 = first.get(0);
    if after < pruned_through {
        return Ok(Page::Reset {
            latest: first.get(1),
        });
    }
    let events = rows
        .iter()
        .filter_map(|row| {
            Some(Event {
                id: row.get::<_, Option<i64>>(2)?,
                noun: spec.noun.to_owned(),
                item_id: row.get(3),
                kind: row.get(4),
                version: row.get(5),
                at: row.get(6),
                owner_id: owner,
            })
        })
        .collect();
    Ok(Page::Events(events))
}

/// Where a stream of `owner` with no `Last-Event-ID` begins: `owner`'s newest stored
/// event, or the pruning horizon if that is later (so that the stream's first catch-up is
/// not a reset because other owners' events were pruned).
pub async fn latest(db: &Db, spec: &FeedSpec, owner: i64) -> Result<i64, DbError> {
    let conn = Scoped::begin(db.conn().await?, owner).await?;
    let row = conn.query_one(spec.latest, &[]).await?;
    conn.commit().await?;
    Ok(row.get(0))
}

/// The frame that tells a client its `Last-Event-ID` is older than the kept history:
/// re-read the collection, then keep following this stream (which resumes at `latest`).
pub fn reset_frame(latest: i64) -> Bytes {
    Bytes::from(format!(
        "id: {latest}\nevent: reset\ndata: {{\"reset\":true,\"id\":{latest},\
         \"message\":\"events after your Last-Event-ID were pruned; re-read the collection\"}}\n\n"
    ))
}

/// Events pruned per transaction.
pub const PRUNE_BATCH: i64 = 1000;

/// Deletes up to `batch` of the oldest events older than `retention` and raises the
/// horizon past them, in one transaction. Returns how many it deleted.
pub async fn prune_batch(
    db: &Db,
    spec: &FeedSpec,
    retention: Duration,
    batch: i64,
) -> Result<u64, DbError> {
    let mut conn = db.conn().await?;
    let tx = conn.transaction().await?;
    // No owner scope: the pruning policies let this transaction see every owner's events
    // (a superuser bypasses the policies anyway; the tables' owner does not, under FORCE).
    tx.execute("SELECT set_config('pgbridge.pruning', 'on', true)", &[])
        .await?;
    let secs = retention.as_secs_f64();
    let row = tx.query_one(spec.prune, &[&secs, &batch]).await?;
    tx.commit().await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// Prunes every event older than `retention`, a batch per transaction. Returns how many.
pub async fn prune(
    db: &Db,
    spec: &FeedSpec,
    retention: Duration,
    batch: i64,
) -> Result<u64, DbError> {
    let mut total = 0;
    loop {
        let n = prune_batch(db, spec, retention, batch).await?;
        total += n;
        if n < u64::try_from(batch).unwrap_or(0) {
            return Ok(total);
        }
        // Let other work have the table between batches.
        tokio::task::yield_now().await;
    }
}

/// Prunes every `interval` until `stopped` turns true. `retention` zero keeps everything.
pub async fn run_pruner(
    db: Db,
    spec: &'static FeedSpec,
    retention: Duration,
    interval: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    if retention.is_zero() {
        return;
    }
    let mut tick = super::every(interval.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        match prune(&db, spec, retention, PRUNE_BATCH).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                pruned = n,
                ?retention,
                events = spec.channel,
                "pruned old events"
            ),
            Err(err) => {
                tracing::warn!(error = %err, events = spec.channel, "could not prune events")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_frame_is_one_sse_event_with_an_id() {
        let frame = reset_frame(42);
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(text.starts_with("id: 42\nevent: reset\ndata: {"));
        assert!(text.ends_with("}\n\n") && text.matches("\n\n").count() == 1);
        let data: serde_json::Value =
            serde_json::from_str(text.lines().nth(2).unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
        assert_eq!(
            (data["reset"].as_bool(), data["id"].as_i64()),
            (Some(true), Some(42))
        );
    }
}
