//! SQL text that several queries share, as compile-time string literals.

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
