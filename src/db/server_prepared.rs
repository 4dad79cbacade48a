//! Statements prepared by name on the server connections behind a transaction pooler.
//!
//! Through PgBouncer in transaction mode (before 1.21) tokio-postgres cannot keep a
//! prepared statement: the next transaction may run on another server connection. So every
//! statement goes unnamed ([`super::pooler`]), and Postgres parses, analyses and plans it
//! — row-level security policy included — on every request. For an owner-scoped read that
//! is most of the statement's cost (about 40 µs for the `SELECT` and 35 µs for the policy,
//! where executing it takes a few).
//!
//! SQL-level prepared statements survive it. `PREPARE` is a statement like any other, so
//! PgBouncer passes it through, and what it creates lives as long as the *server*
//! connection, whichever client runs on it next. A unit (`db::unit`) therefore runs an
//! eligible statement as `EXECUTE pgbridge_…('25')`: a parse of a few bytes and the cached
//! plan. The server connection PgBouncer lends may not have it yet; the `EXECUTE` then fails
//! with `26000 invalid_sql_statement_name`, which aborts the unit's transaction (nothing it
//! did is kept), and the unit runs once more with `ServerPrepared::ensure` in its scope
//! text: a `DO` block that prepares the statement on that connection if it is not there,
//! inside the same transaction, so on the same server connection as the `EXECUTE` after it.
//! A server connection misses each statement once: a few dozen retries in its lifetime.
//!
//! The statement's name is `pgbridge_` and 16 hex digits of the SHA-256 of its parameter
//! types and text, so two versions of the service (a rolling deploy) never run each other's
//! statement under one name, and another application on the same server connections cannot
//! collide with it by accident.
//!
//! Eligible: a statement `PREPARE` accepts (`SELECT`, `INSERT`, `UPDATE`, `DELETE`, `WITH`,
//! `VALUES`, `TABLE`) whose parameters are all integers or booleans, passed as literals that
//! Rust formats from the values' binary encoding (digits and a sign: nothing a client sent
//! reaches the SQL as text). Other statements, and a process's statement texts past
//! `MAX_NAMED` (256), keep running unnamed.
//!
//! Row-level security holds: a plan cached under the role `pgbridge_rls` reads the owner
//! from `current_setting('pgbridge.account_id')` when it runs, not when it was planned (the
//! setting is not a constant to the planner), and Postgres re-plans a cached statement run
//! under another role or `row_security` setting.

use std::fmt::Write;
use std::sync::Arc;

use bytes::BytesMut;
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};

/// Most statement texts one process prepares by name on each server connection; the
/// service has a few dozen. Past it, a new text runs unnamed (as a template user building
/// SQL dynamically would otherwise grow every server connection's memory without bound).
pub(crate) const MAX_NAMED: usize = 256;

/// The dollar-quote tags of [`ServerPrepared::ensure`]; a statement containing either is
/// not eligible.
const DO_TAG: &str = "$pgbridge_do$";
const SQL_TAG: &str = "$pgbridge_sql$";

/// One statement text, prepared by name where it runs.
#[derive(Debug)]
pub(crate) struct ServerPrepared {
    /// `pgbridge_` and 16 hex digits.
    name: String,
    /// The `DO` block preparing it on the server connection when it is not there yet.
    ensure: String,
    /// Its parameter types (integers and booleans).
    types: Arc<[Type]>,
}

impl ServerPrepared {
    /// `sql` with parameters of `types`, if eligible (see the module's documentation).
    pub(crate) fn new(sql: &str, types: &Arc<[Type]>) -> Option<Self> {
        if !preparable(sql) || sql.contains(DO_TAG) || sql.contains(SQL_TAG) {
            return None;
        }
        if !types.iter().all(literal_type) {
            return None;
        }
        let mut digest = Sha256::new();
        for ty in types.iter() {
            digest.update(ty.oid().to_be_bytes());
        }
        digest.update(sql.as_bytes());
        let digest = digest.finalize();
        let mut name = String::from("pgbridge_");
        for byte in &digest[..8] {
            // Writing to a String cannot fail.
            let _ = write!(name, "{byte:02x}");
        }
        let declared: Vec<String> = types
            .iter()
            .map(|ty| format!("pg_catalog.{}", ty.name()))
            .collect();
        let declared = if declared.is_empty() {
            String::new()
        } else {
            format!("({})", declared.join(", "))
        };
        let ensure = format!(
            "DO {DO_TAG}BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_prepared_statements \
             WHERE name = '{name}') THEN EXECUTE {SQL_TAG}PREPARE {name}{declared} AS {sql}{SQL_TAG}; \
             END IF; END{DO_TAG}"
        );
        Some(Self {
            name,
            ensure,
            types: types.clone(),
        })
    }

    /// Its parameter types.
    pub(crate) fn types(&self) -> &Arc<[Type]> {
        &self.types
    }

    /// The `DO` block that prepares it on the server connection it runs on, unless there.
    pub(crate) fn ensure(&self) -> &str {
        &self.ensure
    }

    /// `EXECUTE pgbridge_…('1', NULL, 't')` for `params`; `None` if one of them does not
    /// encode as its type (run the statement unnamed then, which reports the error).
    pub(crate) fn execute(&self, params: &[&(dyn ToSql + Sync)]) -> Option<String> {
        if params.len() != self.types.len() {
            return None;
        }
        let mut text = String::with_capacity(self.name.len() + 16 + params.len() * 12);
        text.push_str("EXECUTE ");
        text.push_str(&self.name);
        if params.is_empty() {
            return Some(text);
        }
        let mut buf = BytesMut::with_capacity(8);
        for (i, (param, ty)) in params.iter().zip(self.types.iter()).enumerate() {
            text.push_str(if i == 0 { "(" } else { ", " });
            buf.clear();
            match param.to_sql_checked(ty, &mut buf).ok()? {
                IsNull::Yes => text.push_str("NULL"),
                IsNull::No => {
                    text.push('\'');
                    write_literal(&mut text, ty, &buf)?;
                    text.push('\'');
                }
            }
        }
        text.push(')');
        Some(text)
    }
}

/// Whether the failure is a server connection lacking a statement a unit `EXECUTE`d.
pub(crate) fn is_missing(err: &super::DbError) -> bool {
    match err {
        super::DbError::Query(err) => err.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME),
        _ => false,
    }
}

/// Whether `PREPARE` accepts `sql`: it starts (after blanks and comments) with one of the
/// statements it takes.
fn preparable(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            // Nested comments are rare enough to refuse.
            match after.split_once("*/") {
                Some((comment, r)) if !comment.contains("/*") => rest = r.trim_start(),
                _ => return false,
            }
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(
        word.as_str(),
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH" | "VALUES" | "TABLE"
    )
}

fn literal_type(ty: &Type) -> bool {
    [Type::INT2, Type::INT4, Type::INT8, Type::BOOL].contains(ty)
}

/// The literal's text, from the binary encoding of a value of type `ty`.
fn write_literal(text: &mut String, ty: &Type, encoded: &[u8]) -> Option<()> {
    let value = match *ty {
        Type::INT2 => i64::from(i16::from_be_bytes(encoded.try_into().ok()?)),
        Type::INT4 => i64::from(i32::from_be_bytes(encoded.try_into().ok()?)),
        Type::INT8 => i64::from_be_bytes(encoded.try_into().ok()?),
        Type::BOOL => {
            text.push(if *encoded.first()? != 0 { 't' } else { 'f' });
            return (encoded.len() == 1).then_some(());
        }
        _ => return None,
    };
    // Writing to a String cannot fail.
    let _ = write!(text, "{value}");
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(types: &[Type]) -> Arc<[Type]> {
        Arc::from(types)
    }

    #[test]
    fn integers_and_booleans_become_quoted_literals() {
        let sp = ServerPrepared::new(
            "SELECT $1, $2, $3, $4, $5",
            &types(&[Type::INT8, Type::INT4, Type::INT2, Type::BOOL, Type::INT8]),
        )
        .unwrap();
        let none: Option<i64> = None;
        let text = sp
            .execute(&[&i64::MIN, &-7_i32, &12_i16, &true, &none])
            .unwrap();
        assert!(text.starts_with("EXECUTE pgbridge_"), "{text}");
        assert!(
            text.ends_with("('-9223372036854775808', '-7', '12', 't', NULL)"),
            "{text}"
        );
        assert_eq!(sp.name.len(), "pgbridge_".len() + 16);
    }

    #[test]
    fn a_statement_without_parameters_executes_bare() {
        let sp = ServerPrepared::new("SELECT 1", &types(&[])).unwrap();
        assert_eq!(sp.execute(&[]).unwrap(), format!("EXECUTE {}", sp.name));
        assert!(
            sp.ensure()
                .contains(&format!("PREPARE {} AS SELECT 1{SQL_TAG}", sp.name)),
            "{}",
            sp.ensure()
        );
    }

    #[test]
    fn the_name_follows_the_text_and_the_types() {
        let a = ServerPrepared::new("SELECT $1", &types(&[Type::INT8])).unwrap();
        let b = ServerPrepared::new("SELECT $1", &types(&[Type::INT8])).unwrap();
        let c = ServerPrepared::new("SELECT $1", &types(&[Type::INT4])).unwrap();
        let d = ServerPrepared::new("SELECT $1 ", &types(&[Type::INT8])).unwrap();
        assert_eq!(a.name, b.name);
        assert_ne!(a.name, c.name);
        assert_ne!(a.name, d.name);
        assert!(a.ensure.contains("PREPARE pgbridge_"));
        assert!(a.ensure.contains("(pg_catalog.int8) AS SELECT $1"));
    }

    #[test]
    fn only_what_prepare_takes_with_literal_parameters_is_eligible() {
        let int = types(&[Type::INT8]);
        for sql in [
            "select 1",
            "  -- a comment\n  WITH x AS (SELECT 1) SELECT * FROM x",
            "/* c */ INSERT INTO t VALUES ($1)",
            "UPDATE t SET a = 1",
            "delete from t",
            "VALUES (1)",
            "TABLE t",
        ] {
            assert!(ServerPrepared::new(sql, &int).is_some(), "{sql}");
        }
        for sql in [
            "SET LOCAL x = 1",
            "DEALLOCATE ALL",
            "BEGIN",
            "/* /* nested */ */ SELECT 1",
            "SELECT '$pgbridge_sql$'",
            "SELECT '$pgbridge_do$'",
        ] {
            assert!(ServerPrepared::new(sql, &int).is_none(), "{sql}");
        }
        assert!(ServerPrepared::new("SELECT $1", &types(&[Type::TEXT])).is_none());
        assert!(ServerPrepared::new("SELECT $1", &types(&[Type::FLOAT8])).is_none());
    }

    #[test]
    fn a_value_that_does_not_encode_falls_back() {
        let sp = ServerPrepared::new("SELECT $1", &types(&[Type::INT4])).unwrap();
        // An i64 is not an int4: no literal, the unnamed path reports the error.
        assert!(sp.execute(&[&5_i64]).is_none());
        // A parameter missing.
        assert!(sp.execute(&[]).is_none());
    }
}
