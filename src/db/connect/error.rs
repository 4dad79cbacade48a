//! [`ConnectError`]: why a connection failed, where, and whether waiting can help.

use std::fmt;

use rustls::CertificateError;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use super::SslMode;

/// Where a connection went: host(s), port(s), database, user and `sslmode` — never the
/// password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`, comma-separated when there are several.
    pub hosts: String,
    /// The database (libpq's default: the user name).
    pub database: String,
    /// The user.
    pub user: String,
    /// The effective `sslmode`.
    pub ssl_mode: SslMode,
}

impl Endpoint {
    pub(super) fn of(config: &tokio_postgres::Config, ssl_mode: SslMode) -> Self {
        let ports = config.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hosts = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| match host {
                Host::Tcp(name) => format!("{name}:{}", port(i)),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
            })
            .collect::<Vec<_>>()
            .join(",");
        let user = config.get_user().unwrap_or_default().to_owned();
        Self {
            hosts: if hosts.is_empty() {
                "(no host)".into()
            } else {
                hosts
            },
            database: config
                .get_dbname()
                .map_or_else(|| user.clone(), str::to_owned),
            user,
            ssl_mode,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (database \"{}\", user \"{}\", sslmode={})",
            self.hosts, self.database, self.user, self.ssl_mode
        )
    }
}

/// Why a connection could not be made, sorted by what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The connection URL or TLS settings are wrong (permanent).
    Config,
    /// Nothing listens there (transient: the server may be starting).
    Refused,
    /// No answer in time (transient).
    Timeout,
    /// The server answered our TLS request with "no" and TLS is required (permanent).
    TlsRefused,
    /// The TLS handshake failed for a reason other than the certificate (permanent).
    TlsHandshake,
    /// The server's certificate was refused (permanent).
    Certificate(CertProblem),
    /// The server refused the login: wrong password, unknown user, or no `pg_hba.conf`
    /// entry (permanent).
    Authentication,
    /// The database does not exist (permanent).
    MissingDatabase,
    /// The server cannot take connections now: starting up, shutting down, too many
    /// connections (transient).
    ServerBusy,
    /// Anything else: a network error, a dropped connection (transient).
    Other,
}

/// What was wrong with the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertProblem {
    /// It does not chain to a root in `sslrootcert` (unknown CA).
    UnknownCa,
    /// It does not name the host connected to.
    WrongHost,
    /// It has expired.
    Expired,
    /// It is not valid yet.
    NotYetValid,
    /// Anything else (bad signature, bad encoding, ...).
    Other,
}

impl Failure {
    /// Whether retrying cannot help until someone changes a setting, a password, a
    /// certificate or the server.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            Self::Refused | Self::Timeout | Self::ServerBusy | Self::Other
        )
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::Config => "invalid connection settings",
            Self::Refused => "connection refused",
            Self::Timeout => "connection timed out",
            Self::TlsRefused => "the server does not accept TLS",
            Self::TlsHandshake => "TLS handshake failed",
            Self::Certificate(CertProblem::UnknownCa) => {
                "certificate problem: the server's certificate is signed by an unknown CA (not in sslrootcert)"
            }
            Self::Certificate(CertProblem::WrongHost) => {
                "certificate problem: the server's certificate does not match the host name"
            }
            Self::Certificate(CertProblem::Expired) => {
                "certificate problem: the server's certificate has expired"
            }
            Self::Certificate(CertProblem::NotYetValid) => {
                "certificate problem: the server's certificate is not valid yet"
            }
            Self::Certificate(CertProblem::Other) => {
                "certificate problem: the server's certificate was refused"
            }
            Self::Authentication => "authentication failed",
            Self::MissingDatabase => "the database does not exist",
            Self::ServerBusy => "the server cannot accept connections now",
            Self::Other => "cannot connect",
        }
    }
}

/// A failure to connect (or to configure connecting), naming the reason and the endpoint.
///
/// Its text never holds the password: only host, port, database, user and `sslmode` are
/// shown, with the driver's and the server's own explanation.
#[derive(Debug)]
pub struct ConnectError {
    failure: Failure,
    endpoint: Option<Box<Endpoint>>,
    detail: String,
    hint: Option<&'static str>,
}

impl ConnectError {
    pub(super) fn config(detail: String) -> Self {
        Self {
            failure: Failure::Config,
            endpoint: None,
            detail,
            hint: None,
        }
    }

    pub(crate) fn connecting(err: tokio_postgres::Error, endpoint: Endpoint) -> Self {
        let failure = classify(&err);
        let detail = error_chain(&err);
        let hint = match &failure {
            Failure::Authentication
                if endpoint.ssl_mode == SslMode::Disable && detail.contains("no encryption") =>
            {
                Some("the server accepts only TLS connections: use sslmode=require or stronger")
            }
            Failure::TlsRefused => Some("use sslmode=prefer or disable to connect without TLS"),
            Failure::Config if detail.contains("unsupported startup parameter") => Some(
                "a transaction pooler such as PgBouncer refuses startup options: set DB_POOL_MODE=transaction",
            ),
            Failure::Certificate(CertProblem::WrongHost) => Some(
                "connect with the host name the certificate names, or use sslmode=verify-ca to skip the name check",
            ),
            Failure::Certificate(CertProblem::UnknownCa) => {
                Some("set sslrootcert to the CA that signed the server's certificate")
            }
            _ => None,
        };
        Self {
            failure,
            endpoint: Some(Box::new(endpoint)),
            detail,
            hint,
        }
    }

    /// This error with every possible password of `url` masked in its text.
    pub(super) fn redacted(mut self, url: &str) -> Self {
        self.detail = super::redact(&self.detail, url);
        self
    }

    /// What went wrong.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    /// Whether retrying cannot help (see [`Failure::is_permanent`]).
    pub fn is_permanent(&self) -> bool {
        self.failure.is_permanent()
    }

    /// Where it tried, if it got that far.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoint.as_deref()
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.failure.describe())?;
        if let Some(endpoint) = &self.endpoint {
            write!(f, " connecting to {endpoint}")?;
        }
        write!(f, ": {}", self.detail)?;
        if let Some(hint) = self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConnectError {}

/// The error and its causes, on one line.
fn error_chain(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text = format!("{text}: {shown}");
        }
        source = cause.source();
    }
    text
}

fn classify(err: &tokio_postgres::Error) -> Failure {
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        return if db.message().contains("unsupported startup parameter") {
            // PgBouncer refusing the pool's `options`: a setting to change, not a wait.
            Failure::Config
        } else if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            Failure::Authentication
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            Failure::MissingDatabase
        } else {
            Failure::ServerBusy
        };
    }
    if let Some(tls) = find_rustls(err) {
        return match tls {
            rustls::Error::InvalidCertificate(cert) => Failure::Certificate(match cert {
                CertificateError::UnknownIssuer => CertProblem::UnknownCa,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => CertProblem::WrongHost,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    CertProblem::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    CertProblem::NotYetValid
                }
                _ => CertProblem::Other,
            }),
            _ => Failure::TlsHandshake,
        };
    }
    let text = err.to_string();
    if text.contains("server does not support TLS") {
        return Failure::TlsRefused;
    }
    if let Some(io) = find_io(err) {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => Failure::Refused,
            std::io::ErrorKind::TimedOut => Failure::Timeout,
            _ => Failure::Other,
        };
    }
    if text.starts_with("timeout") {
        return Failure::Timeout;
    }
    if text.starts_with("invalid configuration") || text.starts_with("invalid connection string") {
        return Failure::Config;
    }
    Failure::Other
}

/// The rustls error in a chain: tokio-rustls wraps it in an `io::Error`, whose `source()`
/// skips it, so look inside those too.
fn find_rustls<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        current = err.source();
    }
    None
}

fn find_io<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = err.source();
    }
    None
}
