//! [`PgConnect`]: how every connection the service opens reaches Postgres — the pool, the
//! event listener, the migrator and cancel requests all go through here, so they agree on
//! TLS and report failures the same way.
//!
//! The URL is a libpq URL (`postgres://user:password@host:port/db?...`) or a libpq
//! key=value string. tokio-postgres' own parser knows neither `sslrootcert` nor the
//! `verify-ca`/`verify-full` modes, so [`PgConnect::parse`] takes libpq's TLS parameters
//! out first and applies them itself, with **rustls** (`tokio-postgres-rustls`, ring):
//!
//! | `sslmode` | TLS | certificate chain checked | host name checked |
//! |---|---|---|---|
//! | `disable` | never | – | – |
//! | `allow`, `prefer` (default) | if the server accepts it, else plain | only with `sslrootcert` | no |
//! | `require` | always | only with `sslrootcert` (libpq: then it is `verify-ca`) | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the platform's roots
//! (which, as in libpq, implies `verify-full` and refuses weaker modes). Like libpq,
//! TLS does not apply to Unix-socket hosts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pgbridge::db::connect::ConnectError> {
//! use pgbridge::db::connect::PgConnect;
//!
//! let pg = PgConnect::parse(
//!     "postgres://app:secret@db.example.com/app?sslmode=verify-full&sslrootcert=/etc/ssl/rds.pem",
//! )?;
//! let (client, connection) = pg.connect().await?;
//! tokio::spawn(connection);
//! client.simple_query("SELECT 1").await.ok();
//! # Ok(()) }
//! ```

mod error;
mod params;
mod pooled;
mod redact;
mod verify;

pub use error::{CertProblem, ConnectError, Endpoint, Failure};
pub use params::with_defaults;
pub use pooled::Pooled;
pub use redact::{MASK, redact, secrets};

use params::split_tls_params;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};

/// The TLS connector every connection uses (cheap to clone: the rustls configuration is shared).
pub type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// A connection to drive (spawn it), as [`PgConnect::connect`] returns it.
pub type PgConnection = tokio_postgres::Connection<Socket, <Tls as MakeTlsConnect<Socket>>::Stream>;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// libpq tries plain text first, then TLS; here it behaves as `prefer`.
    Allow,
    /// TLS if the server accepts it, plain text if it refuses (the default).
    #[default]
    Prefer,
    /// TLS always; the certificate is not checked (unless `sslrootcert` is given).
    Require,
    /// TLS always; the certificate chain must lead to a root in `sslrootcert`.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The name libpq uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = ConnectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(ConnectError::config(format!(
                    "invalid sslmode {other:?}: use disable, prefer, require, verify-ca or verify-full"
                )));
            }
        })
    }
}

/// Where trusted root certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// The platform's trust store (`sslrootcert=system`).
    System,
    /// A PEM file of CA certificates.
    File(PathBuf),
}

/// A parsed connection URL with its TLS settings and connector: what every connection the
/// service opens is made from. See the [module docs](self).
#[derive(Clone)]
pub struct PgConnect {
    config: tokio_postgres::Config,
    ssl_mode: SslMode,
    root_cert: Option<RootCert>,
    tls: Tls,
}

impl fmt::Debug for PgConnect {
    // Not the config: it holds the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnect")
            .field("endpoint", &Endpoint::of(&self.config, self.ssl_mode))
            .field("root_cert", &self.root_cert)
            .finish_non_exhaustive()
    }
}

impl PgConnect {
    /// Parses a libpq URL or key=value string, reading nothing from the environment (the
    /// service applies `PGSSLMODE`/`PGSSLROOTCERT` through [`with_defaults`] first). Loads
    /// the root certificates, so a missing or unreadable `sslrootcert` fails here.
    ///
    /// ```
    /// use pgbridge::db::connect::{PgConnect, SslMode};
    ///
    /// let pg = PgConnect::parse("postgres://app@localhost/app?sslmode=require")?;
    /// assert_eq!(pg.ssl_mode(), SslMode::Require);
    /// assert_eq!(pg.config().get_dbname(), Some("app"));
    /// # Ok::<(), pgbridge::db::connect::ConnectError>(())
    /// ```
    ///
    /// An error never shows the password, whatever the string's shape (see [`redact`]).
    pub fn parse(url: &str) -> Result<Self, ConnectError> {
        Self::parse_unredacted(url).map_err(|err| err.redacted(url))
    }

    fn parse_unredacted(url: &str) -> Result<Self, ConnectError> {
        let (rest, params) = split_tls_params(url)?;
        let mut ssl_mode = None;
        let mut root_cert = None;
        for (key, value) in params {
            match key.as_str() {
                "sslmode" => ssl_mode = Some(value.parse::<SslMode>()?),
                "sslrootcert" if value == "system" => root_cert = Some(RootCert::System),
                "sslrootcert" => root_cert = Some(RootCert::File(PathBuf::from(value))),
                other => {
                    return Err(ConnectError::config(format!(
                        "{other} is not supported (client certificates and revocation lists are not implemented)"
                    )));
                }
            }
        }
        // libpq: sslrootcert=system means verify-full, and weaker modes are refused.
        let ssl_mode = match (ssl_mode, &root_cert) {
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (Some(mode), Some(RootCert::System)) if mode != SslMode::VerifyFull => {
                return Err(ConnectError::config(format!(
                    "weak sslmode \"{mode}\" may not be used with sslrootcert=system (use \"verify-full\")"
                )));
            }
            (mode, _) => mode.unwrap_or_default(),
        };
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|err| ConnectError::config(err.to_string()))?;
        let unix_only = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|host| !matches!(host, Host::Tcp(_)));
        config.ssl_mode(match ssl_mode {
            // libpq ignores sslmode on Unix sockets: Postgres never offers TLS there.
            _ if unix_only => tokio_postgres::config::SslMode::Disable,
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(verify::client_config(
            ssl_mode,
            root_cert.as_ref(),
        )?);
        Ok(Self {
            config,
            ssl_mode,
            root_cert,
            tls,
        })
    }

    /// The tokio-postgres configuration (without the TLS parameters).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The configuration, to set timeouts or the application name.
    pub fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    /// The effective `sslmode`.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The `sslrootcert`, if any.
    pub fn root_cert(&self) -> Option<&RootCert> {
        self.root_cert.as_ref()
    }

    /// The TLS connector, for tokio-postgres calls that take one (a pool manager, cancel
    /// requests).
    pub fn tls(&self) -> Tls {
        self.tls.clone()
    }

    /// Host, port, database and user, for messages (never the password).
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::of(&self.config, self.ssl_mode)
    }

    /// Opens a connection; the error says why it failed and where it tried.
    pub async fn connect(&self) -> Result<(Client, PgConnection), ConnectError> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|err| self.error(err))
    }

    /// Describes a failure to connect with this configuration.
    pub fn error(&self, err: tokio_postgres::Error) -> ConnectError {
        ConnectError::connecting(err, self.endpoint())
    }
}

/// Drives `connection` on a task of its own. If it ends with an error, "`{kind}` Postgres
/// connection closed" is logged at WARN — at most once per `log`'s interval, with the count
/// left out: while Postgres restarts (or a pooler in front of it refuses) every connection
/// ends that way, and a line each would bury the log.
pub(crate) fn drive(
    connection: PgConnection,
    log: &'static crate::unavailable_log::RateLimit,
    kind: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(err) = connection.await
            && let Some(left_out) = log.admit(std::time::Instant::now())
        {
            tracing::warn!(error = %err, left_out, "{kind} Postgres connection closed");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> PgConnect {
        PgConnect::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn write_ca() -> PathBuf {
        // A self-signed certificate is a valid root store entry.
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let path = std::env::temp_dir().join(format!(
            "pgbridge-connect-unit-{}-{:?}.pem",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, cert.cert.pem()).unwrap();
        path
    }

    #[test]
    fn the_default_is_prefer_as_in_libpq() {
        let pg = parse("postgres://app@localhost/app");
        assert_eq!(pg.ssl_mode(), SslMode::Prefer);
        assert_eq!(
            pg.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
    }

    #[test]
    fn libpq_params_are_taken_out_and_the_rest_kept() {
        let ca = write_ca();
        let url = format!(
            "postgres://app:pw@localhost:6543/db?application_name=x&sslmode=verify-full&sslrootcert={}&connect_timeout=7",
            percent_encoding::utf8_percent_encode(
                ca.to_str().unwrap(),
                percent_encoding::NON_ALPHANUMERIC
            )
        );
        let pg = parse(&url);
        assert_eq!(pg.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(pg.root_cert(), Some(&RootCert::File(ca.clone())));
        assert_eq!(pg.config().get_application_name(), Some("x"));
        assert_eq!(
            pg.config().get_connect_timeout(),
            Some(&std::time::Duration::from_secs(7))
        );
        assert_eq!(pg.config().get_ports(), [6543]);
        assert_eq!(
            pg.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let _ = std::fs::remove_file(ca);
    }

    #[test]
    fn key_value_strings_too() {
        let ca = write_ca();
        let conninfo = format!(
            "host=localhost  user=app password='it''s' dbname = db sslmode=verify-ca sslrootcert='{}'",
            ca.display()
        )
        .replace("''", r"\'");
        let pg = parse(&conninfo);
        assert_eq!(pg.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(pg.config().get_dbname(), Some("db"));
        assert_eq!(pg.config().get_password(), Some(&b"it's"[..]));
        let _ = std::fs::remove_file(ca);
    }

    #[test]
    fn every_mode_parses_and_a_bad_one_is_named() {
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Allow),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
        ] {
            let pg = parse(&format!("postgres://a@h/d?sslmode={text}"));
            assert_eq!(pg.ssl_mode(), mode);
        }
        let err = PgConnect::parse("postgres://a:hunter2@h/d?sslmode=verify_full").unwrap_err();
        assert!(
            err.to_string().contains("invalid sslmode \"verify_full\""),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"));
        assert!(err.is_permanent());
    }

    #[test]
    fn verify_modes_need_a_root_certificate() {
        let err = PgConnect::parse("postgres://a@h/d?sslmode=verify-full").unwrap_err();
        assert!(err.to_string().contains("needs sslrootcert"), "{err}");
        let err =
            PgConnect::parse("postgres://a@h/d?sslmode=verify-ca&sslrootcert=/nonexistent.pem")
                .unwrap_err();
        assert!(err.to_string().contains("/nonexistent.pem"), "{err}");
    }

    #[test]
    fn system_roots_imply_verify_full_and_refuse_weaker_modes() {
        if let Ok(pg) = PgConnect::parse("postgres://a@h/d?sslrootcert=system") {
            assert_eq!(pg.ssl_mode(), SslMode::VerifyFull);
        } // else: no trust store on this machine, reported as such
        let err =
            PgConnect::parse("postgres://a@h/d?sslrootcert=system&sslmode=require").unwrap_err();
        assert!(
            err.to_string().contains("weak sslmode \"require\""),
            "{err}"
        );
    }

    #[test]
    fn unix_sockets_never_use_tls() {
        let pg = parse("host=/var/run/postgresql user=a sslmode=require");
        assert_eq!(
            pg.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn client_certificates_are_refused_clearly() {
        let err = PgConnect::parse("postgres://a@h/d?sslcert=c.pem").unwrap_err();
        assert!(
            err.to_string().contains("sslcert is not supported"),
            "{err}"
        );
    }

    #[test]
    fn environment_defaults_never_override_the_url() {
        assert_eq!(
            with_defaults("postgres://a@h/d?x=1", Some("require"), None),
            "postgres://a@h/d?x=1&sslmode=require"
        );
        assert_eq!(
            with_defaults(
                "postgres://a@h/d?sslmode=disable",
                Some("require"),
                Some("c.pem")
            ),
            "postgres://a@h/d?sslmode=disable&sslrootcert=c.pem"
        );
        assert_eq!(
            with_defaults("host=h user=a", Some("verify-full"), Some("/my ca.pem")),
            "host=h user=a sslmode='verify-full' sslrootcert='/my ca.pem'"
        );
        assert_eq!(
            with_defaults("host=h sslmode=prefer", Some("verify-full"), None),
            "host=h sslmode=prefer"
        );
        // The appended form parses back.
        let url = with_defaults("host=h user=a", Some("require"), None);
        assert_eq!(parse(&url).ssl_mode(), SslMode::Require);
    }

    #[test]
    fn the_endpoint_names_everything_but_the_password() {
        let pg = parse("postgres://app:s3cret@db.example:6000/notes?sslmode=require");
        let shown = pg.endpoint().to_string();
        assert_eq!(
            shown,
            "db.example:6000 (database \"notes\", user \"app\", sslmode=require)"
        );
        assert!(!format!("{pg:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn refused_is_transient_and_says_where() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = parse(&format!("postgres://app:s3cret@127.0.0.1:{port}/db"));
        let err = pg.connect().await.err().expect("nothing listens there");
        assert_eq!(err.failure(), &Failure::Refused);
        assert!(!err.is_permanent());
        let text = err.to_string();
        assert!(
            text.starts_with("connection refused connecting to 127.0.0.1:"),
            "{text}"
        );
        assert!(text.contains("database \"db\", user \"app\""), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
