//! What the document says before any route: the info, the security schemes, the `Error`
//! schema and the shared 401 response.

use utoipa::PartialSchema;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, InfoBuilder, OpenApi, Paths};

use super::parts::{self, ERROR, UNAUTHORIZED};
use crate::auth::{COOKIE_PATH, SESSION_COOKIE};
use crate::error::FieldError;

/// The document with no route yet: info, security schemes (`bearerAuth`, `sessionCookie`,
/// `metricsToken`), the `Error` schema and the `Unauthorized` response.
///
/// ```
/// let doc = pgbridge::api_doc::base();
/// assert_eq!(doc.info.version, env!("CARGO_PKG_VERSION"));
/// assert!(doc.paths.paths.is_empty());
/// ```
pub fn base() -> OpenApi {
    let info = InfoBuilder::new()
        .title("pgbridge")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "An application server and template for async Postgres web services. Every error \
             has one shape, `{\"error\": {\"code\", \"message\"}}` (plus `fields` for 422), and \
             every response carries an `x-request-id`. A method a path does not list is \
             answered 405 with `Allow`. `/notes…` need `Authorization: Bearer <token>`: sign \
             up with `POST /accounts`, log in with `POST /sessions`.",
        ))
        .build();
    let mut components = Components::new();
    components
        .schemas
        .insert(ERROR.into(), error_schema().into());
    components.security_schemes.insert(
        "bearerAuth".into(),
        bearer(
            "A session token from `POST /sessions`, sent as `Authorization: Bearer <token>`. It \
             lasts `SESSION_TTL_SECS` and stops working at once after `DELETE /sessions/current`.",
        ),
    );
    components.security_schemes.insert(
        "sessionCookie".into(),
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            SESSION_COOKIE.to_owned(),
            format!(
                "The same token in the `HttpOnly` cookie `POST /sessions` sets (`Path={COOKIE_PATH}`): \
                 accepted on `GET {COOKIE_PATH}` only, for `EventSource`, which cannot send headers."
            ),
        ))),
    );
    components.security_schemes.insert(
        "metricsToken".into(),
        bearer(
            "The `METRICS_TOKEN` the service was started with, as `Authorization: Bearer \
             <METRICS_TOKEN>`. Without that setting `/metrics` is open.",
        ),
    );
    components.responses.insert(
        UNAUTHORIZED.into(),
        parts::json(
            "No credentials, or a token that is malformed, unknown, expired or revoked.",
            parts::schema_ref(ERROR),
        )
        .header("WWW-Authenticate", parts::www_authenticate())
        .build()
        .into(),
    );
    let mut doc = OpenApi::new(info, Paths::new());
    doc.components = Some(components);
    doc
}

fn bearer(description: &str) -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(description))
            .build(),
    )
}

/// `{"error": {"code", "message", "fields"?}}` ([`crate::error::ApiError`]'s body).
fn error_schema() -> ObjectBuilder {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let inner = ObjectBuilder::new()
        .schema_type(Type::Object)
        .required("code")
        .required("message")
        .property(
            "code",
            string().description(Some("What went wrong, for programs (`not_found`).")),
        )
        .property(
            "message",
            string().description(Some("What went wrong, for people.")),
        )
        .property("fields", parts::array_of(FieldError::schema()));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .required("error")
        .property("error", inner)
}
