//! What the service reads from the router, when it is axum's (the `axum` feature): the
//! routing arguments, the mount prefix under `nest_service`, and the peer's address.
//! Without the feature a request has no routing arguments, no mount prefix and no known
//! peer, unless the caller builds the [`Environ`](crate::Environ) itself.

use std::net::SocketAddr;

use http::request::Parts;

use crate::RequestError;

/// The path parameters the router matched, percent-decoded.
///
/// No parameters (a route without any, or a service mounted outside a router) is an empty
/// list; a parameter that does not decode is refused, never dropped.
#[cfg(feature = "axum")]
pub(crate) async fn routing_args(parts: &mut Parts) -> Result<Vec<(String, String)>, RequestError> {
    use axum::extract::rejection::RawPathParamsRejection;
    use axum::extract::{FromRequestParts, RawPathParams};

    match RawPathParams::from_request_parts(parts, &()).await {
        Ok(params) => Ok(params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()),
        Err(RawPathParamsRejection::MissingPathParams(_)) => Ok(Vec::new()),
        Err(rejection) => Err(RequestError::InvalidPathParam {
            detail: rejection.body_text(),
        }),
    }
}

/// Without a router that records them, there are no routing arguments.
#[cfg(not(feature = "axum"))]
pub(crate) async fn routing_args(
    _parts: &mut Parts,
) -> Result<Vec<(String, String)>, RequestError> {
    Ok(Vec::new())
}

/// The mount prefix, raw as in the URI, with the original URI put back in `parts`.
///
/// axum's `nest_service` strips the mount prefix from the URI; the original keeps it. Put
/// the original back and let the builder split it into `SCRIPT_NAME` + `PATH_INFO`.
#[cfg(feature = "axum")]
pub(crate) fn mount_prefix(parts: &mut Parts) -> Option<String> {
    use axum::extract::OriginalUri;

    let OriginalUri(original) = parts.extensions.get::<OriginalUri>()?;
    let (outer, inner) = (original.path(), parts.uri.path());
    if outer == inner {
        return None;
    }
    let prefix = if let Some(stripped) = outer.strip_suffix(inner) {
        Some(stripped.to_owned())
    } else if inner == "/" {
        Some(outer.to_owned())
    } else {
        None
    };
    parts.uri = original.clone();
    prefix
}

/// Without a router that nests, the service is mounted at the root.
#[cfg(not(feature = "axum"))]
pub(crate) fn mount_prefix(_parts: &mut Parts) -> Option<String> {
    None
}

/// The peer, from axum's `ConnectInfo<SocketAddr>`.
#[cfg(feature = "axum")]
pub(crate) fn remote_addr(parts: &Parts) -> Option<SocketAddr> {
    use axum::extract::ConnectInfo;

    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

/// Without axum's `ConnectInfo`, the peer is unknown.
#[cfg(not(feature = "axum"))]
pub(crate) fn remote_addr(_parts: &Parts) -> Option<SocketAddr> {
    None
}
