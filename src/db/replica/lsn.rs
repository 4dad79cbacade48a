//! [`Lsn`]: a WAL position, and [`commit_lsn`]: the one a read must see to include a
//! write — the read-your-writes token.

use std::fmt;
use std::str::FromStr;

use crate::db::{Conn, DbError};

/// A WAL position (`pg_lsn`), written as Postgres writes it: `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = String;

    /// ```
    /// use pgbridge::db::replica::Lsn;
    /// let lsn: Lsn = "16/B374D848".parse().unwrap();
    /// assert_eq!(lsn.to_string(), "16/B374D848");
    /// assert!("16-B3".parse::<Lsn>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a WAL position like 0/16B3748");
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 {
                return Err(bad());
            }
            u32::from_str_radix(p, 16).map_err(|_| bad())
        };
        Ok(Self((u64::from(part(hi)?) << 32) | u64::from(part(lo)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The WAL position a read must see to include everything `conn` has committed: ask
/// right after the commit, on the same connection.
pub async fn commit_lsn(conn: &Conn) -> Result<Lsn, DbError> {
    let row = conn
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await?;
    let text: String = row.get(0);
    text.parse()
        .map_err(|why: String| DbError::Unavailable(format!("pg_current_wal_insert_lsn: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_print_and_order() {
        let a: Lsn = "0/16B3748".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "0/16B3748");
        assert_eq!(b.0, 1 << 32);
        for bad in ["", "0", "/1", "1/", "x/1", "123456789/0", "0/1/2"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }
}
