//! Suspension points: `x-wsgiorg.fdevent` (Stawarz, 2008), as futures.
//!
//! The 2008 extension gave an application `readable(fd, timeout)` and
//! `writable(fd, timeout)`: call one, yield an empty string so the server could suspend the
//! request, then check `x-wsgiorg.fdevent.timeout` on resumption to learn whether the wait
//! timed out. Here the call returns a future: `.await` it anywhere in the call chain, and it
//! resolves to [`Readiness::Ready`](crate::fdevent::Readiness::Ready) or [`Readiness::TimedOut`](crate::fdevent::Readiness::TimedOut). No thread is held while it
//! waits, so any number of requests can wait at once.
//!
//! The future watches a *duplicate* of the descriptor, registered on its own with the
//! runtime's poller. The owner of the original (a tokio socket, tokio-postgres's connection)
//! keeps its registration and its wake-ups: waiting on a descriptor something else also polls
//! does not break that owner.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Sleep;

/// What ended a wait: `x-wsgiorg.fdevent.timeout`, as a value.
///
/// ```
/// use std::time::Duration;
/// use awsgi::fdevent::{self, Readiness};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let (socket, _peer) = std::os::unix::net::UnixStream::pair()?;
/// match fdevent::readable(&socket, Some(Duration::from_millis(5))).await? {
///     Readiness::Ready => println!("data to read"),
///     Readiness::TimedOut => println!("nothing yet"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The descriptor became ready.
    Ready,
    /// The timeout passed first.
    TimedOut,
}

/// Waits until `fd` is readable, or `timeout` passes.
///
/// ```
/// use std::time::Duration;
/// use awsgi::fdevent::{self, Readiness};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let (a, b) = std::os::unix::net::UnixStream::pair()?;
/// let waited = fdevent::readable(&a, Some(Duration::from_millis(10))).await?;
/// assert_eq!(waited, Readiness::TimedOut);
///
/// std::io::Write::write_all(&mut &b, b"x")?;
/// assert_eq!(fdevent::readable(&a, None).await?, Readiness::Ready);
/// # Ok(()) }
/// ```
pub fn readable(fd: &impl AsFd, timeout: Option<Duration>) -> FdWait {
    FdWait::new(fd, Interest::READABLE, timeout)
}

/// Waits until `fd` is writable, or `timeout` passes.
///
/// ```
/// use std::time::Duration;
/// use awsgi::fdevent::{self, Readiness};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let (socket, _peer) = std::os::unix::net::UnixStream::pair()?;
/// let waited = fdevent::writable(&socket, Some(Duration::from_secs(5))).await?;
/// assert_eq!(waited, Readiness::Ready);
/// # Ok(()) }
/// ```
pub fn writable(fd: &impl AsFd, timeout: Option<Duration>) -> FdWait {
    FdWait::new(fd, Interest::WRITABLE, timeout)
}

/// A wait with no descriptor: resolves to [`Readiness::TimedOut`] after `duration`
/// (the 2008 spec's `readable(None, timeout)`).
///
/// ```
/// use std::time::Duration;
/// use awsgi::fdevent::{self, Readiness};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(fdevent::timeout(Duration::from_millis(5)).await.unwrap(), Readiness::TimedOut);
/// # }
/// ```
pub fn timeout(duration: Duration) -> FdWait {
    FdWait {
        state: State::Waiting { watch: None },
        deadline: Some(Box::pin(tokio::time::sleep(duration))),
    }
}

/// Suspends the request for `duration`: a timeout with no descriptor.
///
/// ```
/// use std::time::Duration;
/// use awsgi::{fdevent, Body, Environ, Error, StartResponse};
///
/// async fn slow(_: Environ, start_response: StartResponse) -> Result<Body, Error> {
///     fdevent::sleep(Duration::from_millis(10)).await;
///     start_response.start("200 OK", [("Content-Type", "text/plain")])?;
///     Ok(Body::from("waited\n"))
/// }
/// # let _ = awsgi::AwsgiService::new(slow);
/// ```
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// The future [`readable`], [`writable`] and [`timeout`] return.
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let wait: awsgi::fdevent::FdWait = awsgi::fdevent::timeout(Duration::from_millis(1));
/// assert!(wait.await.is_ok());
/// # }
/// ```
#[must_use = "a wait does nothing unless awaited"]
#[derive(Debug)]
pub struct FdWait {
    state: State,
    deadline: Option<Pin<Box<Sleep>>>,
}

#[derive(Debug)]
enum State {
    /// Duplicated, not yet registered: registration needs the runtime, which polling has.
    Unregistered(OwnedFd, Interest),
    Waiting {
        watch: Option<(AsyncFd<OwnedFd>, Interest)>,
    },
    Failed(Option<io::Error>),
}

impl FdWait {
    fn new(fd: &impl AsFd, interest: Interest, timeout: Option<Duration>) -> Self {
        let state = match fd.as_fd().try_clone_to_owned() {
            Ok(dup) => State::Unregistered(dup, interest),
            Err(err) => State::Failed(Some(err)),
        };
        Self {
            state,
            deadline: timeout.map(|t| Box::pin(tokio::time::sleep(t))),
        }
    }
}

impl Future for FdWait {
    type Output = io::Result<Readiness>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let State::Unregistered(..) = this.state {
            let State::Unregistered(fd, interest) =
                std::mem::replace(&mut this.state, State::Failed(None))
            else {
                unreachable!("checked above")
            };
            // The crate's one unsafe call (`unsafe_code` is denied everywhere else).
            // SAFETY: `fd` is an `OwnedFd` moved into the `AsyncFd`: it stays open, and
            // `as_raw_fd` returns the same descriptor, until the `AsyncFd` is dropped.
            #[allow(unsafe_code)]
            let registered = unsafe { AsyncFd::register_with_interest(fd, interest) };
            this.state = match registered {
                Ok(watch) => State::Waiting {
                    watch: Some((watch, interest)),
                },
                Err(err) => State::Failed(Some(err.into())),
            };
        }
        match &mut this.state {
            State::Failed(err) => {
                return Poll::Ready(Err(err
                    .take()
                    .unwrap_or_else(|| io::Error::other("FdWait polled after completion"))));
            }
            State::Waiting {
                watch: Some((watch, interest)),
            } => {
                let ready = if interest.is_readable() {
                    watch.poll_read_ready(cx).map_ok(drop)
                } else {
                    watch.poll_write_ready(cx).map_ok(drop)
                };
                if let Poll::Ready(result) = ready {
                    this.state = State::Failed(None);
                    return Poll::Ready(result.map(|()| Readiness::Ready));
                }
            }
            State::Waiting { watch: None } | State::Unregistered(..) => {}
        }
        if let Some(deadline) = &mut this.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                this.state = State::Failed(None);
                return Poll::Ready(Ok(Readiness::TimedOut));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    #[tokio::test]
    async fn timeout_without_data() {
        let (a, _b) = UnixStream::pair().unwrap();
        let got = readable(&a, Some(Duration::from_millis(20))).await.unwrap();
        assert_eq!(got, Readiness::TimedOut);
    }

    #[tokio::test]
    async fn writable_socket_is_ready_at_once() {
        let (a, _b) = UnixStream::pair().unwrap();
        let got = writable(&a, Some(Duration::from_secs(5))).await.unwrap();
        assert_eq!(got, Readiness::Ready);
    }

    /// The owner of a socket keeps working while, and after, an fdevent wait watches it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_does_not_break_the_owner() {
        let (mut owner, mut peer) = UnixStream::pair().unwrap();
        for round in 0..3u8 {
            let watcher = readable(&owner, Some(Duration::from_secs(5)));
            let reader = async {
                let mut buf = [0u8; 1];
                owner.read_exact(&mut buf).await.map(|_| buf[0])
            };
            let writer = async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                peer.write_all(&[round]).await
            };
            let (seen, read, wrote) = tokio::join!(watcher, reader, writer);
            wrote.unwrap();
            assert_eq!(seen.unwrap(), Readiness::Ready, "round {round}");
            assert_eq!(read.unwrap(), round, "owner must still read, round {round}");
        }
        // After every watcher is gone, the owner's own wake-ups still arrive.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            owner.read_exact(&mut buf).await.map(|_| buf[0])
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        peer.write_all(&[9]).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), reader).await;
        assert_eq!(got.unwrap().unwrap().unwrap(), 9);
    }

    #[tokio::test]
    async fn many_waits_share_no_thread() {
        let (a, _b) = UnixStream::pair().unwrap();
        let started = tokio::time::Instant::now();
        let waits = (0..500).map(|_| readable(&a, Some(Duration::from_millis(100))));
        let results = futures_util::future::join_all(waits).await;
        assert!(results.iter().all(|r| matches!(r, Ok(Readiness::TimedOut))));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
