//! SQL text that several queries share, as compile-time string literals, and the one
//! timestamp format of the JSON answers: written by Postgres ([`utc_text!`](crate::utc_text))
//! or, for rows read in bulk, from the binary `timestamptz` ([`UtcTime`]).

use std::error::Error;

use tokio_postgres::types::{FromSql, Type};

/// The SQL expression that has Postgres format a `timestamptz` as RFC 3339 in UTC with
/// microseconds (`2026-11-27T09:18:25.123456Z`), the one timestamp format of the JSON
/// answers.
///
/// `utc_text!("created_at")` expands to the string literal
/// `to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`, so it splices
/// into a query with `concat!` and the query stays a `&'static str`.
///
/// ```
/// const QUERY: &str = concat!("SELECT ", pgbridge::utc_text!("now()"), " AS at");
/// assert_eq!(
///     QUERY,
///     r#"SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at"#
/// );
/// ```
#[macro_export]
macro_rules! utc_text {
    ($timestamp:literal) => {
        concat!(
            "to_char(",
            $timestamp,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

/// Microseconds from the Unix epoch to Postgres' (2000-01-01T00:00:00Z).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` column read in binary (eight bytes: microseconds since 2000-01-01 UTC),
/// formatted here exactly as [`utc_text!`](crate::utc_text) has Postgres format it. A row
/// read this way costs Postgres nothing to format: `to_char` is about a microsecond per
/// value, and a query that sorts computes it for every row it reads, not only those it
/// returns.
///
/// ```
/// use pgbridge::db::UtcTime;
///
/// let at = UtcTime::from_unix_micros(1_796_375_905_123_456);
/// assert_eq!(at.utc_text(), "2026-12-04T09:18:25.123456Z");
/// assert_eq!(at.unix_seconds(), 1_796_375_905);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcTime {
    /// Microseconds since the Unix epoch; `i64::MAX`/`i64::MIN` for `±infinity`.
    unix_micros: i64,
}

impl UtcTime {
    /// The instant `micros` microseconds after the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Self {
        Self {
            unix_micros: micros,
        }
    }

    /// Whole seconds since the Unix epoch, rounded down (`floor(extract(epoch FROM t))`).
    pub fn unix_seconds(self) -> i64 {
        self.unix_micros.div_euclid(1_000_000)
    }

    /// RFC 3339 in UTC with microseconds, `2026-11-27T09:18:25.123456Z` (`infinity` and
    /// `-infinity` as Postgres writes them): its [`Display`](std::fmt::Display) form.
    pub fn utc_text(self) -> String {
        self.to_string()
    }
}

impl std::fmt::Display for UtcTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = [0u8; UTC_TEXT_LEN];
        match self.write_utc(&mut text) {
            Some(text) => f.write_str(text),
            None => self.fmt_other(f),
        }
    }
}

/// The length of [`UtcTime::utc_text`] for the years 0 to 9999.
const UTC_TEXT_LEN: usize = "2026-11-27T09:18:25.123456Z".len();

impl UtcTime {
    /// Writes the RFC 3339 text into `out` digit by digit (the `write!` of [`fmt_other`]
    /// cost about a fifth of a `GET /notes/{id}`'s own CPU, two timestamps per note), or
    /// `None` outside the years 0 to 9999.
    ///
    /// [`fmt_other`]: UtcTime::fmt_other
    fn write_utc(self, out: &mut [u8; UTC_TEXT_LEN]) -> Option<&str> {
        let seconds = self.unix_micros.div_euclid(1_000_000);
        let micros = self.unix_micros.rem_euclid(1_000_000) as u32;
        let (days, second) = (
            seconds.div_euclid(86_400),
            seconds.rem_euclid(86_400) as u32,
        );
        let (year, month, day) = civil_from_days(days);
        let year = u32::try_from(year).ok().filter(|y| *y <= 9999)?;
        fn digits(out: &mut [u8], mut value: u32) {
            for b in out.iter_mut().rev() {
                *b = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        *out = *b"0000-00-00T00:00:00.000000Z";
        digits(&mut out[0..4], year);
        digits(&mut out[5..7], month);
        digits(&mut out[8..10], day);
        digits(&mut out[11..13], second / 3600);
        digits(&mut out[14..16], second / 60 % 60);
        digits(&mut out[17..19], second % 60);
        digits(&mut out[20..26], micros);
        std::str::from_utf8(out).ok()
    }

    /// The text of an instant outside the years 0 to 9999 (and Postgres' infinities).
    fn fmt_other(self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.unix_micros {
            i64::MAX => return f.write_str("infinity"),
            i64::MIN => return f.write_str("-infinity"),
            _ => {}
        }
        let seconds = self.unix_seconds();
        let micros = self.unix_micros.rem_euclid(1_000_000);
        let (days, second) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            second / 3600,
            second / 60 % 60,
            second % 60
        )
    }
}

/// Serialized as its [`utc_text`](UtcTime::utc_text), written straight into the output.
impl serde::Serialize for UtcTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; UTC_TEXT_LEN];
        match self.write_utc(&mut text) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(self),
        }
    }
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl<'a> FromSql<'a> for UtcTime {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let bytes: [u8; 8] = raw
            .try_into()
            .map_err(|_| format!("a timestamp of {} bytes, not 8", raw.len()))?;
        let pg = i64::from_be_bytes(bytes);
        let unix_micros = match pg {
            i64::MAX | i64::MIN => pg,
            _ => pg.saturating_add(PG_EPOCH_MICROS),
        };
        Ok(Self { unix_micros })
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMPTZ)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_to_char() {
        let text = |micros| UtcTime::from_unix_micros(micros).utc_text();
        assert_eq!(text(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(text(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(text(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(text(4_107_542_399_999_999), "2100-02-28T23:59:59.999999Z");
        assert_eq!(text(i64::MAX), "infinity");
        assert_eq!(UtcTime::from_unix_micros(-1).unix_seconds(), -1);
    }

    #[test]
    fn the_digit_writer_agrees_with_the_formatter() {
        struct Other(UtcTime);
        impl std::fmt::Display for Other {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt_other(f)
            }
        }
        let mut micros = -62_167_219_200_000_000_i64; // 0000-01-01
        while micros < 253_402_300_800_000_000 {
            // to 9999-12-31
            let at = UtcTime::from_unix_micros(micros);
            assert_eq!(at.utc_text(), Other(at).to_string(), "{micros}");
            let json = serde_json::to_string(&at).unwrap();
            assert_eq!(json, format!("\"{}\"", Other(at)));
            micros += 86_399_999_999 * 7 + 123_457;
        }
        let far = UtcTime::from_unix_micros(253_402_300_800_000_000);
        assert_eq!(far.utc_text(), "10000-01-01T00:00:00.000000Z");
        assert_eq!(UtcTime::from_unix_micros(i64::MIN).utc_text(), "-infinity");
    }

    #[test]
    fn reads_the_binary_form() {
        let at = UtcTime::from_sql(&Type::TIMESTAMPTZ, &1_i64.to_be_bytes()).unwrap();
        assert_eq!(at.utc_text(), "2000-01-01T00:00:00.000001Z");
        assert!(UtcTime::from_sql(&Type::TIMESTAMPTZ, &[0; 4]).is_err());
        assert!(UtcTime::accepts(&Type::TIMESTAMPTZ) && !UtcTime::accepts(&Type::TEXT));
    }
}
