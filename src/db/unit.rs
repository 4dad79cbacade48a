//! One owner scope in one round trip: `BEGIN`, the scope statement (the owner and the
//! role), the request's statements and `COMMIT`, all written to Postgres before any answer
//! is awaited.
//!
//! tokio-postgres writes a request the first time its future is polled and matches the
//! answers in order, so polling every part once, in order, before waiting on any of them
//! sends the whole unit in one batch. Every part carries its own `Sync` (tokio-postgres
//! gives no way to put several `Execute`s under one), so the unit is an explicit
//! transaction: a failing statement aborts it, the statements after it fail with
//! `25P02`, and the `COMMIT` at the end becomes a `ROLLBACK` — the whole unit rolls back.
//!
//! Through a transaction pooler (statements unnamed), `BEGIN` and the scope statement go as
//! one simple query (`scope_text`): one `Sync` fewer per unit, which is what a unit costs
//! there (a flush by Postgres, a wake-up of PgBouncer and of the connection task each);
//! and a statement that can be prepared there by name goes as `EXECUTE pgbridge_…(…)`
//! ([`Prepared::Execute`], [`super::server_prepared`]).
//! Directly, a known account's scope (the session cache's answer, the common case) goes the
//! same way — `BEGIN` and two `SET LOCAL`s, nothing to plan — so a cached read is three
//! parts (scope, statement, `COMMIT`), not four: one response channel, one `Sync` and one
//! flush fewer; a token's scope stays a prepared statement (planned once per connection).
//!
//! The scope statement always returns one row (the `SET LOCAL`s of a known account's scope
//! through a pooler: none) and always sets the role, so the request's
//! statements never run outside row-level security: with no live session the owner is
//! unset, the policies show nothing, a write fails, and the caller answers 401 (see
//! [`Unit::session`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, SimpleQueryMessage};

use super::pooler::{self, StatementTypes};
use super::replica::Lsn;
use super::server_prepared::ServerPrepared;
use super::{Conn, DbError};

/// The role the policies apply to: not a superuser, not `BYPASSRLS`, not the tables'
/// owner (created by the migration `…_accounts_and_ownership.sql`).
pub const RLS_ROLE: &str = "pgbridge_rls";

/// The transaction-local setting the policies read (`owner_id = nullif(current_setting(
/// 'pgbridge.account_id', true), '')::bigint`; also `pgbridge_current_account()`).
pub const ACCOUNT_SETTING: &str = "pgbridge.account_id";

/// The scope statement for a bearer token's hash: the session (or none) and, always, the
/// owner setting and the role, as the connecting user (who may read `sessions`). One row
/// whatever the token: `(session id, account id, …, seconds the session has left)`, all
/// `NULL` for no live session. The seconds left are counted from the statement's own
/// clock reading (`clock_timestamp()`, not the transaction's start), so that a cache
/// counting them from before it sent the unit never keeps the session past its expiry.
const BY_TOKEN: &str = const_format_scope(
    "SELECT s.id, s.account_id, \
       set_config('pgbridge.account_id', coalesce(s.account_id::text, ''), true), \
       set_config('role', 'pgbridge_rls', true), \
       extract(epoch FROM s.expires_at - clock_timestamp())::float8 \
     FROM (SELECT $1::bytea AS hash) t \
     LEFT JOIN sessions s ON s.token_hash = t.hash AND s.revoked_at IS NULL AND s.expires_at > now()",
);

/// The scope statement for a known account (a standby read, after the session was
/// resolved on the primary; event replays).
const BY_ACCOUNT: &str = const_format_scope(
    "SELECT NULL::bigint, $1::bigint, \
       set_config('pgbridge.account_id', $1::bigint::text, true), \
       set_config('role', 'pgbridge_rls', true)",
);

/// The scope as text, `BEGIN` included, for one simple query (transaction-pooler mode, where
/// the scope statement would otherwise go unnamed, with a `Sync` of its own: one round of
/// PgBouncer's event loop and one `ReadyForQuery` fewer per unit). Only values Rust
/// formats reach the text: the account as an `i64`, the token's hash as hex digits inside
/// `decode(…, 'hex')` — nothing a client sent, and no character that needs quoting.
///
/// For a known account the scope is two `SET LOCAL`s (the same transaction-local settings as
/// `set_config(…, true)`, with nothing to plan and no row to send back); for a token, the
/// scope statement, whose row says whose session it is.
///
/// ```text
/// BEGIN; SET LOCAL pgbridge.account_id = '42'; SET LOCAL ROLE pgbridge_rls
/// BEGIN; SELECT s.id, s.account_id, … FROM (SELECT decode('9f86…', 'hex')::bytea AS hash) t …
/// ```
fn scope_text(owner: Owner<'_>) -> String {
    use std::fmt::Write;

    match owner {
        Owner::TokenHash(hash) => {
            let mut value = String::from("decode('");
            for byte in hash {
                // Writing to a String cannot fail.
                let _ = write!(value, "{byte:02x}");
            }
            value.push_str("', 'hex')");
            format!("BEGIN; {}", BY_TOKEN.replace("$1", &value))
        }
        Owner::Account(id) => {
            format!("BEGIN; SET LOCAL {ACCOUNT_SETTING} = '{id}'; SET LOCAL ROLE {RLS_ROLE}")
        }
    }
}

/// Keeps the setting and role names in the SQL above in step with the constants.
const fn const_format_scope(sql: &'static str) -> &'static str {
    assert!(matches!(ACCOUNT_SETTING.as_bytes(), b"pgbridge.account_id"));
    assert!(matches!(RLS_ROLE.as_bytes(), b"pgbridge_rls"));
    sql
}

/// Whose scope a unit opens.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    /// The account whose live session has this token hash (`auth::token::hash`); none if
    /// the session is unknown, expired or revoked.
    TokenHash(&'a [u8]),
    /// This account.
    Account(i64),
}

/// One statement of a unit: its text and its parameters.
///
/// ```
/// let id = 7_i64;
/// let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
/// let step = pgbridge::db::Step::new("SELECT title FROM notes WHERE id = $1", &params);
/// # let _ = step;
/// ```
pub struct Step<'a> {
    sql: &'a str,
    params: &'a [&'a (dyn ToSql + Sync)],
}

impl<'a> Step<'a> {
    /// `sql` with `params`.
    pub fn new(sql: &'a str, params: &'a [&'a (dyn ToSql + Sync)]) -> Self {
        Self { sql, params }
    }

    /// Its text.
    pub(crate) fn sql(&self) -> &'a str {
        self.sql
    }
}

impl std::fmt::Debug for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("sql", &self.sql)
            .finish_non_exhaustive()
    }
}

/// How a unit ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The transaction stays open (a [`Scoped`](super::Scoped) goes on with it).
    Open,
    /// `COMMIT`.
    Commit,
    /// `COMMIT`, then the WAL position at or past the commit record.
    CommitLsn,
}

impl End {
    /// `COMMIT`, with the commit's WAL position when `with_lsn` (for read-your-writes).
    pub(crate) fn commit(with_lsn: bool) -> Self {
        if with_lsn {
            Self::CommitLsn
        } else {
            Self::Commit
        }
    }
}

/// What a unit answered.
#[derive(Debug)]
pub struct Unit {
    /// `(session id, account id)` of the live session the token belongs to; `None` for no
    /// such session (answer 401; nothing the unit's statements did was committed with
    /// an owner, and reads saw no rows). For [`Owner::Account`]: `(0, account)`.
    pub session: Option<(i64, i64)>,
    /// For [`Owner::TokenHash`] with a live session: how long the session has left when the
    /// scope statement ran (a session cache keeps it no longer).
    pub session_expires_in: Option<std::time::Duration>,
    /// Each statement's rows, in order (empty when `session` is `None`).
    pub rows: Vec<Vec<Row>>,
    /// For a unit that committed with its position (`with_lsn`): the commit's WAL position.
    pub lsn: Option<Lsn>,
}

/// An answer of one part of the unit.
enum Answer {
    Rows(Vec<Row>),
    Simple(Vec<SimpleQueryMessage>),
}

type Part<'a> = Pin<Box<dyn Future<Output = Result<Answer, tokio_postgres::Error>> + Send + 'a>>;

/// Runs one unit on `conn`: `BEGIN` and the scope statement when `owner` is given (else
/// the statements join the transaction open on `conn`), `steps`, then `end`.
///
/// Guarded like any statement of `conn` (cancel on drop, and in transaction-pooler mode
/// the client-side statement timeout).
pub(crate) async fn run(
    conn: &Conn,
    owner: Option<Owner<'_>>,
    steps: &[Step<'_>],
    end: End,
) -> Result<Unit, DbError> {
    let unnamed = conn.unnamed().cloned();
    // Statement texts are prepared (once per connection) or, through a transaction pooler,
    // have their parameter types learnt (once per text) before the unit: nothing in it
    // may wait for anything but its own answer.
    let prepared = prepare(conn, owner, steps, unnamed.as_deref()).await?;
    let work = conn.guarded(submit(
        conn.client(),
        None,
        owner,
        steps,
        &prepared,
        end,
        false,
    ));
    match &unnamed {
        Some(types) => {
            let timed = async { Ok::<_, tokio_postgres::Error>(work.await) };
            conn.canceller()
                .timed(types.statement_timeout, timed)
                .await?
        }
        None => work.await,
    }
}

/// How each statement of the unit goes: prepared, or unnamed with these types, or (the
/// scope only) as text with `BEGIN`, in one simple query.
pub(crate) enum Prepared {
    Named(tokio_postgres::Statement),
    Unnamed(Arc<[Type]>),
    /// Through a transaction pooler, a statement prepared by name on the server connections
    /// (`EXECUTE pgbridge_…(…)`, see [`super::server_prepared`]).
    Execute(Arc<ServerPrepared>),
    /// The scope of a known account on a connection whose statements are prepared:
    /// `BEGIN` and its two `SET LOCAL`s in one simple query ([`scope_text`]), not `BEGIN`
    /// and a prepared statement — one part, so one response channel, one `Sync` and one
    /// `ReadyForQuery` fewer per unit, and nothing for Postgres to plan or return.
    Text,
}

/// How the scope of `owner` goes on a connection whose statements are prepared: a known
/// account's as text with `BEGIN` ([`Prepared::Text`]); a token's as the prepared scope
/// statement (planned once per connection, where the text would be planned every time).
pub(crate) async fn prepare_scope<F, Fut>(owner: Owner<'_>, prepare: F) -> Result<Prepared, DbError>
where
    F: FnOnce(&'static str) -> Fut,
    Fut: Future<Output = Result<tokio_postgres::Statement, DbError>>,
{
    match owner {
        Owner::Account(_) => Ok(Prepared::Text),
        Owner::TokenHash(_) => Ok(Prepared::Named(prepare(BY_TOKEN).await?)),
    }
}

/// The scope statement for `owner`, and its parameter's type.
pub(crate) fn scope_statement(owner: Owner<'_>) -> (&'static str, Type) {
    match owner {
        Owner::TokenHash(_) => (BY_TOKEN, Type::BYTEA),
        Owner::Account(_) => (BY_ACCOUNT, Type::INT8),
    }
}

async fn prepare(
    conn: &Conn,
    owner: Option<Owner<'_>>,
    steps: &[Step<'_>],
    unnamed: Option<&StatementTypes>,
) -> Result<Vec<Prepared>, DbError> {
    let mut out = Vec::with_capacity(steps.len() + 1);
    if let Some(owner) = owner {
        out.push(match unnamed {
            None => prepare_scope(owner, |sql| conn.prepare(sql)).await?,
            Some(_) => Prepared::Unnamed(Arc::from([scope_statement(owner).1])),
        });
    }
    for step in steps {
        out.push(match unnamed {
            None => Prepared::Named(conn.prepare(step.sql).await?),
            Some(types) => {
                let client: &tokio_postgres::Client = conn.client();
                // Before the unit's BEGIN (a new scope) no transaction is open; after
                // it (an open scope) one is.
                let learnt = if owner.is_some() {
                    conn.guarded(types.outside_tx(client, step.sql)).await
                } else {
                    conn.guarded(types.in_tx(client, step.sql)).await
                };
                Prepared::Unnamed(learnt?)
            }
        });
    }
    Ok(out)
}

fn part<'a>(
    client: &'a tokio_postgres::Client,
    sql: &'a str,
    how: &'a Prepared,
    params: &'a [&'a (dyn ToSql + Sync)],
) -> Part<'a> {
    match how {
        Prepared::Named(statement) => {
            Box::pin(async move { client.query(statement, params).await.map(Answer::Rows) })
        }
        Prepared::Unnamed(types) => {
            let typed = pooler::typed(params, types);
            Box::pin(async move { client.query_typed(sql, &typed).await.map(Answer::Rows) })
        }
        Prepared::Execute(server) => match server.execute(params) {
            Some(execute) => {
                Box::pin(async move { client.query_typed(&execute, &[]).await.map(Answer::Rows) })
            }
            // A parameter that does not encode: unnamed, which reports why.
            None => {
                let typed = pooler::typed(params, server.types());
                Box::pin(async move { client.query_typed(sql, &typed).await.map(Answer::Rows) })
            }
        },
        // Never: only the scope goes as text (`submit` sends it itself); the steps are
        // prepared `Named` or `Unnamed`. An empty answer, were it reached: no row shown.
        Prepared::Text => Box::pin(std::future::ready(Ok(Answer::Rows(Vec::new())))),
    }
}

fn simple<'a>(client: &'a tokio_postgres::Client, sql: &'static str) -> Part<'a> {
    Box::pin(async move { client.simple_query(sql).await.map(Answer::Simple) })
}

fn simple_owned(client: &tokio_postgres::Client, sql: String) -> Part<'_> {
    Box::pin(async move { client.simple_query(&sql).await.map(Answer::Simple) })
}

/// A simple query whose answer is only whether it succeeded (`BEGIN`, `COMMIT`, a known
/// account's scope): its messages are neither parsed nor collected.
fn batch<'a>(client: &'a tokio_postgres::Client, sql: impl AsRef<str> + Send + 'a) -> Part<'a> {
    Box::pin(async move {
        client
            .batch_execute(sql.as_ref())
            .await
            .map(|()| Answer::Simple(Vec::new()))
    })
}

/// The scope statement's one row, read from its answer: `(session id, account id,
/// seconds the session has left)`, each `None` when `NULL`. The answer is binary rows
/// (a prepared or unnamed statement) or text (the simple query of `scope_text`).
fn scope_row(answer: Answer) -> Option<(Option<i64>, Option<i64>, Option<f64>)> {
    match answer {
        Answer::Rows(rows) => rows.into_iter().next().map(|row| {
            let left = if row.len() > 4 { row.get(4) } else { None };
            (row.get(0), row.get(1), left)
        }),
        Answer::Simple(messages) => messages.into_iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => {
                let text = |i: usize| row.try_get(i).ok().flatten();
                let int = |i: usize| text(i).and_then(|text| text.parse::<i64>().ok());
                let left = text(4).and_then(|text| text.parse::<f64>().ok());
                Some((int(0), int(1), left))
            }
            _ => None,
        }),
    }
}

/// Polls `parts[from..]` once each, in order, recording those already answered; returns
/// whether any of them failed already (before it was sent: a parameter that does not
/// encode, or a closed connection).
fn first_poll(
    parts: &mut [Part<'_>],
    answers: &mut Vec<Option<Result<Answer, tokio_postgres::Error>>>,
    from: usize,
    cx: &mut Context<'_>,
) -> bool {
    let mut failed = false;
    for part in &mut parts[from..] {
        let answer = match part.as_mut().poll(cx) {
            Poll::Ready(answer) => Some(answer),
            Poll::Pending => None,
        };
        failed |= matches!(answer, Some(Err(_)));
        answers.push(answer);
    }
    failed
}

/// Sends the unit — every part written before any answer is awaited, all under `hold`
/// if given (so that no one else's request sent on `client` under the same lock can come
/// between them) — and reads the answers.
///
/// With `prepare_first`, the scope's simple query also prepares every
/// [`Prepared::Execute`] statement on the server connection, unless already there: the
/// retry of a unit whose `EXECUTE` found it missing ([`super::server_prepared`]).
pub(crate) async fn submit(
    client: &tokio_postgres::Client,
    hold: Option<&std::sync::Mutex<()>>,
    owner: Option<Owner<'_>>,
    steps: &[Step<'_>],
    prepared: &[Prepared],
    end: End,
    prepare_first: bool,
) -> Result<Unit, DbError> {
    let (token_hash, account_id): (&[u8], i64) = match owner {
        Some(Owner::TokenHash(hash)) => (hash, 0),
        Some(Owner::Account(id)) => (&[], id),
        None => (&[], 0),
    };
    let scope_params: [&(dyn ToSql + Sync); 1] = match owner {
        Some(Owner::TokenHash(_)) => [&token_hash],
        _ => [&account_id],
    };
    let mut parts: Vec<Part<'_>> = Vec::with_capacity(steps.len() + 3);
    let mut prepared = prepared.iter();
    if let Some(owner) = owner {
        let how = prepared
            .next()
            .expect("prepare() returns the scope statement first");
        match how {
            // Through a transaction pooler, or a known account's scope: BEGIN and the
            // scope in one simple query.
            // A known account's scope returns no row; a token's returns the session's.
            Prepared::Unnamed(_) | Prepared::Text | Prepared::Execute(_) => {
                let mut text = scope_text(owner);
                if prepare_first {
                    for how in prepared.clone() {
                        if let Prepared::Execute(server) = how {
                            text.push_str("; ");
                            text.push_str(server.ensure());
                        }
                    }
                }
                parts.push(match owner {
                    Owner::Account(_) => batch(client, text),
                    Owner::TokenHash(_) => simple_owned(client, text),
                });
            }
            Prepared::Named(_) => {
                let (sql, _) = scope_statement(owner);
                parts.push(batch(client, "BEGIN"));
                parts.push(part(client, sql, how, &scope_params));
            }
        }
    }
    let scope_parts = parts.len();
    for (step, how) in steps.iter().zip(prepared) {
        parts.push(part(client, step.sql, how, step.params));
    }
    let mut answers = Vec::with_capacity(parts.len() + 1);
    let mut sent = false;
    std::future::poll_fn(|cx| {
        if !sent {
            sent = true;
            let _held = hold.map(|lock| lock.lock().unwrap_or_else(|p| p.into_inner()));
            let failed = first_poll(&mut parts, &mut answers, 0, cx);
            // A statement that could not even be sent: end with ROLLBACK, not COMMIT, so
            // that the others' effects are not kept.
            let close = match (end, failed) {
                (End::Open, _) => None,
                (_, true) => Some(batch(client, "ROLLBACK")),
                (End::Commit, false) => Some(batch(client, "COMMIT")),
                (End::CommitLsn, false) => Some(simple(
                    client,
                    "COMMIT; SELECT pg_current_wal_insert_lsn()::text",
                )),
            };
            if let Some(close) = close {
                let at = parts.len();
                parts.push(close);
                first_poll(&mut parts, &mut answers, at, cx);
            }
        }
        let mut done = true;
        for (part, answer) in parts.iter_mut().zip(answers.iter_mut()) {
            if answer.is_none() {
                match part.as_mut().poll(cx) {
                    Poll::Ready(out) => *answer = Some(out),
                    Poll::Pending => done = false,
                }
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    drop(parts);
    let mut answers = answers
        .into_iter()
        .map(|answer| answer.expect("the loop above ends once every part answered"));
    let mut session = Some((0, 0));
    let mut session_expires_in = None;
    if let Some(owner) = owner {
        if scope_parts == 2 {
            answers.next().expect("BEGIN's answer")?;
        }
        let answer = answers.next().expect("the scope statement's answer")?;
        let row = match (owner, &answer) {
            // The `SET LOCAL`s of `scope_text` return no row: they succeeded.
            (Owner::Account(id), Answer::Simple(_)) => Some((None, Some(id), None)),
            _ => scope_row(answer),
        };
        if let (Some((_, _, left)), Owner::TokenHash(_)) = (&row, owner) {
            session_expires_in =
                left.and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok());
        }
        session = row.and_then(|(session, account, _)| Some((session.unwrap_or(0), account?)));
    }
    let mut rows = Vec::with_capacity(steps.len());
    let mut failed = None;
    for _ in steps {
        match answers.next().expect("a statement's answer") {
            Ok(Answer::Rows(found)) => rows.push(found),
            Ok(_) => rows.push(Vec::new()),
            Err(err) => {
                failed.get_or_insert(err);
                rows.push(Vec::new());
            }
        }
    }
    if session.is_none() {
        // No live session: whatever the statements did (nothing: no owner) or failed
        // with, the caller answers 401.
        return Ok(Unit {
            session,
            session_expires_in: None,
            rows: Vec::new(),
            lsn: None,
        });
    }
    if let Some(err) = failed {
        // The transaction was aborted by it, and its COMMIT was a ROLLBACK.
        return Err(err.into());
    }
    let lsn = match answers.next() {
        Some(answer) => match (answer?, end) {
            (Answer::Simple(messages), End::CommitLsn) => Some(lsn_of(&messages)?),
            _ => None,
        },
        None => None,
    };
    Ok(Unit {
        session,
        session_expires_in,
        rows,
        lsn,
    })
}

fn lsn_of(messages: &[SimpleQueryMessage]) -> Result<Lsn, DbError> {
    messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .ok_or_else(|| "no row".to_owned())
        .and_then(|text| text.parse::<Lsn>())
        .map_err(|why| DbError::Unavailable(format!("pg_current_wal_insert_lsn: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Directly, a known account's scope goes as text (nothing prepared for it); a token's
    /// as the prepared scope statement.
    #[tokio::test]
    async fn only_a_tokens_scope_is_prepared() {
        let asked = std::sync::Mutex::new(Vec::new());
        let prepare = |sql: &'static str| {
            asked.lock().unwrap().push(sql);
            std::future::ready(Err(DbError::Config("not prepared here".into())))
        };
        let account = prepare_scope(Owner::Account(7), prepare).await;
        assert!(matches!(account, Ok(Prepared::Text)));
        assert!(asked.lock().unwrap().is_empty());

        let hash = [1_u8; 32];
        let token = prepare_scope(Owner::TokenHash(&hash), prepare).await;
        assert!(matches!(token, Err(DbError::Config(_))));
        assert_eq!(*asked.lock().unwrap(), [BY_TOKEN]);
    }

    #[test]
    fn the_scope_text_carries_only_formatted_values() {
        let text = scope_text(Owner::Account(-42));
        assert_eq!(
            text,
            "BEGIN; SET LOCAL pgbridge.account_id = '-42'; SET LOCAL ROLE pgbridge_rls"
        );

        let hash = [0x00, 0x7f, 0xab, 0xff];
        let text = scope_text(Owner::TokenHash(&hash));
        assert!(text.starts_with("BEGIN; SELECT "));
        assert!(!text.contains("$1"));
        assert!(text.contains("set_config('role', 'pgbridge_rls', true)"));
        assert!(text.contains("decode('007fabff', 'hex')::bytea"));
        // The hash is hex digits only: no quote, no backslash can come from it.
        let inside = text
            .split("decode('")
            .nth(1)
            .and_then(|rest| rest.split('\'').next());
        assert_eq!(inside, Some("007fabff"));
    }
}
