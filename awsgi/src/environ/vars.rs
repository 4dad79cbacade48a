//! The environ as CGI variables: [`Environ::get`] and [`Environ::vars`], the `dict` view a
//! WSGI application reads.

use std::borrow::Cow;

use http::header;

use super::cgi::{cgi_name, protocol};
use super::{Environ, VARIABLES};

impl Environ {
    /// The CGI view of one variable: any name in [`VARIABLES`], or `HTTP_*` for a request
    /// header (upper-cased, `-` as `_`, repeated headers joined with `", "`).
    /// `CONTENT_TYPE` and `CONTENT_LENGTH` never appear as `HTTP_*`, as CGI requires.
    ///
    /// ```
    /// let request = http::Request::get("/?x=1").header("User-Agent", "curl").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// assert_eq!(environ.get("REQUEST_METHOD").as_deref(), Some("GET"));
    /// assert_eq!(environ.get("QUERY_STRING").as_deref(), Some("x=1"));
    /// assert_eq!(environ.get("HTTP_USER_AGENT").as_deref(), Some("curl"));
    /// ```
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        let value: Cow<'_, str> = match name {
            "REQUEST_METHOD" => self.f.method.as_str().into(),
            "SCRIPT_NAME" => self.f.script_name.as_str().into(),
            "PATH_INFO" => self.path_info().into(),
            "QUERY_STRING" => self.query_string().into(),
            "CONTENT_TYPE" => return self.header_cgi(header::CONTENT_TYPE.as_str()),
            "CONTENT_LENGTH" => return self.header_cgi(header::CONTENT_LENGTH.as_str()),
            "SERVER_NAME" => self.server_name().into(),
            "SERVER_PORT" => self.server_port().to_string().into(),
            "SERVER_PROTOCOL" => protocol(self.f.version).into(),
            "REMOTE_ADDR" => self.f.remote_addr?.ip().to_string().into(),
            "REMOTE_PORT" => self.f.remote_addr?.port().to_string().into(),
            "wsgi.version" => "1.0".into(),
            "wsgi.url_scheme" => self.f.url_scheme.into(),
            "wsgi.multithread" => "true".into(),
            "wsgi.multiprocess" => "false".into(),
            "wsgi.run_once" => "false".into(),
            _ => {
                let header = name.strip_prefix("HTTP_")?;
                if header == "CONTENT_TYPE" || header == "CONTENT_LENGTH" {
                    return None;
                }
                return self.http_variable(header);
            }
        };
        Some(value)
    }

    /// Every variable [`get`](Self::get) answers for, with its value: the CGI view of the
    /// whole environ.
    ///
    /// ```
    /// let request = http::Request::get("/").header("X-Trace", "abc").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// let vars = environ.vars();
    /// assert!(vars.iter().any(|(k, v)| k == "HTTP_X_TRACE" && v == "abc"));
    /// ```
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = VARIABLES
            .iter()
            .filter_map(|name| Some((name.to_string(), self.get(name)?.into_owned())))
            .collect();
        let mut seen: Vec<String> = Vec::new();
        for name in self.f.headers.keys() {
            if name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH {
                continue;
            }
            let cgi = cgi_name(name.as_str());
            if !seen.contains(&cgi) {
                if let Some(value) = self.get(&cgi) {
                    vars.push((cgi.clone(), value.into_owned()));
                }
                seen.push(cgi);
            }
        }
        vars
    }

    fn header_cgi(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.f.headers.get_all(name).iter();
        let first = values.next()?;
        let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
        for value in values {
            joined.push_str(", ");
            joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        Some(joined.into())
    }

    /// `HTTP_FOO_BAR`: every header whose CGI name is `FOO_BAR`, joined with `", "`.
    fn http_variable(&self, cgi_suffix: &str) -> Option<Cow<'_, str>> {
        let mut joined: Option<String> = None;
        for (name, value) in &self.f.headers {
            if cgi_name(name.as_str())[5..] != *cgi_suffix {
                continue;
            }
            let value = String::from_utf8_lossy(value.as_bytes());
            match &mut joined {
                None => joined = Some(value.into_owned()),
                Some(all) => {
                    all.push_str(", ");
                    all.push_str(&value);
                }
            }
        }
        joined.map(Cow::Owned)
    }
}
