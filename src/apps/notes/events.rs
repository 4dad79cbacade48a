//! `GET /notes/events`: the kit's change feed ([`crate::resource::feed`]) for notes — the
//! `note_events` table, its horizon and its channel, with `event: note` frames carrying
//! `note_id`. Here: the notes' names for its parts.

pub use crate::resource::feed::{Broadcast, Event as NoteEvent, Feed};

use crate::resource::feed::FeedSpec;

/// The notes' feed: tables, channel and statements (what `Notes::SPEC.feed` holds too; a
/// constant of its own, so that `apps::Apps` starts it without naming the routes).
pub const FEED: &FeedSpec = &crate::feed_spec!("notes", "note");

/// The channel the trigger notifies.
pub const CHANNEL: &str = FEED.channel;

/// Reading the notes' stored events a page at a time, and pruning old ones
/// ([`crate::resource::feed::replay`] with the notes' [`FEED`]).
pub mod replay {
    use std::time::Duration;

    use super::FEED;
    use crate::db::{Db, DbError};
    pub use crate::resource::feed::replay::{PRUNE_BATCH, Page, reset_frame};

    /// A page: `$1` the reader's last id, `$2` the note or NULL, `$3` the page size. Run in
    /// the owner's scope, it is an index scan on `note_events (owner_id, id)`
    /// (tests/api/policy_plans.rs asserts the plan).
    pub const PAGE_SQL: &str = FEED.page;
    /// Where a stream begins, in the owner's scope.
    pub const LATEST_SQL: &str = FEED.latest;

    /// `owner`'s note events after `after` (for `note` only), at most `limit`.
    pub async fn page(
        db: &Db,
        owner: i64,
        after: i64,
        note: Option<i64>,
        limit: i64,
    ) -> Result<Page, DbError> {
        crate::resource::feed::replay::page(db, FEED, owner, after, note, limit).await
    }

    /// Where a stream of `owner` with no `Last-Event-ID` begins.
    pub async fn latest(db: &Db, owner: i64) -> Result<i64, DbError> {
        crate::resource::feed::replay::latest(db, FEED, owner).await
    }

    /// Prunes every note event older than `retention`, `batch` per transaction.
    pub async fn prune(db: &Db, retention: Duration, batch: i64) -> Result<u64, DbError> {
        crate::resource::feed::replay::prune(db, FEED, retention, batch).await
    }
}

#[cfg(test)]
mod tests {
    use crate::resource::Resource;

    #[test]
    fn the_feed_is_the_resources() {
        let spec = &super::super::Notes::SPEC.feed;
        assert_eq!(
            (spec.page, spec.prune),
            (super::FEED.page, super::FEED.prune)
        );
    }
}
