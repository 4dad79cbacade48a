//! [`Environ`]: the CGI/WSGI variables of one request, typed, with `get("NAME")` for the
//! CGI view.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, Version, header};

use crate::{Errors, Input};

mod builder;
mod cgi;
mod vars;

pub use builder::EnvironBuilder;
pub(crate) use builder::layer_environ;
use cgi::{form_decode, split_host};

/// The environment of one request: PEP 3333's `environ` dict, typed.
///
/// The hot variables have typed accessors; [`get`](Self::get) gives the CGI string view of
/// any of them (`"REQUEST_METHOD"`, `"PATH_INFO"`, `"HTTP_USER_AGENT"`, `"wsgi.url_scheme"`,
/// …). `wsgi.input` is [`input`](Self::input) and `wsgi.errors` is [`errors`](Self::errors).
///
/// Server extensions — what a WSGI server would put under its own keys, such as a database
/// pool — travel in [`extensions`](Self::extensions): everything the request carried in its
/// `http::Extensions` (e.g. from axum's `Extension` layer) is there.
///
/// The application owns it: an application that has read what it needs can drop it before
/// it waits (on Postgres, say), as axum drops a request whose handler extracts nothing. Kept
/// across the wait, it holds the request's header map and extensions through it — with many
/// requests waiting, that is many more live allocations, and glibc's small per-thread caches
/// then run dry (about 1,000 instructions more per `/db` request of the TechEmpower example,
/// bench/RESULTS.md).
///
/// ```
/// use awsgi::Environ;
///
/// let request = http::Request::get("/shop/items/caf%C3%A9?page=2")
///     .header("Accept", "text/html")
///     .header("Accept", "application/json")
///     .body(())
///     .unwrap();
/// let environ = Environ::builder(request).script_name("/shop").build();
/// assert_eq!(environ.get("SCRIPT_NAME").as_deref(), Some("/shop"));
/// assert_eq!(environ.path_info(), "/items/café");
/// assert_eq!(environ.get("QUERY_STRING").as_deref(), Some("page=2"));
/// assert_eq!(environ.get("HTTP_ACCEPT").as_deref(), Some("text/html, application/json"));
/// ```
#[derive(Debug)]
pub struct Environ {
    /// Boxed: an application's future holds its environ (often twice, the layer's call
    /// and the application's own arguments), and moves it whole whenever it is moved;
    /// behind a pointer the request's futures stay small, for one small allocation.
    f: Box<Fields>,
}

/// The variables of an [`Environ`].
#[derive(Debug)]
struct Fields {
    method: Method,
    /// The request target; `PATH_INFO` and `QUERY_STRING` are read from it.
    uri: http::Uri,
    script_name: String,
    /// `PATH_INFO` when it differs from the URI's path (escapes decoded, prefix taken
    /// off); `None` when it is the path as sent, so most requests copy nothing.
    path_info: Option<String>,
    /// `SERVER_NAME`/`SERVER_PORT` for requests with no `Host`.
    server_fallback: (Arc<str>, u16),
    version: Version,
    url_scheme: &'static str,
    remote_addr: Option<SocketAddr>,
    headers: HeaderMap,
    routing_args: Vec<(String, String)>,
    extensions: Extensions,
    input: Input,
    errors: Errors,
}

/// The names [`Environ::get`] answers for besides the `HTTP_*` ones, in CGI order.
///
/// ```
/// let request = http::Request::get("/").body(()).unwrap();
/// let environ = awsgi::Environ::builder(request).build();
/// for name in awsgi::VARIABLES {
///     let _value = environ.get(name); // REMOTE_ADDR/PORT are None without a peer
/// }
/// assert!(awsgi::VARIABLES.contains(&"PATH_INFO"));
/// ```
pub const VARIABLES: &[&str] = &[
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.version",
    "wsgi.url_scheme",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
];

impl Environ {
    /// Starts an environ from a request's head, for servers, tests and examples.
    ///
    /// The request's URI path becomes `PATH_INFO` (percent-decoded) unless
    /// [`EnvironBuilder::script_name`] takes a prefix off it; its extensions become the
    /// environ's.
    ///
    /// ```
    /// let request = http::Request::get("/items").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.path_info(), "/items");
    /// ```
    pub fn builder<B>(request: http::Request<B>) -> EnvironBuilder {
        let (parts, _) = request.into_parts();
        EnvironBuilder::from_parts(parts, (Arc::from("localhost"), 80))
    }

    /// `REQUEST_METHOD`.
    ///
    /// ```
    /// let request = http::Request::delete("/items/1").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.method(), http::Method::DELETE);
    /// ```
    pub fn method(&self) -> &Method {
        &self.f.method
    }

    /// `SCRIPT_NAME`: the mount prefix, percent-decoded; empty at the root.
    ///
    /// ```
    /// let request = http::Request::get("/api/items").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).script_name("/api").build();
    /// assert_eq!(environ.script_name(), "/api");
    /// ```
    pub fn script_name(&self) -> &str {
        &self.f.script_name
    }

    /// `PATH_INFO`: the path below the mount point, percent-decoded as CGI does.
    ///
    /// ```
    /// let request = http::Request::get("/caf%C3%A9").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.path_info(), "/café");
    /// ```
    pub fn path_info(&self) -> &str {
        self.f
            .path_info
            .as_deref()
            .unwrap_or_else(|| self.f.uri.path())
    }

    /// `QUERY_STRING`, raw (not decoded), without the `?`.
    ///
    /// ```
    /// let request = http::Request::get("/?q=a+b").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.query_string(), "q=a+b");
    /// ```
    pub fn query_string(&self) -> &str {
        self.f.uri.query().unwrap_or("")
    }

    /// The query string's `name=value` pairs, decoded (`+` is a space).
    ///
    /// ```
    /// let request = http::Request::get("/?q=a+b&n=%31").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.query("q").as_deref(), Some("a b"));
    /// assert_eq!(environ.query("n").as_deref(), Some("1"));
    /// assert_eq!(environ.query("missing"), None);
    /// ```
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// All decoded query pairs, in order.
    ///
    /// ```
    /// let request = http::Request::get("/?tag=a&tag=b").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// let tags: Vec<String> = environ
    ///     .query_pairs()
    ///     .filter(|(k, _)| k == "tag")
    ///     .map(|(_, v)| v)
    ///     .collect();
    /// assert_eq!(tags, ["a", "b"]);
    /// ```
    pub fn query_pairs(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.query_string()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (form_decode(key), form_decode(value))
            })
    }

    /// The request headers.
    ///
    /// ```
    /// let request = http::Request::get("/").header("Accept", "text/html").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.headers()["accept"], "text/html");
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.f.headers
    }

    /// `CONTENT_TYPE`, if the client sent one.
    ///
    /// ```
    /// let request = http::Request::post("/")
    ///     .header("Content-Type", "application/json")
    ///     .body(())
    ///     .unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.content_type(), Some("application/json"));
    /// ```
    pub fn content_type(&self) -> Option<&str> {
        self.f
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    /// `CONTENT_LENGTH`, if the client sent a valid one.
    ///
    /// ```
    /// let request = http::Request::post("/").header("Content-Length", "12").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.content_length(), Some(12));
    /// ```
    pub fn content_length(&self) -> Option<u64> {
        self.f
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(crate::head::content_length)
    }

    /// `REMOTE_ADDR`/`REMOTE_PORT`, when the server knows the peer.
    ///
    /// ```
    /// let peer: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();
    /// let request = http::Request::get("/").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).remote_addr(peer).build();
    /// assert_eq!(environ.remote_addr(), Some(peer));
    /// ```
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.f.remote_addr
    }

    /// `wsgi.url_scheme`: `"http"` or `"https"`.
    ///
    /// ```
    /// let request = http::Request::get("/").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.url_scheme(), "http");
    /// ```
    pub fn url_scheme(&self) -> &'static str {
        self.f.url_scheme
    }

    /// `SERVER_NAME`: the host the client asked for (`Host`), else the server's own name.
    ///
    /// ```
    /// let request = http::Request::get("/").header("Host", "example.com:8080").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.server_name(), "example.com");
    /// ```
    pub fn server_name(&self) -> &str {
        match self.host() {
            Some(host) => split_host(host).0,
            None => &self.f.server_fallback.0,
        }
    }

    /// `SERVER_PORT`: the port the client asked for, else the scheme's default, else the
    /// server's own port when the client named no host.
    ///
    /// ```
    /// let request = http::Request::get("/").header("Host", "example.com:8080").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.server_port(), 8080);
    /// ```
    pub fn server_port(&self) -> u16 {
        match self.host() {
            Some(host) => split_host(host)
                .1
                .unwrap_or(if self.f.url_scheme == "https" {
                    443
                } else {
                    80
                }),
            None => self.f.server_fallback.1,
        }
    }

    fn host(&self) -> Option<&str> {
        self.f
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| self.f.uri.authority().map(|a| a.as_str()))
            .filter(|h| !h.is_empty())
    }

    /// `wsgiorg.routing_args`: the named path parameters a router matched, e.g. `id` for a
    /// route `/notes/{id}`, percent-decoded.
    ///
    /// ```
    /// let request = http::Request::get("/a/1/b/2").body(()).unwrap();
    /// let args = vec![("a".into(), "1".into()), ("b".into(), "2".into())];
    /// let environ = awsgi::Environ::builder(request).routing_args(args).build();
    /// assert_eq!(environ.routing_args().len(), 2);
    /// ```
    pub fn routing_args(&self) -> &[(String, String)] {
        &self.f.routing_args
    }

    /// One routing argument by name.
    ///
    /// ```
    /// let request = http::Request::get("/notes/7").body(()).unwrap();
    /// let args = vec![("id".into(), "7".into())];
    /// let environ = awsgi::Environ::builder(request).routing_args(args).build();
    /// assert_eq!(environ.routing_arg("id"), Some("7"));
    /// assert_eq!(environ.routing_arg("missing"), None);
    /// ```
    pub fn routing_arg(&self, name: &str) -> Option<&str> {
        self.f
            .routing_args
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Server extensions: typed values the server (or an axum layer) attached to the
    /// request, such as the database pool.
    ///
    /// ```
    /// #[derive(Clone)]
    /// struct Pool(&'static str);
    ///
    /// let mut request = http::Request::get("/").body(()).unwrap();
    /// request.extensions_mut().insert(Pool("primary"));
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.extensions().get::<Pool>().map(|p| p.0), Some("primary"));
    /// ```
    pub fn extensions(&self) -> &Extensions {
        &self.f.extensions
    }

    /// A mutable view of the extensions, for middleware written as applications.
    ///
    /// ```
    /// let request = http::Request::get("/").body(()).unwrap();
    /// let mut environ = awsgi::Environ::builder(request).build();
    /// environ.extensions_mut().insert(42u32);
    /// assert_eq!(environ.extensions().get::<u32>(), Some(&42));
    /// ```
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.f.extensions
    }

    /// `wsgi.input`: the request body.
    ///
    /// ```
    /// use awsgi::{Body, Environ, Error, StartResponse};
    ///
    /// async fn echo(mut environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     let body = environ.input().read_to_end().await?;
    ///     start_response.start("200 OK", [("Content-Type", "application/octet-stream")])?;
    ///     Ok(Body::from(body))
    /// }
    /// # let _ = awsgi::AwsgiService::new(echo);
    /// ```
    pub fn input(&mut self) -> &mut Input {
        &mut self.f.input
    }

    /// Takes `wsgi.input` out of the environ, leaving an empty one, e.g. to move the
    /// request body into a response stream.
    ///
    /// ```
    /// use awsgi::{Body, Environ, Error, StartResponse};
    /// use futures_util::stream;
    ///
    /// async fn stream_back(mut environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     let input = environ.take_input();
    ///     start_response.start("200 OK", [("Content-Type", "application/octet-stream")])?;
    ///     let chunks = stream::try_unfold(input, |mut input| async move {
    ///         Ok::<_, Error>(input.chunk().await?.map(|chunk| (chunk, input)))
    ///     });
    ///     Ok(Body::from_stream(chunks))
    /// }
    /// # let _ = awsgi::AwsgiService::new(stream_back);
    /// ```
    pub fn take_input(&mut self) -> Input {
        std::mem::replace(&mut self.f.input, Input::empty())
    }

    /// `wsgi.errors`: diagnostics, to the log.
    ///
    /// ```
    /// let request = http::Request::get("/").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// environ.errors().write("something odd, carrying on");
    /// ```
    pub fn errors(&self) -> Errors {
        self.f.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environ(request: http::Request<()>) -> Environ {
        Environ::builder(request).build()
    }

    #[test]
    fn cgi_names_for_headers() {
        let request = http::Request::get("/")
            .header("X-Forwarded-For", "a")
            .header("x-forwarded-for", "b")
            .header("Content-Type", "text/plain")
            .header("Content-Length", "0")
            .body(())
            .unwrap();
        let env = environ(request);
        assert_eq!(env.get("HTTP_X_FORWARDED_FOR").as_deref(), Some("a, b"));
        assert_eq!(env.get("CONTENT_TYPE").as_deref(), Some("text/plain"));
        assert_eq!(env.get("CONTENT_LENGTH").as_deref(), Some("0"));
        assert_eq!(env.get("HTTP_CONTENT_TYPE"), None);
        assert_eq!(env.get("HTTP_CONTENT_LENGTH"), None);
        let vars = env.vars();
        assert!(
            vars.iter()
                .any(|(k, v)| k == "HTTP_X_FORWARDED_FOR" && v == "a, b")
        );
        assert_eq!(
            vars.iter()
                .filter(|(k, _)| k == "HTTP_X_FORWARDED_FOR")
                .count(),
            1
        );
        assert!(!vars.iter().any(|(k, _)| k == "HTTP_CONTENT_TYPE"));
    }

    #[test]
    fn script_name_split_and_decoding() {
        let request = http::Request::get("/api%20v1/a%2Fb/c?x=%20")
            .body(())
            .unwrap();
        let env = Environ::builder(request).script_name("/api%20v1").build();
        assert_eq!(env.script_name(), "/api v1");
        assert_eq!(env.path_info(), "/a/b/c");
        assert_eq!(env.query_string(), "x=%20");

        let request = http::Request::get("/app").body(()).unwrap();
        let env = Environ::builder(request).script_name("/app").build();
        assert_eq!((env.script_name(), env.path_info()), ("/app", ""));

        let request = http::Request::get("/application").body(()).unwrap();
        let env = Environ::builder(request).script_name("/app").build();
        assert_eq!((env.script_name(), env.path_info()), ("", "/application"));
    }

    #[test]
    fn server_name_and_port_from_host() {
        let env = |host: Option<&str>| {
            let mut request = http::Request::get("/");
            if let Some(host) = host {
                request = request.header("Host", host);
            }
            Environ::builder(request.body(()).unwrap())
                .server("fallback", 8080)
                .build()
        };
        let e = env(Some("example.com:9000"));
        assert_eq!((e.server_name(), e.server_port()), ("example.com", 9000));
        let e = env(Some("example.com"));
        assert_eq!((e.server_name(), e.server_port()), ("example.com", 80));
        let e = env(Some("[::1]:8443"));
        assert_eq!((e.server_name(), e.server_port()), ("[::1]", 8443));
        let e = env(None);
        assert_eq!((e.server_name(), e.server_port()), ("fallback", 8080));
    }

    #[test]
    fn fixed_variables() {
        let env = environ(http::Request::get("/").body(()).unwrap());
        assert_eq!(env.get("wsgi.version").as_deref(), Some("1.0"));
        assert_eq!(env.get("wsgi.url_scheme").as_deref(), Some("http"));
        assert_eq!(env.get("SERVER_PROTOCOL").as_deref(), Some("HTTP/1.1"));
        assert_eq!(env.get("REMOTE_ADDR"), None);
        assert_eq!(env.get("NOT_A_VARIABLE"), None);
    }
}
