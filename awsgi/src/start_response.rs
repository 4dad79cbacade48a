//! [`StartResponse`]: WSGI's `start_response` callable as a state machine — started,
//! replaced by `exc_info`, committed, rejected — and the deferred commit. The status and
//! header rules are in `head.rs`, the legacy [`Write`] queue in `write.rs`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::head::{Head, StartResponseError, parse_head};
use crate::write::{Write, WriteQueue};
use crate::{ContractError, Error};

#[derive(Debug, Default)]
struct State {
    head: Option<Head>,
    committed: bool,
    rejected: Option<StartResponseError>,
    /// Keep a copy of the head after the commit (the Validator inspects it then).
    retain_head: bool,
}

/// WSGI's `start_response`: the application chooses its status and headers here.
///
/// Rules (PEP 3333):
///
/// - the status is `"NNN Reason"`;
/// - header names are HTTP tokens, values hold no CR, LF or other control bytes, and
///   hop-by-hop headers (`Connection`, `Keep-Alive`, `Transfer-Encoding`, `Upgrade`, `TE`,
///   `Trailer`, `Proxy-*`) are refused;
/// - **nothing is sent until the body yields its first non-empty chunk or ends**, so until
///   then the application may replace its choice by calling
///   [`start_with_exc_info`](Self::start_with_exc_info) — an error page after a failed query;
/// - a second [`start`](Self::start) is an error.
///
/// `StartResponse` is a cheap handle: clone it into the body stream if the body decides the
/// response late.
///
/// ```
/// use awsgi::{Body, Environ, Error, StartResponse};
///
/// async fn app(_environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
///     Ok(Body::from("hello\n"))
/// }
/// # let _ = awsgi::AwsgiService::new(app);
/// ```
#[derive(Debug, Clone)]
pub struct StartResponse {
    /// The head's state and the `write()` queue, in one allocation per request.
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    writes: WriteQueue,
}

impl StartResponse {
    /// A fresh handle, for the server.
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::default(),
        }
    }

    /// The `write()` queue.
    pub(crate) fn writes(&self) -> &WriteQueue {
        &self.inner.writes
    }

    /// Sets the status and headers. Returns the legacy [`Write`] handle.
    ///
    /// Fails if the status or a header breaks the rules, or if the response was already
    /// started; the server will then answer 500 whatever the application does next.
    ///
    /// ```
    /// use awsgi::{Body, Environ, Error, StartResponse};
    ///
    /// async fn created(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     start_response.start(
    ///         "201 Created",
    ///         [("Content-Type", "application/json"), ("Location", "/items/1")],
    ///     )?;
    ///     Ok(Body::from(r#"{"id":1}"#))
    /// }
    /// # let _ = awsgi::AwsgiService::new(created);
    /// ```
    pub fn start<I, K, V>(&self, status: &str, headers: I) -> Result<Write, StartResponseError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut state = self.lock();
        let result = if state.head.is_some() || state.committed {
            Err(StartResponseError::AlreadyStarted)
        } else {
            parse_head(status, headers)
        };
        self.settle(&mut state, result)
    }

    /// Replaces the status and headers after an error, as `start_response(status, headers,
    /// exc_info)` does.
    ///
    /// Before the commit this replaces whatever was chosen (or sets it, if nothing was).
    /// After the commit the headers are on the wire: `exc_info` is handed back as the `Err`
    /// (WSGI's re-raise), and when the application returns it the server aborts the
    /// connection, so the client cannot mistake the cut response for a whole one.
    ///
    /// ```
    /// use awsgi::{Body, Environ, Error, StartResponse};
    ///
    /// async fn app(_environ: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
    ///     match std::fs::read_to_string("/no/such/file") {
    ///         Ok(text) => Ok(Body::from(text)),
    ///         Err(err) => {
    ///             start_response.start_with_exc_info(
    ///                 "503 Service Unavailable",
    ///                 [("Content-Type", "text/plain")],
    ///                 err.into(),
    ///             )?;
    ///             Ok(Body::from("try again later\n"))
    ///         }
    ///     }
    /// }
    /// # let _ = awsgi::AwsgiService::new(app);
    /// ```
    pub fn start_with_exc_info<I, K, V>(
        &self,
        status: &str,
        headers: I,
        exc_info: Error,
    ) -> Result<Write, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut state = self.lock();
        if state.committed {
            return Err(exc_info);
        }
        // A fresh choice clears an earlier rejection: that is what exc_info is for.
        state.rejected = None;
        state.head = None;
        let result = parse_head(status, headers);
        Ok(self.settle(&mut state, result)?)
    }

    /// Whether `start_response` has been called successfully.
    ///
    /// ```
    /// use awsgi::{Body, Environ, Error, StartResponse};
    ///
    /// async fn app(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     if !start_response.is_started() {
    ///         start_response.start("200 OK", [("Content-Type", "text/plain")])?;
    ///     }
    ///     Ok(Body::from("ok"))
    /// }
    /// # let _ = awsgi::AwsgiService::new(app);
    /// ```
    pub fn is_started(&self) -> bool {
        let state = self.lock();
        state.head.is_some() || state.committed
    }

    /// Whether the headers have been sent.
    ///
    /// ```
    /// use awsgi::{Body, Environ, Error, StartResponse};
    ///
    /// async fn app(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
    ///     let write = start_response.start("200 OK", [("Content-Type", "text/plain")])?;
    ///     assert!(!start_response.is_committed()); // nothing sent yet: exc_info could replace it
    ///     write.write("first bytes\n").await?;
    ///     Ok(Body::empty())
    /// }
    /// # let _ = awsgi::AwsgiService::new(app);
    /// ```
    pub fn is_committed(&self) -> bool {
        self.lock().committed
    }

    fn settle(
        &self,
        state: &mut State,
        result: Result<Head, StartResponseError>,
    ) -> Result<Write, StartResponseError> {
        match result {
            Ok(head) => {
                state.head = Some(head);
                Ok(Write::new(self.clone()))
            }
            Err(err) => {
                state.rejected.get_or_insert_with(|| err.clone());
                Err(err)
            }
        }
    }

    /// Commits the response: returns the head to send, or why there is none. After this,
    /// only `start_with_exc_info` (which re-raises) is meaningful.
    pub(crate) fn commit(&self) -> Result<Head, ContractError> {
        let mut state = self.lock();
        if let Some(rejected) = &state.rejected {
            return Err(ContractError::Rejected(rejected.to_string()));
        }
        // Taken, not cloned, unless the Validator asked: a long-lived stream should not keep
        // a second copy.
        let head = if state.retain_head {
            state.head.clone()
        } else {
            state.head.take()
        };
        let head = head.ok_or(ContractError::NotStarted)?;
        state.committed = true;
        Ok(head)
    }

    /// The next `write()` chunk: `Ready(Some)`, `Ready(None)` once closed and drained, or
    /// `Pending` (and a wake-up when a chunk comes).
    pub(crate) fn poll_written(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.writes().poll_written(cx)
    }

    /// The next `write()` chunk already queued, without waiting.
    pub(crate) fn take_written(&self) -> Option<Bytes> {
        self.writes().take_written()
    }

    /// Ends `write()`: the application returned, or the response is gone. Later writes
    /// fail; what is queued can still be taken.
    pub(crate) fn close_writes(&self) {
        self.writes().close();
    }

    /// [`close_writes`](Self::close_writes) and the first queued chunk, in one lock, with
    /// whether more are queued behind it.
    pub(crate) fn close_writes_and_take(&self) -> (Option<Bytes>, bool) {
        self.writes().close_and_take()
    }

    /// A rejected call made after the commit, which must abort the response.
    pub(crate) fn rejected(&self) -> Option<StartResponseError> {
        self.lock().rejected.clone()
    }

    /// The head chosen so far, for the [`Validator`](super::Validator).
    pub(crate) fn head(&self) -> Option<Head> {
        self.lock().head.clone()
    }

    /// Keeps the head readable through [`head`](Self::head) after the commit.
    pub(crate) fn retain_head(&self) {
        self.lock().retain_head = true;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across a call that can panic, but a poisoned lock only
        // means another thread panicked between two plain field writes: the state is sound.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::WRITE_BUFFER;
    use http::StatusCode;
    use std::future::Future;

    const OK: [(&str, &str); 1] = [("Content-Type", "text/plain")];

    #[test]
    fn accepts_well_formed_heads() {
        let sr = StartResponse::new();
        sr.start(
            "201 Created",
            [("Content-Type", "text/plain"), ("X-A", "1"), ("x-a", "2")],
        )
        .unwrap();
        let head = sr.commit().unwrap();
        assert_eq!(head.status, StatusCode::CREATED);
        assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
        assert!(sr.is_committed());
    }

    #[test]
    fn rejects_malformed_status() {
        for status in [
            "200",
            "200OK",
            "20 OK",
            "2000 OK",
            "abc OK",
            "200 ",
            " 200 OK",
            "200  OK",
            "200 OK\r\n",
            "099 Low",
            "150 Info",
        ] {
            let sr = StartResponse::new();
            assert!(
                matches!(
                    sr.start(status, OK),
                    Err(StartResponseError::InvalidStatus(_))
                ),
                "{status:?} should be rejected"
            );
            assert!(matches!(
                sr.commit(),
                Err(super::ContractError::Rejected(_))
            ));
        }
    }

    #[test]
    fn rejects_bad_headers() {
        let cases: [(&str, &str); 9] = [
            ("Bad Name", "x"),
            ("X-Inject", "a\r\nSet-Cookie: evil=1"),
            ("X-Nul", "a\0b"),
            ("Connection", "close"),
            ("Keep-Alive", "5"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("TE", "trailers"),
            ("Proxy-Authenticate", "Basic"),
        ];
        for (name, value) in cases {
            let sr = StartResponse::new();
            let err = sr.start("200 OK", [(name, value)]).unwrap_err();
            assert!(
                !matches!(err, StartResponseError::InvalidStatus(_)),
                "{name}: {err}"
            );
            assert!(sr.commit().is_err(), "{name} must poison the response");
        }
    }

    #[test]
    fn second_start_without_exc_info_is_rejected() {
        let sr = StartResponse::new();
        sr.start("200 OK", OK).unwrap();
        assert_eq!(
            sr.start("200 OK", OK).unwrap_err(),
            StartResponseError::AlreadyStarted
        );
        assert!(sr.commit().is_err());
    }

    #[tokio::test]
    async fn write_queues_with_backpressure_and_fails_once_closed() {
        let sr = StartResponse::new();
        let write = sr.start("200 OK", OK).unwrap();
        for n in 0..WRITE_BUFFER {
            write.write(format!("{n}")).await.unwrap();
        }
        // The queue is full: the next write waits until the server takes a chunk.
        let mut blocked = Box::pin(write.write("late"));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(blocked.as_mut().poll(&mut cx).is_pending());
        assert_eq!(sr.take_written().unwrap(), "0");
        assert!(blocked.as_mut().poll(&mut cx).is_ready());
        sr.close_writes();
        assert!(write.write("after close").await.is_err());
        // What was queued before the close still goes out, in order.
        let rest: Vec<Bytes> = std::iter::from_fn(|| sr.take_written()).collect();
        assert_eq!(rest.len(), WRITE_BUFFER);
        assert_eq!(rest.last().unwrap(), "late");
    }

    #[test]
    fn exc_info_replaces_before_commit_and_reraises_after() {
        let sr = StartResponse::new();
        sr.start("200 OK", OK).unwrap();
        sr.start_with_exc_info("500 Oops", OK, Error::msg("query failed"))
            .unwrap();
        assert_eq!(
            sr.commit().unwrap().status,
            StatusCode::INTERNAL_SERVER_ERROR
        );

        let err = sr
            .start_with_exc_info("503 Later", OK, Error::msg("too late"))
            .unwrap_err();
        assert_eq!(err.to_string(), "too late");
    }
}
