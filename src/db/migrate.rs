//! Migrations in sqlx-cli's format, applied with sqlx's own bookkeeping.
//!
//! Files in `migrations/` are named `<VERSION>_<DESCRIPTION>.sql` (or `.up.sql` with a
//! `.down.sql` twin), so `sqlx migrate add`, `sqlx migrate run` and `sqlx migrate info`
//! work on them. The service applies pending ones at start-up exactly as sqlx does:
//!
//! - under `pg_advisory_lock` with sqlx's lock id for the database, so replicas starting
//!   together — or the service and `sqlx migrate run` — apply each migration once;
//! - recorded in `_sqlx_migrations` with the SHA-384 checksum of the file, so sqlx-cli
//!   agrees about what is applied, and an edited, already-applied migration is refused;
//! - each in its own transaction, unless its first line is `-- no-transaction`.
//!
//! The files are embedded in the binary at build time ([`EMBEDDED`]), so a running service
//! always carries the schema its code was written for.

use std::time::Instant;

use sha2::{Digest, Sha384};
use tokio_postgres::Client;

use super::connect::{ConnectError, PgConnect};

/// The `migrations/` folder as it was at build time: `(file name, SQL)`.
pub const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A file name looks like a migration but its version is not a positive integer.
    #[error("migration file {0:?}: the version before '_' must be a positive integer")]
    BadFileName(String),
    /// Two files share a version.
    #[error("two migrations have version {0}")]
    DuplicateVersion(i64),
    /// A migration was applied, and its file has changed since.
    #[error("migration {0} was applied, but its file has changed since")]
    Modified(i64),
    /// A migration is recorded as applied but no file has its version.
    #[error("migration {0} was applied, but no file has that version")]
    Missing(i64),
    /// A migration failed half-way earlier and must be fixed by hand.
    #[error("migration {0} failed earlier and left the database dirty; fix it by hand")]
    Dirty(i64),
    /// A migration's SQL failed.
    #[error("migration {version} ({description}) failed: {source}")]
    Apply {
        /// Its version.
        version: i64,
        /// Its description.
        description: String,
        /// What Postgres said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Talking to Postgres failed.
    #[error("migrations: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// Connecting to Postgres failed (the error says why and where).
    #[error("migrations: {0}")]
    Connect(#[from] ConnectError),
}

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The number before the first `_`.
    pub version: i64,
    /// The rest of the name, `_` as spaces, as sqlx records it.
    pub description: String,
    /// The SQL.
    pub sql: String,
    /// SHA-384 of the SQL, as sqlx computes it.
    pub checksum: Vec<u8>,
    /// The file starts with `-- no-transaction`.
    pub no_tx: bool,
}

/// A migration recorded in `_sqlx_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Its version.
    pub version: i64,
    /// Its description.
    pub description: String,
}

/// An ordered set of migrations, and the code that applies them.
///
/// ```
/// use pgbridge::db::migrate::Migrator;
///
/// let migrator = Migrator::from_files([
///     ("20240101000000_create_things.sql", "CREATE TABLE things (id int);"),
///     ("20240102000000_add_index.up.sql", "CREATE INDEX ON things (id);"),
///     ("20240102000000_add_index.down.sql", "DROP INDEX things_id_idx;"),
///     ("README.md", "not a migration"),
/// ])?;
/// let versions: Vec<i64> = migrator.migrations().iter().map(|m| m.version).collect();
/// assert_eq!(versions, [20240101000000, 20240102000000]);
/// assert_eq!(migrator.migrations()[1].description, "add index");
/// # Ok::<(), pgbridge::db::migrate::MigrateError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Migrator {
    migrations: Vec<Migration>,
}

impl Migrator {
    /// The migrations embedded in this binary.
    pub fn embedded() -> Result<Self, MigrateError> {
        Self::from_files(EMBEDDED.iter().copied())
    }

    /// Migrations from `(file name, SQL)` pairs. Names that are not `<VERSION>_<NAME>.sql`
    /// are ignored, as sqlx ignores them; `.down.sql` files are not applied.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, MigrateError> {
        let mut migrations = Vec::new();
        for (name, sql) in files {
            let Some((version, rest)) = name.split_once('_') else {
                continue;
            };
            if !rest.ends_with(".sql") || rest.ends_with(".down.sql") {
                continue;
            }
            let version: i64 = version
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| MigrateError::BadFileName(name.to_owned()))?;
            let stem = rest
                .strip_suffix(".up.sql")
                .or_else(|| rest.strip_suffix(".sql"))
                .unwrap_or(rest);
            migrations.push(Migration {
                version,
                description: stem.replace('_', " "),
                sql: sql.to_owned(),
                checksum: Sha384::digest(sql.as_bytes()).to_vec(),
                no_tx: sql.starts_with("-- no-transaction"),
            });
        }
        migrations.sort_by_key(|m| m.version);
        if let Some(pair) = migrations.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(MigrateError::DuplicateVersion(pair[0].version));
        }
        Ok(Self { migrations })
    }

    /// The migrations, oldest first.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Connects to `database_url` and applies what is pending. Returns what it applied.
    pub async fn run_url(&self, database_url: &str) -> Result<Vec<Applied>, MigrateError> {
        let (mut client, connection) = PgConnect::parse(database_url)?.connect().await?;
        let connection = tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %err, "migration connection ended");
            }
        });
        let result = self.run(&mut client).await;
        drop(client);
        let _ = connection.await;
        result
    }

    /// Applies what is pending on `client`'s database, holding sqlx's advisory lock.
    pub async fn run(&self, client: &mut Client) -> Result<Vec<Applied>, MigrateError> {
        // A migration may take long: no statement timeout on this session.
        client.batch_execute("SET statement_timeout = 0").await?;
        let database: String = client
            .query_one("SELECT current_database()", &[])
            .await?
            .get(0);
        let lock_id = lock_id(&database);
        client
            .execute("SELECT pg_advisory_lock($1)", &[&lock_id])
            .await?;
        let result = self.run_locked(client).await;
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&lock_id])
            .await;
        let applied = result?;
        unlocked?;
        Ok(applied)
    }

    async fn run_locked(&self, client: &mut Client) -> Result<Vec<Applied>, MigrateError> {
        // Looked up first: `CREATE TABLE IF NOT EXISTS` on an existing table sends a NOTICE
        // that would be logged at every start.
        let exists: bool = client
            .query_one("SELECT to_regclass('_sqlx_migrations') IS NOT NULL", &[])
            .await?
            .get(0);
        if !exists {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
                        version BIGINT PRIMARY KEY,
                        description TEXT NOT NULL,
                        installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
                        success BOOLEAN NOT NULL,
                        checksum BYTEA NOT NULL,
                        execution_time BIGINT NOT NULL
                    )",
                )
                .await?;
        }
        if let Some(row) = client
            .query_opt(
                "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
                &[],
            )
            .await?
        {
            return Err(MigrateError::Dirty(row.get(0)));
        }
        let applied: Vec<(i64, Vec<u8>)> = client
            .query(
                "SELECT version, checksum FROM _sqlx_migrations ORDER BY version",
                &[],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        for (version, checksum) in &applied {
            match self.migrations.iter().find(|m| m.version == *version) {
                None => return Err(MigrateError::Missing(*version)),
                Some(m) if m.checksum != *checksum => return Err(MigrateError::Modified(*version)),
                Some(_) => {}
            }
        }

        let mut done = Vec::new();
        for migration in &self.migrations {
            if applied
                .iter()
                .any(|(version, _)| *version == migration.version)
            {
                continue;
            }
            let started = Instant::now();
            apply(client, migration)
                .await
                .map_err(|source| MigrateError::Apply {
                    version: migration.version,
                    description: migration.description.clone(),
                    source,
                })?;
            let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
            client
                .execute(
                    "UPDATE _sqlx_migrations SET execution_time = $1 WHERE version = $2",
                    &[&nanos, &migration.version],
                )
                .await?;
            tracing::info!(version = migration.version, description = %migration.description, "applied migration");
            done.push(Applied {
                version: migration.version,
                description: migration.description.clone(),
            });
        }
        Ok(done)
    }
}

/// The script and its bookkeeping row, together in one transaction unless the migration
/// opts out.
async fn apply(client: &mut Client, migration: &Migration) -> Result<(), tokio_postgres::Error> {
    const RECORD: &str = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                          VALUES ($1, $2, TRUE, $3, -1)";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [
        &migration.version,
        &migration.description,
        &migration.checksum,
    ];
    if migration.no_tx {
        client.batch_execute(&migration.sql).await?;
        client.execute(RECORD, &params).await?;
    } else {
        let tx = client.transaction().await?;
        tx.batch_execute(&migration.sql).await?;
        tx.execute(RECORD, &params).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// sqlx's advisory lock id for a database, so the service and sqlx-cli exclude each other.
pub fn lock_id(database: &str) -> i64 {
    0x3d32_ad9e * i64::from(crc32fast::hash(database.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_parse() {
        let migrator = Migrator::embedded().unwrap();
        assert!(!migrator.migrations().is_empty());
    }

    #[test]
    fn checksum_is_sha384_of_the_file() {
        let m = Migrator::from_files([("1_a.sql", "")]).unwrap();
        // SHA-384 of the empty string.
        assert!(hex(&m.migrations()[0].checksum).starts_with("38b060a751ac9638"));
    }

    #[test]
    fn duplicates_and_bad_versions_are_refused() {
        assert!(matches!(
            Migrator::from_files([("1_a.sql", ""), ("1_b.sql", "")]),
            Err(MigrateError::DuplicateVersion(1))
        ));
        assert!(matches!(
            Migrator::from_files([("x1_a.sql", "")]),
            Err(MigrateError::BadFileName(_))
        ));
    }

    #[test]
    fn no_transaction_directive() {
        let m = Migrator::from_files([(
            "1_a.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY x ON t (c);",
        )])
        .unwrap();
        assert!(m.migrations()[0].no_tx);
    }

    #[test]
    fn lock_id_matches_sqlx() {
        // sqlx: 0x3d32ad9e * crc32("postgres") as i64
        assert_eq!(
            lock_id("postgres"),
            0x3d32_ad9e * i64::from(crc32fast::hash(b"postgres"))
        );
        assert!(lock_id("postgres") > 0);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
