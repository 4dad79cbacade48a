//! [`EnvironBuilder`]: how the server (and a test) makes an [`Environ`] from a request head.

use std::net::SocketAddr;
use std::sync::Arc;

use super::cgi::decode_path;
use super::{Environ, Fields};
use crate::{Errors, Input};

/// Builds an [`Environ`]. The layer uses it for every request; tests and examples use it to
/// call an application directly.
///
/// ```
/// use awsgi::{Environ, Input};
///
/// let request = http::Request::post("/api/items?page=2").body(()).unwrap();
/// let environ = Environ::builder(request)
///     .script_name("/api")
///     .server("example.com", 8080)
///     .https(true)
///     .remote_addr("192.0.2.7:40000".parse().unwrap())
///     .routing_args(vec![("page".into(), "2".into())])
///     .input(Input::empty())
///     .build();
/// assert_eq!((environ.script_name(), environ.path_info()), ("/api", "/items"));
/// assert_eq!(environ.url_scheme(), "https");
/// ```
#[derive(Debug)]
pub struct EnvironBuilder {
    environ: Environ,
}

impl EnvironBuilder {
    /// The builder over a request head, with `SERVER_NAME`/`SERVER_PORT` falling back to
    /// `server`.
    pub(crate) fn from_parts(parts: http::request::Parts, server: (Arc<str>, u16)) -> Self {
        Self {
            environ: layer_environ(parts, server, None, Vec::new(), Input::empty(), None),
        }
    }

    /// Takes `prefix` (raw, as in the URI) off the front of the path as `SCRIPT_NAME`.
    /// A prefix the path does not start with is ignored.
    ///
    /// ```
    /// let request = http::Request::get("/shop/cart").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).script_name("/shop").build();
    /// assert_eq!((environ.script_name(), environ.path_info()), ("/shop", "/cart"));
    /// ```
    pub fn script_name(mut self, prefix: &str) -> Self {
        take_script_name(&mut self.environ, prefix);
        self
    }

    /// Sets `SERVER_NAME` and `SERVER_PORT` for requests that carry no `Host`.
    ///
    /// ```
    /// let request = http::Request::get("/").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).server("internal", 8080).build();
    /// assert_eq!((environ.server_name(), environ.server_port()), ("internal", 8080));
    /// ```
    pub fn server(mut self, name: impl Into<Arc<str>>, port: u16) -> Self {
        self.environ.f.server_fallback = (name.into(), port);
        self
    }

    /// Sets `wsgi.url_scheme`.
    ///
    /// ```
    /// let request = http::Request::get("/").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).https(true).build();
    /// assert_eq!(environ.get("wsgi.url_scheme").as_deref(), Some("https"));
    /// ```
    pub fn https(mut self, https: bool) -> Self {
        self.environ.f.url_scheme = if https { "https" } else { "http" };
        self
    }

    /// Sets `REMOTE_ADDR` and `REMOTE_PORT`.
    ///
    /// ```
    /// let request = http::Request::get("/").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request)
    ///     .remote_addr("192.0.2.7:40000".parse().unwrap())
    ///     .build();
    /// assert_eq!(environ.get("REMOTE_ADDR").as_deref(), Some("192.0.2.7"));
    /// ```
    pub fn remote_addr(mut self, addr: SocketAddr) -> Self {
        self.environ.f.remote_addr = Some(addr);
        self
    }

    /// Sets `wsgiorg.routing_args`.
    ///
    /// ```
    /// let request = http::Request::get("/notes/7").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request)
    ///     .routing_args(vec![("id".into(), "7".into())])
    ///     .build();
    /// assert_eq!(environ.routing_arg("id"), Some("7"));
    /// ```
    pub fn routing_args(mut self, args: Vec<(String, String)>) -> Self {
        self.environ.f.routing_args = args;
        self
    }

    /// Sets `wsgi.input`.
    ///
    /// ```
    /// use http_body_util::Full;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let request = http::Request::post("/").body(()).unwrap();
    /// let mut environ = awsgi::Environ::builder(request)
    ///     .input(awsgi::Input::new(Full::new(bytes::Bytes::from("payload")), 1024))
    ///     .build();
    /// assert_eq!(environ.input().read_to_end().await.unwrap(), "payload");
    /// # }
    /// ```
    pub fn input(mut self, input: Input) -> Self {
        self.environ.f.input = input;
        self
    }

    /// The finished environ.
    ///
    /// ```
    /// let request = http::Request::get("/").body(()).unwrap();
    /// let environ: awsgi::Environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.path_info(), "/");
    /// ```
    pub fn build(self) -> Environ {
        self.environ
    }
}

/// The environ the layer serves a request with, built in place: the head, `SERVER_NAME`'s
/// fallback (the layer's configured name, shared, so a request allocates no default), the
/// peer, the routing arguments, `wsgi.input` and the mount prefix (`SCRIPT_NAME`). One
/// struct literal rather than the builder's chain, each call of which moves the whole
/// environ.
pub(crate) fn layer_environ(
    parts: http::request::Parts,
    server: (Arc<str>, u16),
    remote_addr: Option<SocketAddr>,
    routing_args: Vec<(String, String)>,
    input: Input,
    prefix: Option<&str>,
) -> Environ {
    let path = parts.uri.path();
    let mut environ = Environ {
        f: Box::new(Fields {
            path_info: path.contains('%').then(|| decode_path(path)),
            script_name: String::new(),
            server_fallback: server,
            url_scheme: if parts.uri.scheme_str() == Some("https") {
                "https"
            } else {
                "http"
            },
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            remote_addr,
            headers: parts.headers,
            routing_args,
            extensions: parts.extensions,
            input,
            errors: Errors::default(),
        }),
    };
    if let Some(prefix) = prefix {
        take_script_name(&mut environ, prefix);
    }
    environ
}

/// Takes `prefix` (raw, as in the URI) off the front of the path as `SCRIPT_NAME`, unless
/// the path does not start with it.
fn take_script_name(environ: &mut Environ, prefix: &str) {
    let prefix = prefix.trim_end_matches('/');
    let decoded = decode_path(prefix);
    if let Some(rest) = environ.path_info().strip_prefix(decoded.as_str()) {
        if rest.is_empty() || rest.starts_with('/') {
            environ.f.path_info = Some(rest.to_owned());
            environ.f.script_name = decoded;
        }
    }
}
