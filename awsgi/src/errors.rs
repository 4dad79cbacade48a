//! `wsgi.errors`: where an application writes diagnostics. Here they go to `tracing`.

use std::fmt;

/// `wsgi.errors`: the application's error stream, sent to the log.
///
/// Each write is one `tracing` event at `WARN` level with target `wsgi.errors`, inside the
/// request's span, so it carries the request id of the line that logs the request.
///
/// ```
/// use awsgi::{Body, Environ, Error, StartResponse};
///
/// async fn app(environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     environ.errors().write("cache miss, falling back to the database");
///     start_response.start("204 No Content", Vec::<(String, String)>::new())?;
///     Ok(Body::empty())
/// }
/// # let _ = awsgi::AwsgiService::new(app);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Errors {
    _private: (),
}

impl Errors {
    /// Writes one message to the log.
    ///
    /// ```
    /// let request = http::Request::get("/").body(()).unwrap();
    /// let environ = awsgi::Environ::builder(request).build();
    /// environ.errors().write(format_args!("retrying after {} ms", 50));
    /// ```
    pub fn write(&self, message: impl fmt::Display) {
        tracing::warn!(target: "wsgi.errors", "{message}");
    }
}
