//! Owner scopes on the shared connections: `BEGIN`, the scope statement (session, owner,
//! role), the request's statements and `COMMIT`, handed to one shared connection as one
//! unit that no other request's statement can split.
//!
//! Why that is enough for row-level security on a pipelined connection:
//!
//! - **Nothing splits the unit.** Every request on a shared connection is handed over under
//!   the link's `sending` lock ([`Link::send`](super::link::Link::send)); a unit hands over
//!   all its parts under one hold of it. tokio-postgres writes requests in the order they
//!   were handed over, and Postgres runs them in that order, so between this unit's `BEGIN`
//!   and its `COMMIT` the backend runs this unit's statements only.
//! - **Nothing outlives it.** The owner and the role are transaction-local
//!   (`set_config(…, true)`), and the unit always ends the transaction: its `COMMIT` is
//!   handed over with the rest, before any answer is awaited, so a caller that goes away
//!   cannot leave it open. A failing statement aborts the transaction; the statements after
//!   it fail with `25P02` and the `COMMIT` is a `ROLLBACK`. A statement that cannot even be
//!   sent (a parameter that does not encode) makes the unit end with `ROLLBACK`.
//! - **A cancel never hits a neighbour.** The unit holds one ticket, like a single
//!   statement: dropped while other tickets are in flight it runs to its end (its `COMMIT`
//!   included) and its answers are discarded; dropped as the connection's sole ticket, the
//!   fence cancels it (its transaction aborts and its own `COMMIT` rolls it back) and waits
//!   for the backend to be idle before the link takes anything new.

use std::sync::Arc;

use super::Shared;
use crate::db::DbError;
use crate::db::server_prepared;
use crate::db::unit::{self, End, Owner, Prepared, Step, Unit};

impl Shared {
    /// An owner scope in one round trip on a shared connection: the session lookup (or the
    /// account), the owner and the role, `steps`, and `COMMIT` (with `with_lsn`, also the
    /// commit's WAL position). A failing statement rolls the whole unit back and is the
    /// error; a token with no live session gives [`Unit::session`] `None`. See
    /// [`Scoped::once`](crate::db::Scoped::once) for the same on an exclusive connection.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db, token_hash: Vec<u8>) -> Result<(), pgbridge::db::DbError> {
    /// use pgbridge::db::{Owner, Step};
    ///
    /// let unit = db
    ///     .shared()
    ///     .scope(Owner::TokenHash(&token_hash), &[Step::new("SELECT id FROM notes", &[])], false)
    ///     .await?;
    /// let ids: Vec<i64> = unit.rows[0].iter().map(|row| row.get(0)).collect();
    /// # Ok(()) }
    /// ```
    pub async fn scope(
        &self,
        owner: Owner<'_>,
        steps: &[Step<'_>],
        with_lsn: bool,
    ) -> Result<Unit, DbError> {
        let end = End::commit(with_lsn);
        if let Some(unnamed) = &self.set.unnamed {
            // Boxed: only through a transaction pooler, and inline it would make every
            // scope's future larger, prepared connections' included.
            return Box::pin(self.scope_unnamed(unnamed, owner, steps, end)).await;
        }
        let ticket = self.set.acquire().await?;
        let link = ticket.link().clone();
        let mut prepared = Vec::with_capacity(steps.len() + 1);
        match unit::prepare_scope(owner, |sql| link.prepare(sql)).await {
            Ok(scope) => prepared.push(scope),
            Err(err) => return super::finish(ticket, Err(err)),
        }
        for sql in steps.iter().map(Step::sql) {
            match link.prepare(sql).await {
                Ok(statement) => prepared.push(Prepared::Named(statement)),
                Err(err) => return super::finish(ticket, Err(err)),
            }
        }
        let out = unit::submit(
            link.client(),
            Some(&link.sending),
            Some(owner),
            steps,
            &prepared,
            end,
            false,
        )
        .await;
        super::finish(ticket, out)
    }

    /// [`scope`](Self::scope) through a transaction pooler: each statement `EXECUTE`d by
    /// its name on the server connections when it has one, else unnamed; a unit that found
    /// a name missing on the server connection PgBouncer lent it (its transaction rolled
    /// back: nothing it did is kept) runs once more, preparing first
    /// ([`server_prepared`](crate::db::server_prepared)).
    async fn scope_unnamed(
        &self,
        unnamed: &super::Unnamed,
        owner: Owner<'_>,
        steps: &[Step<'_>],
        end: End,
    ) -> Result<Unit, DbError> {
        // Parameter types first (learnt on a pooled connection the first time a text is
        // seen), then a place on a link.
        let (_, scope_type) = unit::scope_statement(owner);
        let mut prepared = vec![Prepared::Unnamed(Arc::from([scope_type]))];
        for step in steps {
            let text = unnamed.learnt(step.sql()).await?;
            prepared.push(match text.server {
                Some(server) => Prepared::Execute(server),
                None => Prepared::Unnamed(text.types),
            });
        }
        let named = prepared
            .iter()
            .any(|how| matches!(how, Prepared::Execute(_)));
        let mut prepare_first = false;
        loop {
            let ticket = self.set.acquire().await?;
            let link = ticket.link().clone();
            let work = async {
                Ok::<_, tokio_postgres::Error>(
                    unit::submit(
                        link.client(),
                        Some(&link.sending),
                        Some(owner),
                        steps,
                        &prepared,
                        end,
                        prepare_first,
                    )
                    .await,
                )
            };
            match super::timed(ticket, unnamed.types.statement_timeout, work).await? {
                Err(err) if named && !prepare_first && server_prepared::is_missing(&err) => {
                    tracing::debug!(
                        "a server connection lacked a prepared statement; preparing it"
                    );
                    unnamed
                        .types
                        .server_prepares
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    prepare_first = true;
                }
                out => return out,
            }
        }
    }
}
