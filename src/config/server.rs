//! The server's part of the settings: timeouts, connection limits, shutdown.

use std::time::Duration;

use super::Config;

impl Config {
    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// `ready_timeout_ms` as a duration.
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_millis(self.ready_timeout_ms)
    }

    /// The client-connection limits, for [`crate::server`].
    pub fn connection_limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
            max_connections: self.max_connections.max(1),
            max_connections_per_address: self.max_connections_per_address,
        }
    }

    /// Each class of route's share ([`crate::bulkhead`]): the `0`s resolved to a quarter
    /// of the pool.
    ///
    /// ```
    /// let config = pgbridge::config::Config::new("postgres://app@db/app");
    /// let shares = config.bulkheads();
    /// assert_eq!(shares.anonymous_db, config.db_pool_size / 4);
    /// assert_eq!(shares.long_per_address, 64);
    /// ```
    pub fn bulkheads(&self) -> crate::bulkhead::BulkheadConfig {
        let quarter = (self.db_pool_size / 4).max(1);
        let or_quarter = |n: usize| if n == 0 { quarter } else { n };
        crate::bulkhead::BulkheadConfig {
            anonymous_db: or_quarter(self.anonymous_db_requests),
            stream_opening: or_quarter(self.events_max_opening),
            open_wait: self.request_timeout(),
            long_per_address: self.max_long_requests_per_address,
        }
    }

    /// `shutdown_grace_secs` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// `drain_delay_ms` as a duration.
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay_ms)
    }
}
