//! Accounts and sessions on the contract.
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /accounts` `{"username","password"}` | 201 `{"id","username","created_at"}`; 409 if the name is taken |
//! | `POST /sessions` `{"username","password"}` | 201 `{"token","expires_at"}` and the stream cookie; 401; 429 + `Retry-After` |
//! | `DELETE /sessions/current` | 204: the token is revoked at once (open streams end) |
//! | `GET /accounts/me` | 200 `{"id","username","created_at"}` |
//!
//! A login from an address that failed too often for that account, or too often at all,
//! answers 429 before any password is checked ([`throttle`]); each account keeps at most
//! `SESSION_MAX_PER_ACCOUNT` live sessions (a login past it revokes the oldest).
//!
//! Usernames: 3 to 32 of `a-z 0-9 . _ -` (letters are lower-cased). Passwords: 8 to 128
//! characters. Every failed login answers the same 401, in the same time, whether or not
//! the account exists.

use http::Method;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::OpenApi;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::api_doc::parts::{self, Method as Op};

use crate::auth::{self, AuthSettings, Carrier, password, sessions, throttle, token};
use crate::db::DbError;
use crate::error::{ApiError, FieldError};
use crate::routes::Route;
use awsgi::{Body, Environ, Error, StartResponse};

use crate::request::db;

pub use crate::auth::USERNAME_LEN;
/// Passwords' length bounds, in characters.
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// The routes of accounts and sessions.
pub fn routes() -> Vec<Route> {
    vec![
        Route::app(
            &[Method::POST],
            "/accounts",
            "sign up: {\"username\",\"password\"}",
            signup,
        )
        .documented(document_signup),
        Route::app(
            &[Method::GET],
            "/accounts/me",
            "the account the bearer token belongs to",
            me,
        )
        .documented(document_me),
        Route::app(
            &[Method::POST],
            "/sessions",
            "log in: a bearer token, and the cookie for /notes/events",
            login,
        )
        .documented(document_login),
        Route::app(
            &[Method::DELETE],
            "/sessions/current",
            "log out: the bearer token stops working at once",
            logout,
        )
        .documented(document_logout),
    ]
}

/// An account, as `POST /accounts` and `GET /accounts/me` show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Account {
    /// Assigned by Postgres.
    #[schema(minimum = 1)]
    pub id: i64,
    /// The username, lower-cased.
    pub username: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl Account {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get(0),
            username: row.get(1),
            created_at: row.get(2),
        }
    }
}

/// A new session, as `POST /sessions` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// When it stops working, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// What sign-up and log-in send.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Credentials {
    #[schema(schema_with = username_schema)]
    username: String,
    #[schema(schema_with = password_schema)]
    password: String,
}

fn username_schema() -> Schema {
    let (min, max) = (*USERNAME_LEN.start(), *USERNAME_LEN.end());
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(format!("^[A-Za-z0-9._-]{{{min},{max}}}$")))
        .description(Some(format!(
            "{min} to {max} letters, digits, `.`, `_` or `-`; letters are lower-cased."
        )))
        .into()
}

fn password_schema() -> Schema {
    let (min, max) = (*PASSWORD_LEN.start(), *PASSWORD_LEN.end());
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(format!("{min} to {max} characters.")))
        .into()
}

const NOT_CREDENTIALS: &str = "The body is not a JSON object with the strings `username` and \
                               `password` (and nothing else).";

/// Sign-up and log-in: the credentials as the body, and the answers to a bad one.
fn with_credentials(
    operation: utoipa::openapi::path::OperationBuilder,
) -> utoipa::openapi::path::OperationBuilder {
    operation
        .request_body(Some(parts::body(
            &["application/json"],
            parts::schema_ref("Credentials"),
        )))
        .response("400", parts::error(NOT_CREDENTIALS))
        .response("413", parts::error("The body is larger than the limit."))
        .response("415", parts::error("The body is not `application/json`."))
}

fn document_signup(doc: &mut OpenApi) {
    parts::add_schema_of::<Credentials>(doc);
    parts::add_schema_of::<Account>(doc);
    let operation = parts::operation("signUp", "Create an account")
        .description(Some(
            "Then log in with `POST /sessions`. The password is stored as an Argon2id hash.",
        ))
        .response(
            "201",
            parts::json("The account.", parts::schema_ref("Account"))
                .header("Location", parts::header("`/accounts/me`.")),
        )
        .response("409", parts::error("That username is taken."))
        .response(
            "422",
            parts::error("A username or password outside the rules; `fields` says which."),
        )
        .response("503", parts::unavailable());
    parts::add(doc, "/accounts", Op::Post, with_credentials(operation));
}

fn document_me(doc: &mut OpenApi) {
    parts::add_schema_of::<Account>(doc);
    let operation = parts::operation("me", "The account the token belongs to")
        .security(parts::bearer())
        .response(
            "200",
            parts::json("The account.", parts::schema_ref("Account")),
        )
        .response("401", parts::unauthorized())
        .response("503", parts::unavailable());
    parts::add(doc, "/accounts/me", Op::Get, operation);
}

fn document_login(doc: &mut OpenApi) {
    parts::add_schema_of::<Credentials>(doc);
    parts::add_schema_of::<Session>(doc);
    let cookie = auth::SESSION_COOKIE;
    let path = auth::COOKIE_PATH;
    let retry_after: RefOr<Schema> = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .into();
    let operation = parts::operation("logIn", "Log in: a bearer token")
        .description(Some(format!(
            "Also sets the `HttpOnly`, `SameSite=Lax` cookie `{cookie}` with `Path={path}`, so \
             that an `EventSource` on the same origin is signed in. Every failed login is the \
             same 401, whether or not the account exists; too many failures for one account or \
             one address within the window are 429."
        )))
        .response(
            "201",
            parts::json("A new session.", parts::schema_ref("Session")).header(
                "Set-Cookie",
                parts::header(&format!(
                    "`{cookie}=<token>; Path={path}; Max-Age=…; HttpOnly; SameSite=Lax` (and \
                     `Secure` over HTTPS)."
                )),
            ),
        )
        .response("401", parts::unauthorized())
        .response(
            "429",
            parts::json(
                "Too many failed logins; try again later.",
                parts::schema_ref(parts::ERROR),
            )
            .header(
                "Retry-After",
                parts::header_of("Seconds until the window ends.", retry_after),
            ),
        )
        .response("503", parts::unavailable());
    parts::add(doc, "/sessions", Op::Post, with_credentials(operation));
}

fn document_logout(doc: &mut OpenApi) {
    let operation = parts::operation("logOut", "Log out: revoke this token")
        .description(Some(
            "The token stops working at once; open event streams on it end. The stream cookie \
             is cleared.",
        ))
        .security(parts::bearer())
        .response(
            "204",
            parts::empty("Revoked.").header(
                "Set-Cookie",
                parts::header(&format!("Clears `{}`.", auth::SESSION_COOKIE)),
            ),
        )
        .response("401", parts::unauthorized())
        .response("503", parts::unavailable());
    parts::add(doc, "/sessions/current", Op::Delete, operation);
}

/// `POST /accounts`: sign up.
pub async fn signup(mut environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let credentials = read_credentials(&mut environ).await?;
    let username = credentials.username.to_ascii_lowercase();
    let mut errors = Vec::new();
    if !auth::valid_username(&username) {
        errors.push(FieldError {
            field: "username".into(),
            message: "must be 3 to 32 letters, digits, '.', '_' or '-'".into(),
        });
    }
    if !PASSWORD_LEN.contains(&credentials.password.chars().count()) {
        errors.push(FieldError {
            field: "password".into(),
            message: "must be 8 to 128 characters".into(),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors).into());
    }
    let hash = password::hash(credentials.password).await?;
    let conn = db(&environ)?.conn().await?;
    let row = conn
        .query_one(
            concat!(
                "INSERT INTO accounts (username, password_hash) VALUES ($1, $2) \
                 RETURNING id, username, ",
                crate::utc_text!("created_at")
            ),
            &[&username, &hash],
        )
        .await
        .map_err(|err| match err {
            DbError::Conflict { .. } => ApiError::Conflict("that username is taken".into()),
            other => other.into(),
        })?;
    let body = Account::from_row(&row);
    send_json(
        &start_response,
        "201 Created",
        vec![("Location".into(), "/accounts/me".into())],
        &body,
    )
}

/// `POST /sessions`: log in.
///
/// The pooled connection is held only for the database's parts: the throttle's
/// reservation and the account's hash are read on one, which goes back to the pool while
/// Argon2id runs (tens of milliseconds of CPU); the outcome and the new session take
/// another afterwards. See [`throttle`] for the limits.
pub async fn login(mut environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let settings = settings(&environ)?;
    let credentials = read_credentials(&mut environ).await?;
    let username = credentials.username.to_ascii_lowercase();
    let scopes = throttle::Scopes::new(&username, settings.client_addr(&environ));
    let db = db(&environ)?;
    // A name no account can have (U+0000, which Postgres cannot take, included) and
    // oversized input are refused like a wrong password (after the same work), so no
    // answer says which accounts exist.
    let plausible = auth::valid_username(&username)
        && credentials.password.chars().count() <= PASSWORD_LEN.end() * 4;
    if let Some(retry_after) = settings.recent_refusals.refused(&scopes) {
        settings.stats.throttled();
        return Err(ApiError::TooManyRequests { retry_after }.into());
    }
    let (account_id, stored) = {
        let mut conn = db.conn().await?;
        if let throttle::Reservation::Refused {
            retry_after,
            scopes: refusing,
        } = throttle::reserve(&mut conn, &scopes, &settings.limits).await?
        {
            settings.recent_refusals.remember(&refusing, retry_after);
            settings.stats.throttled();
            return Err(ApiError::TooManyRequests { retry_after }.into());
        }
        let account = if plausible {
            conn.query_opt(
                "SELECT id, password_hash FROM accounts WHERE username = $1",
                &[&username],
            )
            .await?
        } else {
            None
        };
        match &account {
            Some(row) => (Some(row.get::<_, i64>(0)), row.get::<_, Option<String>>(1)),
            None => (None, None),
        }
        // The connection goes back to the pool here, before the hash.
    };
    let password = if plausible {
        credentials.password
    } else {
        String::new()
    };
    settings.stats.checked();
    let verified = password::verify(password, stored).await?;
    let conn = db.conn().await?;
    let Some(account_id) = account_id.filter(|_| verified) else {
        throttle::failed(&conn, &scopes, &settings.limits).await?;
        return Err(ApiError::Unauthorized {
            message: "invalid username or password".into(),
            invalid_token: false,
        }
        .into());
    };
    throttle::succeeded(&conn, &scopes, &settings.limits).await?;

    let token = token::generate()?;
    let session = sessions::create(
        &conn,
        &token,
        account_id,
        settings.session_ttl,
        settings.max_sessions,
    )
    .await?;
    drop(conn);
    settings.stats.revoked(session.revoked);
    auth::forget_sessions(&db, &session.revoked_ids);
    let cookie = session_cookie(&environ, &settings, &token, settings.session_ttl.as_secs());
    send_json(
        &start_response,
        "201 Created",
        vec![
            ("Set-Cookie".into(), cookie),
            ("Cache-Control".into(), "no-store".into()),
        ],
        &Session {
            token,
            expires_at: session.expires_at,
        },
    )
}

/// `DELETE /sessions/current`: log out. The token stops working at once.
pub async fn logout(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let settings = settings(&environ)?;
    let principal = auth::authenticate(&environ, Carrier::Header).await?;
    let conn = db(&environ)?.conn().await?;
    conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        &[&principal.session_id],
    )
    .await?;
    // This process's session cache forgets it before the answer; the others hear it.
    auth::forget_sessions(&db(&environ)?, &[principal.session_id]);
    let cookie = session_cookie(&environ, &settings, "", 0);
    start_response.start("204 No Content", vec![("Set-Cookie".to_owned(), cookie)])?;
    Ok(Body::empty())
}

/// `GET /accounts/me`: who the token belongs to.
pub async fn me(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    let principal = auth::authenticate(&environ, Carrier::Header).await?;
    let conn = db(&environ)?.conn().await?;
    let row = conn
        .query_one(
            concat!(
                "SELECT id, username, ",
                crate::utc_text!("created_at"),
                " FROM accounts WHERE id = $1"
            ),
            &[&principal.account_id],
        )
        .await?;
    send_json(&start_response, "200 OK", vec![], &Account::from_row(&row))
}

async fn read_credentials(environ: &mut Environ) -> Result<Credentials, ApiError> {
    super::require_media_type(environ, &["application/json"])?;
    let bytes = environ.input().read_to_end().await?;
    serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::bad_request(
            "the body must be a JSON object with the strings \"username\" and \"password\"",
        )
    })
}

fn settings(environ: &Environ) -> Result<AuthSettings, ApiError> {
    crate::request::provided::<AuthSettings>(environ.extensions())
        .cloned()
        .ok_or_else(|| {
            tracing::error!("no AuthSettings in the environ");
            ApiError::Internal
        })
}

/// The stream cookie: `HttpOnly`, `SameSite=Lax`, sent only to the event stream, `Secure`
/// over HTTPS or when `SESSION_COOKIE_SECURE` says a proxy terminates TLS.
fn session_cookie(environ: &Environ, settings: &AuthSettings, token: &str, max_age: u64) -> String {
    let secure = settings.cookie_secure || environ.url_scheme() == "https";
    format!(
        "{}={token}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        auth::SESSION_COOKIE,
        auth::COOKIE_PATH,
        if secure { "; Secure" } else { "" }
    )
}

fn send_json(
    start_response: &StartResponse,
    status: &str,
    mut headers: Vec<(String, String)>,
    body: &impl Serialize,
) -> Result<Body, Error> {
    headers.insert(0, ("Content-Type".into(), "application/json".into()));
    start_response.start(status, headers)?;
    Ok(Body::from(serde_json::to_vec(body)?))
}
