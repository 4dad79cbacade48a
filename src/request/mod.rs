//! What a request carries to every application and to [`crate::auth`] alike, taken from its
//! environ: the database handle ([`db`]), the read route ([`consistency::read_route`]) and,
//! once authenticated, the caller ([`Principal`]). It sits below both: `auth` and the
//! applications depend on it, it depends on neither.

pub mod consistency;
mod provided;

pub use provided::{Provided, provided};

use crate::db::Db;
use crate::error::ApiError;
use awsgi::Environ;

/// The database handle from the environ's extensions (the router's `Extension` layer puts
/// it there); 500 if the app was mounted without it.
///
/// ```
/// use pgbridge::awsgi::Environ;
///
/// let environ = Environ::builder(http::Request::get("/").body(()).unwrap()).build();
/// assert_eq!(pgbridge::request::db(&environ).unwrap_err().status(), 500);
/// ```
pub fn db(environ: &Environ) -> Result<Db, ApiError> {
    environ.extensions().get::<Db>().cloned().ok_or_else(|| {
        tracing::error!("no Db in the environ: mount the app under the router's Extension layer");
        ApiError::Internal
    })
}

/// An authenticated caller: the account, and the session its token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// `accounts.id`: the owner of what it creates, and of all it may see.
    pub account_id: i64,
    /// `sessions.id`: revoking it ends the caller's access, open streams included.
    pub session_id: i64,
}
