//! The file-descriptor limit: raised at start-up, and used to size the connection cap.

/// Descriptors kept back from client connections: the listener, the Postgres pool and
/// `LISTEN` connection, cancel requests, log files, and some slack.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit now in
/// force (unchanged if it could not be raised; the failure is logged).
///
/// ```no_run
/// let nofile = pgbridge::server::raise_nofile_limit();
/// println!("may open {nofile} descriptors");
/// ```
pub fn raise_nofile_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            let current = rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024);
            tracing::warn!(error = %err, limit = current, "could not raise RLIMIT_NOFILE");
            current
        }
    }
}

/// The connection cap that fits `nofile` descriptors when `db_connections` of them go to
/// Postgres: at most `requested`, at least 1.
///
/// ```
/// use pgbridge::server::connection_cap;
/// assert_eq!(connection_cap(10_000, 1 << 20, 16), 10_000);
/// assert_eq!(connection_cap(10_000, 1024, 16), 1024 - 64 - 16);
/// ```
pub fn connection_cap(requested: usize, nofile: u64, db_connections: usize) -> usize {
    let reserve = super::fd_limit::RESERVED_DESCRIPTORS + db_connections as u64;
    let fits = usize::try_from(nofile.saturating_sub(reserve)).unwrap_or(usize::MAX);
    requested.min(fits).max(1)
}
