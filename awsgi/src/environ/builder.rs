//! [`EnvironBuilder`]: how the server (and a test) makes an [`Environ`] from a request head.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Environ;
use super::cgi::decode_path;
use crate::{Errors, Input};

/// Builds an [`Environ`]. The layer uses it for every request; tests and examples use it to
/// call an application directly.
#[derive(Debug)]
pub struct EnvironBuilder {
    environ: Environ,
}

impl EnvironBuilder {
    pub(crate) fn from_parts(parts: http::request::Parts) -> Self {
        let path = parts.uri.path();
        let environ = Environ {
            path_info: path.contains('%').then(|| decode_path(path)),
            script_name: String::new(),
            server_fallback: (Arc::from("localhost"), 80),
            url_scheme: if parts.uri.scheme_str() == Some("https") {
                "https"
            } else {
                "http"
            },
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            remote_addr: None,
            headers: parts.headers,
            routing_args: Vec::new(),
            extensions: parts.extensions,
            input: Input::empty(),
            errors: Errors::default(),
        };
        Self { environ }
    }

    /// Takes `prefix` (raw, as in the URI) off the front of the path as `SCRIPT_NAME`.
    /// A prefix the path does not start with is ignored.
    pub fn script_name(mut self, prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        let decoded = decode_path(prefix);
        if let Some(rest) = self.environ.path_info().strip_prefix(decoded.as_str()) {
            if rest.is_empty() || rest.starts_with('/') {
                self.environ.path_info = Some(rest.to_owned());
                self.environ.script_name = decoded;
            }
        }
        self
    }

    /// Sets `SERVER_NAME` and `SERVER_PORT` for requests that carry no `Host`.
    pub fn server(mut self, name: impl Into<Arc<str>>, port: u16) -> Self {
        self.environ.server_fallback = (name.into(), port);
        self
    }

    /// Sets `wsgi.url_scheme`.
    pub fn https(mut self, https: bool) -> Self {
        self.environ.url_scheme = if https { "https" } else { "http" };
        self
    }

    /// Sets `REMOTE_ADDR` and `REMOTE_PORT`.
    pub fn remote_addr(mut self, addr: SocketAddr) -> Self {
        self.environ.remote_addr = Some(addr);
        self
    }

    /// Sets `wsgiorg.routing_args`.
    pub fn routing_args(mut self, args: Vec<(String, String)>) -> Self {
        self.environ.routing_args = args;
        self
    }

    /// Sets `wsgi.input`.
    pub fn input(mut self, input: Input) -> Self {
        self.environ.input = input;
        self
    }

    /// The finished environ.
    pub fn build(self) -> Environ {
        self.environ
    }
}
