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
use serde::Deserialize;
use serde_json::json;

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
        ),
        Route::app(
            &[Method::GET],
            "/accounts/me",
            "the account the bearer token belongs to",
            me,
        ),
        Route::app(
            &[Method::POST],
            "/sessions",
            "log in: a bearer token, and the cookie for /notes/events",
            login,
        ),
        Route::app(
            &[Method::DELETE],
            "/sessions/current",
            "log out: the bearer token stops working at once",
            logout,
        ),
    ]
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
    let body = json!({"id": row.get::<_, i64>(0), "username": row.get::<_, String>(1), "created_at": row.get::<_, String>(2)});
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
        &json!({"token": token, "expires_at": session.expires_at}),
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
    let body = json!({"id": row.get::<_, i64>(0), "username": row.get::<_, String>(1), "created_at": row.get::<_, String>(2)});
    send_json(&start_response, "200 OK", vec![], &body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
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
    environ
        .extensions()
        .get::<AuthSettings>()
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
    body: &serde_json::Value,
) -> Result<Body, Error> {
    headers.insert(0, ("Content-Type".into(), "application/json".into()));
    start_response.start(status, headers)?;
    Ok(Body::from(serde_json::to_vec(body)?))
}
