//! [`Scoped`]: an exclusive pooled connection inside a short transaction that runs as the
//! row-level-security role, with one account set as the owner of everything it touches.
//!
//! The owner is set with `set_config('pgbridge.account_id', …, true)` and the role with
//! `SET LOCAL ROLE`: both end with the transaction, so nothing of one request can survive
//! into the next borrower's, and both work through PgBouncer in transaction mode. Because
//! they are transaction-local, a scope left open while the application works cannot share
//! its connection with other requests' pipelined statements: a `Scoped` holds its
//! connection alone from `BEGIN` to `COMMIT`. A scope whose statements are all known up
//! front goes as one unit instead ([`Scoped::once`] here, or on the shared connections
//! [`Shared::scope`](super::Shared::scope); see `db/unit.rs`).

use std::ops::Deref;

use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use super::replica::Lsn;
use super::unit::{self, ACCOUNT_SETTING, End, Owner, RLS_ROLE, Step, Unit};
use super::{Conn, DbError};

/// A connection in a transaction scoped to one account. Derefs to [`Conn`], so the same
/// statements run on it; [`commit`](Self::commit) ends it, and dropping it rolls back
/// before the connection goes back to the pool.
///
/// ```no_run
/// # async fn demo(db: pgbridge::db::Db) -> Result<(), pgbridge::db::DbError> {
/// use pgbridge::db::Scoped;
///
/// let scoped = Scoped::begin(db.conn().await?, 42).await?;
/// // No owner filter in the SQL: the policies return account 42's notes only.
/// let rows = scoped.query("SELECT id FROM notes", &[]).await?;
/// scoped.commit().await?;
/// # Ok(()) }
/// ```
pub struct Scoped {
    conn: Option<Conn>,
}

impl Scoped {
    /// `BEGIN`, `SET LOCAL ROLE`, and the owner, in one round trip.
    pub async fn begin(mut conn: Conn, account_id: i64) -> Result<Self, DbError> {
        conn.set_in_transaction(true);
        // An i64 formatted by Rust: nothing a client sent reaches this text.
        let sql = format!(
            "BEGIN; SET LOCAL ROLE {RLS_ROLE}; \
             SELECT set_config('{ACCOUNT_SETTING}', '{account_id}', true)"
        );
        let scoped = Self { conn: Some(conn) };
        // From here a failure drops `scoped`, which rolls back whatever began.
        scoped.guarded(scoped.client().batch_execute(&sql)).await?;
        Ok(scoped)
    }

    /// Opens a scope for the owner that `resolve` finds, in one round trip: `BEGIN`, then
    /// `resolve` run as the connecting user (so it may read tables the role cannot, such as
    /// sessions), then `SET LOCAL ROLE`, pipelined. `resolve` must itself call
    /// `set_config('pgbridge.account_id', …, true)` for the one row it returns; that row is
    /// returned with the scope. No row: `None`, and the transaction is rolled back.
    ///
    /// The three are sent in this order on the first poll; `resolve` goes as an unnamed
    /// statement with typed parameters, so no prepare round trip can reorder them.
    pub async fn begin_resolved(
        conn: Conn,
        resolve: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Option<(Self, Row)>, DbError> {
        let mut conn = conn;
        conn.set_in_transaction(true);
        let scoped = Self { conn: Some(conn) };
        let set_role = format!("SET LOCAL ROLE {RLS_ROLE}");
        let client = scoped.client();
        let (_, rows, _) = scoped
            .guarded(async {
                tokio::try_join!(
                    client.batch_execute("BEGIN"),
                    client.query_typed(resolve, params),
                    client.batch_execute(&set_role),
                )
            })
            .await?;
        Ok(rows.into_iter().next().map(|row| (scoped, row)))
    }

    /// A whole scope in one round trip: `BEGIN`, the owner's scope (the session lookup,
    /// the owner setting and the role, in one statement), `steps`, and `COMMIT` (with
    /// `with_lsn`, also the commit's WAL position, for read-your-writes) are written
    /// together before any answer is awaited (see `db/unit.rs`). A failing statement rolls
    /// the whole unit back and is returned as the error; a token with no live session gives
    /// [`Unit::session`] `None` (the statements saw no rows and wrote nothing).
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db, token_hash: Vec<u8>) -> Result<(), pgbridge::db::DbError> {
    /// use pgbridge::db::{Owner, Scoped, Step};
    ///
    /// let id = 7_i64;
    /// let unit = Scoped::once(
    ///     db.conn().await?,
    ///     Owner::TokenHash(&token_hash),
    ///     &[Step::new("SELECT title FROM notes WHERE id = $1", &[&id])],
    ///     false,
    /// )
    /// .await?;
    /// if unit.session.is_none() { /* 401 */ }
    /// let title: Option<String> = unit.rows[0].first().map(|row| row.get(0));
    /// # Ok(()) }
    /// ```
    pub async fn once(
        conn: Conn,
        owner: Owner<'_>,
        steps: &[Step<'_>],
        with_lsn: bool,
    ) -> Result<Unit, DbError> {
        let end = End::commit(with_lsn);
        let out = unit::run(&conn, Some(owner), steps, end).await;
        if out.is_err() {
            // A failed statement's unit ended with ROLLBACK; but after a failed COMMIT or
            // a lost answer the connection's state is unknown: back only after a rollback.
            rollback_in_background(conn);
        }
        out
    }

    /// Opens a scope and runs `steps` in it, in one round trip (as [`once`](Self::once),
    /// without the `COMMIT`): go on with the returned scope, and end it with
    /// [`finish`](Self::finish) (or [`commit`](Self::commit)). With no live session,
    /// [`Unit::session`] is `None`; drop the scope (it rolls back) and answer 401.
    ///
    /// ```no_run
    /// # async fn demo(db: pgbridge::db::Db, token_hash: Vec<u8>) -> Result<(), pgbridge::db::DbError> {
    /// use pgbridge::db::{Owner, Scoped, Step};
    ///
    /// let id = 7_i64;
    /// let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
    /// let select = [Step::new("SELECT version FROM notes WHERE id = $1 FOR UPDATE", &params)];
    /// let (scope, unit) = Scoped::open(db.conn().await?, Owner::TokenHash(&token_hash), &select).await?;
    /// let update = [Step::new("UPDATE notes SET title = 'x' WHERE id = $1", &params)];
    /// let done = scope.finish(&update, true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(
        mut conn: Conn,
        owner: Owner<'_>,
        steps: &[Step<'_>],
    ) -> Result<(Self, Unit), DbError> {
        let out = unit::run(&conn, Some(owner), steps, End::Open).await;
        // From here the transaction may be open: dropping the scope rolls it back.
        conn.set_in_transaction(true);
        let scoped = Self { conn: Some(conn) };
        Ok((scoped, out?))
    }

    /// Runs `steps` and commits, in one round trip (with `with_lsn`, also returns the
    /// commit's WAL position). A failing statement rolls everything back, the scope's
    /// earlier statements included, and is returned as the error.
    pub async fn finish(mut self, steps: &[Step<'_>], with_lsn: bool) -> Result<Unit, DbError> {
        let mut conn = self
            .conn
            .take()
            .ok_or(DbError::Config("scope already ended".into()))?;
        let end = End::commit(with_lsn);
        let out = unit::run(&conn, None, steps, end).await;
        match &out {
            Ok(_) => conn.set_in_transaction(false),
            Err(_) => rollback_in_background(conn),
        }
        out
    }

    /// Commits; the connection goes back to the pool.
    pub async fn commit(mut self) -> Result<(), DbError> {
        let mut conn = self
            .conn
            .take()
            .ok_or(DbError::Config("scope already ended".into()))?;
        let committed = conn.guarded(conn.client().batch_execute("COMMIT")).await;
        if committed.is_err() {
            // The connection's state is unknown: put it back only after a rollback.
            rollback_in_background(conn);
        } else {
            conn.set_in_transaction(false);
        }
        committed.map_err(Into::into)
    }

    /// Commits, and returns a WAL position at or past the commit record (for
    /// read-your-writes, see [`super::replica`]): `COMMIT` and
    /// `pg_current_wal_insert_lsn()` in one round trip, on this connection.
    pub async fn commit_lsn(mut self) -> Result<Lsn, DbError> {
        let mut conn = self
            .conn
            .take()
            .ok_or(DbError::Config("scope already ended".into()))?;
        let committed = conn
            .guarded(
                conn.client()
                    .simple_query("COMMIT; SELECT pg_current_wal_insert_lsn()::text"),
            )
            .await;
        let messages = match committed {
            Ok(messages) => messages,
            Err(err) => {
                rollback_in_background(conn);
                return Err(err.into());
            }
        };
        conn.set_in_transaction(false);
        let text = messages.iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        text.ok_or_else(|| "no row".to_owned())
            .and_then(|text| text.parse::<Lsn>())
            .map_err(|why| DbError::Unavailable(format!("pg_current_wal_insert_lsn: {why}")))
    }
}

impl Deref for Scoped {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("the connection is only taken out by commit and drop")
    }
}

impl Drop for Scoped {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            rollback_in_background(conn);
        }
    }
}

/// "Rollback of an abandoned scope failed", at most once per
/// [`INTERVAL`](crate::unavailable_log::INTERVAL).
static ROLLBACK_FAILED_LOG: crate::unavailable_log::RateLimit =
    crate::unavailable_log::RateLimit::new(crate::unavailable_log::INTERVAL);

/// Rolls back (after any cancel in flight has landed) and only then releases `conn`, so
/// the next borrower never finds this transaction, its role or its owner.
fn rollback_in_background(conn: Conn) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // No runtime: nothing can use the pool any more either.
        return;
    };
    runtime.spawn(async move {
        // Fails on a connection that died with its request (Postgres restarting): the
        // connection is then thrown away, and the line is rate-limited, not one per request.
        if let Err(err) = conn.guarded(conn.client().batch_execute("ROLLBACK")).await
            && let Some(left_out) = ROLLBACK_FAILED_LOG.admit(std::time::Instant::now())
        {
            tracing::warn!(error = %err, left_out, "rollback of an abandoned scope failed");
        }
        drop(conn);
    });
}

impl std::fmt::Debug for Scoped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoped").finish_non_exhaustive()
    }
}
