//! The database's part of the settings: URLs, TLS defaults, the pool and the standbys.

use std::time::Duration;

use super::Config;
use crate::db::{DbConfig, PoolMode, SharedConfig};

impl Config {
    /// `database_url` with `PGSSLMODE`/`PGSSLROOTCERT` applied where the URL sets neither
    /// `sslmode` nor `sslrootcert` (the URL wins, as in libpq).
    ///
    /// ```
    /// let mut config = pgbridge::config::Config::new("postgres://app@db.example/app");
    /// config.db_sslmode = Some("verify-full".into());
    /// config.db_sslrootcert = Some("system".into());
    /// assert_eq!(
    ///     config.effective_database_url(),
    ///     "postgres://app@db.example/app?sslmode=verify-full&sslrootcert=system"
    /// );
    /// ```
    pub fn effective_database_url(&self) -> String {
        crate::db::connect::with_defaults(
            &self.database_url,
            self.db_sslmode.as_deref(),
            self.db_sslrootcert.as_deref(),
        )
    }

    /// Applies `PGSSLMODE`/`PGSSLROOTCERT` (as [`effective_database_url`](Self::effective_database_url)
    /// does) to every URL the service connects with: `DATABASE_URL`, `MIGRATE_DATABASE_URL`,
    /// `EVENTS_DATABASE_URL` and each of `DATABASE_READ_URL`, so no connection goes out in
    /// clear text that the settings say must not.
    ///
    /// ```
    /// let mut config = pgbridge::config::Config::new("postgres://app@db/app");
    /// config.db_sslmode = Some("require".into());
    /// config.database_read_url = Some("postgres://app@r1/app, postgres://app@r2/app?sslmode=disable".into());
    /// config.fold_tls_defaults();
    /// assert_eq!(config.database_url, "postgres://app@db/app?sslmode=require");
    /// assert_eq!(
    ///     config.read_urls(),
    ///     ["postgres://app@r1/app?sslmode=require", "postgres://app@r2/app?sslmode=disable"]
    /// );
    /// ```
    pub fn fold_tls_defaults(&mut self) {
        let fold = |url: &str| {
            crate::db::connect::with_defaults(
                url,
                self.db_sslmode.as_deref(),
                self.db_sslrootcert.as_deref(),
            )
        };
        let database_url = fold(&self.database_url);
        let migrate = non_empty(&self.migrate_database_url).map(fold);
        let events = non_empty(&self.events_database_url).map(fold);
        let reads = non_empty(&self.database_read_url).map(|_| {
            self.read_urls()
                .iter()
                .map(|url| fold(url))
                .collect::<Vec<_>>()
                .join(",")
        });
        self.database_url = database_url;
        self.migrate_database_url = migrate.or(self.migrate_database_url.take());
        self.events_database_url = events.or(self.events_database_url.take());
        self.database_read_url = reads.or(self.database_read_url.take());
    }

    /// The pool's part of the configuration.
    pub fn db(&self) -> DbConfig {
        DbConfig {
            url: self.database_url.clone(),
            pool_size: self.db_pool_size,
            pool_wait: Duration::from_millis(self.db_pool_timeout_ms),
            connect_timeout: Duration::from_millis(self.db_connect_timeout_ms),
            statement_timeout: Duration::from_millis(self.db_statement_timeout_ms),
            shared: SharedConfig {
                connections: self.db_shared_connections,
                max_in_flight: self.db_shared_max_in_flight,
                max_queued: self.db_shared_max_queued,
            },
            pool_mode: self.db_pool_mode,
        }
    }

    /// The URL migrations use: `MIGRATE_DATABASE_URL`, else `DATABASE_URL`.
    pub fn migrate_url(&self) -> &str {
        non_empty(&self.migrate_database_url).unwrap_or(&self.database_url)
    }

    /// The URL the `LISTEN` connection uses: `EVENTS_DATABASE_URL`, else `DATABASE_URL`.
    pub fn events_url(&self) -> &str {
        non_empty(&self.events_database_url).unwrap_or(&self.database_url)
    }

    /// The standby URLs of `DATABASE_READ_URL`, in order.
    pub fn read_urls(&self) -> Vec<String> {
        non_empty(&self.database_read_url)
            .map(|urls| {
                urls.split(',')
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Refuses, with a message saying what to set, what cannot work through a
    /// transaction pooler: `LISTEN` (notifications reach a server connection the pooler
    /// has already lent to someone else) and the migrator's session advisory lock. Only
    /// the configuration is checked: `DB_POOL_MODE=transaction` says that DATABASE_URL is
    /// such a pooler, so the events and migration URLs must differ from it.
    pub fn check_pooler(&self) -> Result<(), String> {
        if self.db_pool_mode != PoolMode::Transaction {
            return Ok(());
        }
        if self.events_url() == self.database_url {
            return Err(
                "DB_POOL_MODE=transaction: LISTEN does not work through a transaction \
                 pooler (notifications would silently never arrive); set EVENTS_DATABASE_URL \
                 to a URL that reaches Postgres directly"
                    .into(),
            );
        }
        if self.migrate_on_start() && self.migrate_url() == self.database_url {
            return Err(
                "DB_POOL_MODE=transaction: migrations take a session advisory lock, \
                 which a transaction pooler does not keep; set MIGRATE_DATABASE_URL to a URL \
                 that reaches Postgres directly, or MIGRATE=false"
                    .into(),
            );
        }
        Ok(())
    }

    /// The standbys' routing settings.
    pub fn read_route(&self) -> crate::db::replica::ReadConfig {
        crate::db::replica::ReadConfig {
            urls: self.read_urls(),
            pool_size: self.db_read_pool_size,
            lsn_wait: Duration::from_millis(self.read_lsn_wait_ms),
            max_lag: Duration::from_millis(self.read_max_lag_ms),
        }
    }

    /// Whether the service runs its own PostgreSQL cluster (`DATABASE_URL` unset or empty).
    ///
    /// ```
    /// use pgbridge::config::Config;
    /// assert!(Config::new("").embedded_database());
    /// assert!(!Config::new("postgres://app@db/app").embedded_database());
    /// ```
    pub fn embedded_database(&self) -> bool {
        self.database_url.trim().is_empty()
    }

    /// Whether to apply migrations at start-up.
    pub fn migrate_on_start(&self) -> bool {
        self.migrate && !self.no_migrate
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn a_transaction_pooler_needs_direct_urls_for_listen_and_migrations() {
        let mut config = Config::new("postgres://app@pgbouncer:6432/app");
        assert!(config.check_pooler().is_ok(), "session mode checks nothing");
        config.db_pool_mode = PoolMode::Transaction;
        let err = config.check_pooler().unwrap_err();
        assert!(err.contains("EVENTS_DATABASE_URL"), "{err}");
        config.events_database_url = Some("postgres://app@postgres:5432/app".into());
        let err = config.check_pooler().unwrap_err();
        assert!(err.contains("MIGRATE_DATABASE_URL"), "{err}");
        config.migrate = false;
        assert!(config.check_pooler().is_ok());
        config.migrate = true;
        config.migrate_database_url = Some("postgres://app@postgres:5432/app".into());
        assert!(config.check_pooler().is_ok());
        assert_eq!(config.events_url(), "postgres://app@postgres:5432/app");
    }

    #[test]
    fn read_urls_are_comma_separated() {
        let config = Config::try_parse_from([
            "pgbridge",
            "--database-read-url",
            "postgres://a/x, postgres://b/x,",
        ])
        .unwrap();
        assert_eq!(config.read_urls(), ["postgres://a/x", "postgres://b/x"]);
        assert!(Config::new("postgres://a/x").read_urls().is_empty());
    }
}
