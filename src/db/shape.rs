//! [`Shape`]: what a statement returns — all rows, exactly one, at most one, or the count
//! of rows changed — and how each is run, prepared or unnamed. One definition for the
//! exclusive connections ([`Statements`](super::Statements)) and the shared ones.

use std::future::Future;

use futures_util::TryStreamExt;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Row, Statement};

use super::Params;

/// A statement's answer — `Vec<Row>`, `Row`, `Option<Row>`, or `u64` (rows changed) — and
/// how to get it on a connection or a transaction. Public only as the bound of
/// [`Queries`](super::Queries)' one required method; nothing outside `db/` implements it.
#[allow(unreachable_pub)]
pub trait Shape: Sized + Send {
    /// Runs the prepared `statement` on `client`.
    fn named(
        client: &(impl GenericClient + Sync),
        statement: &Statement,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Self, tokio_postgres::Error>> + Send;

    /// Runs `sql` unnamed (`query_typed*`: Parse, Bind, Execute and Sync in one round
    /// trip) with typed `params` on `client`: the transaction-pooler way.
    fn unnamed(
        client: &(impl GenericClient + Sync),
        sql: &str,
        params: Vec<(&(dyn ToSql + Sync), Type)>,
    ) -> impl Future<Output = Result<Self, tokio_postgres::Error>> + Send;
}

impl Shape for Vec<Row> {
    async fn named(
        client: &(impl GenericClient + Sync),
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Self, tokio_postgres::Error> {
        client.query(statement, params).await
    }

    async fn unnamed(
        client: &(impl GenericClient + Sync),
        sql: &str,
        params: Vec<(&(dyn ToSql + Sync), Type)>,
    ) -> Result<Self, tokio_postgres::Error> {
        client.query_typed(sql, &params).await
    }
}

impl Shape for Row {
    async fn named(
        client: &(impl GenericClient + Sync),
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Self, tokio_postgres::Error> {
        client.query_one(statement, params).await
    }

    async fn unnamed(
        client: &(impl GenericClient + Sync),
        sql: &str,
        params: Vec<(&(dyn ToSql + Sync), Type)>,
    ) -> Result<Self, tokio_postgres::Error> {
        client.query_typed_one(sql, &params).await
    }
}

impl Shape for Option<Row> {
    async fn named(
        client: &(impl GenericClient + Sync),
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Self, tokio_postgres::Error> {
        client.query_opt(statement, params).await
    }

    async fn unnamed(
        client: &(impl GenericClient + Sync),
        sql: &str,
        params: Vec<(&(dyn ToSql + Sync), Type)>,
    ) -> Result<Self, tokio_postgres::Error> {
        client.query_typed_opt(sql, &params).await
    }
}

impl Shape for u64 {
    async fn named(
        client: &(impl GenericClient + Sync),
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Self, tokio_postgres::Error> {
        client.execute(statement, params).await
    }

    async fn unnamed(
        client: &(impl GenericClient + Sync),
        sql: &str,
        params: Vec<(&(dyn ToSql + Sync), Type)>,
    ) -> Result<Self, tokio_postgres::Error> {
        let stream = client.query_typed_raw(sql, params).await?;
        futures_util::pin_mut!(stream);
        while stream.try_next().await?.is_some() {}
        Ok(stream.rows_affected().unwrap_or(0))
    }
}
