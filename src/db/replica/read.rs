//! [`Reader`] and [`ScopedRead`]: a connection for reading, from a standby or the
//! primary, and an owner-scoped transaction on one.

use crate::db::{Conn, DbError, Scoped};

/// Where a [`Reader`]'s connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The primary pool.
    Primary,
    /// A standby.
    Standby,
}

impl ReadFrom {
    /// `primary` or `standby` (the `Pgbridge-Served-By` header).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Standby => "standby",
        }
    }
}

/// A connection for reading, and where it comes from. Derefs to [`Conn`].
#[derive(Debug)]
pub struct Reader {
    pub(super) conn: Conn,
    pub(super) from: ReadFrom,
}

impl Reader {
    /// Where the connection comes from.
    pub fn from(&self) -> ReadFrom {
        self.from
    }

    /// The connection, for a [`ScopedRead`] or other use of its own.
    pub fn into_conn(self) -> Conn {
        self.conn
    }
}

/// An owner-scoped transaction ([`Scoped`]) on a [`Reader`]'s connection: what row-level
/// security needs on a standby as on the primary. Derefs to [`Scoped`] (and so to
/// [`Conn`]); [`commit`](Self::commit) ends it.
///
/// On a hot standby the transaction is read-only; `SET LOCAL ROLE` and the transaction-local
/// owner setting work there as on the primary.
///
/// ```no_run
/// # async fn demo(reads: pgbridge::db::replica::ReadRouter) -> Result<(), pgbridge::db::DbError> {
/// use pgbridge::db::replica::ScopedRead;
///
/// let read = ScopedRead::begin(reads.reader(None).await?, 42).await?;
/// let rows = read.query("SELECT id FROM notes", &[]).await?; // account 42's only
/// read.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ScopedRead {
    scoped: Scoped,
    from: ReadFrom,
}

impl ScopedRead {
    /// Opens the scope of `account_id` on `reader`'s connection.
    pub async fn begin(reader: Reader, account_id: i64) -> Result<Self, DbError> {
        let from = reader.from();
        let scoped = Scoped::begin(reader.into_conn(), account_id).await?;
        Ok(Self { scoped, from })
    }

    /// A scope already open on a connection that came `from` there.
    pub fn new(scoped: Scoped, from: ReadFrom) -> Self {
        Self { scoped, from }
    }

    /// Where the connection comes from.
    pub fn from(&self) -> ReadFrom {
        self.from
    }

    /// Ends the (read) transaction; the connection goes back to its pool.
    pub async fn commit(self) -> Result<(), DbError> {
        self.scoped.commit().await
    }
}

impl std::ops::Deref for ScopedRead {
    type Target = Scoped;

    fn deref(&self) -> &Scoped {
        &self.scoped
    }
}

impl std::ops::Deref for Reader {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.conn
    }
}
