//! [`PolledWhenWoken`]: a future polled only after its own waker fired.
//!
//! A connection's task waits on its connection and, beside it, on signals that almost never
//! fire: the drain, an eviction, the cap's pressure, the watchdog's timer. `tokio::select!`
//! polls every branch whenever the task wakes, and a waiting `Notified` (what a `watch`
//! channel's `changed()` and a `Notify`'s `notified()` are) takes its `Notify`'s lock on
//! every poll to look at its waker: for the process-wide drain and pressure signals, a lock
//! shared by every connection. An event stream's connection is woken once per event, so a
//! fan-out to 10,000 streams took those locks 20,000 times from both cores at once.
//! Wrapped in [`PolledWhenWoken`], the signals stay registered with the task's waker and are
//! polled again only when one of them has woken it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;

pin_project! {
    /// `inner`, polled on its first poll and afterwards only when it has woken the task
    /// (its waker is a flag that then wakes whichever task polled last); otherwise a poll
    /// costs one atomic swap and the registration of the current waker.
    pub(crate) struct PolledWhenWoken<F> {
        #[pin]
        inner: F,
        woken: Arc<Woken>,
    }
}

impl<F: Future> PolledWhenWoken<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self {
            inner,
            woken: Arc::new(Woken {
                fired: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
    }
}

/// The inner future's waker: marks it to be polled, and wakes the task.
struct Woken {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> Future for PolledWhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Registered before the flag is read: a wake-up in between wakes this task again.
        this.woken.task.register(cx.waker());
        if !this.woken.fired.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(this.woken.clone());
        this.inner.poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// A `Notified` that counts its polls.
    struct Counted<'a> {
        polls: &'a AtomicUsize,
        notified: Pin<Box<tokio::sync::futures::Notified<'a>>>,
    }

    impl Future for Counted<'_> {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            self.notified.as_mut().poll(cx)
        }
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_only_after_it_woke_the_task() {
        let polls = AtomicUsize::new(0);
        let notify = tokio::sync::Notify::new();
        let mut wrapped = std::pin::pin!(PolledWhenWoken::new(Counted {
            polls: &polls,
            notified: Box::pin(notify.notified()),
        }));
        let mut cx = Context::from_waker(Waker::noop());
        // The first poll reaches it, and it registers; later ones do not until it wakes.
        for _ in 0..5 {
            assert!(wrapped.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        notify.notify_waiters();
        assert!(wrapped.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn its_wake_up_reaches_the_task_that_polled_last() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let waiting = {
            let notify = notify.clone();
            tokio::spawn(async move {
                // Beside a branch that wakes the task often, as a connection does.
                let mut signal = std::pin::pin!(PolledWhenWoken::new(notify.notified()));
                let mut ticks = tokio::time::interval(Duration::from_millis(1));
                loop {
                    tokio::select! {
                        biased;
                        _ = ticks.tick() => {}
                        () = &mut signal => return,
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        notify.notify_waiters();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wrapped signal ended the task")
            .expect("the task did not panic");
    }
}
