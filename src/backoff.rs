//! [`Backoff`]: the doubling, capped delay between retries, written once for every retry
//! loop (the `LISTEN` reconnect, the start-up wait for Postgres, accepting while out of
//! file descriptors).

use std::time::Duration;

/// A delay between retries that starts at `first`, doubles after each retry and never
/// grows past `max`; [`reset`](Self::reset) after a success starts it over.
///
/// ```
/// use std::time::Duration;
/// use pgbridge::backoff::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
/// assert_eq!(backoff.next_delay(), Duration::from_millis(100));
/// assert_eq!(backoff.next_delay(), Duration::from_millis(200));
/// assert_eq!(backoff.next_delay(), Duration::from_millis(300));
/// assert_eq!(backoff.next_delay(), Duration::from_millis(300));
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Duration::from_millis(100));
/// ```
///
/// In a retry loop:
///
/// ```no_run
/// # async fn connect() -> Result<(), std::io::Error> { Ok(()) }
/// # async fn example() {
/// use std::time::Duration;
/// use pgbridge::backoff::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// while let Err(err) = connect().await {
///     let delay = backoff.next_delay();
///     tracing::warn!(error = %err, retry_in = ?delay, "connect failed");
///     tokio::time::sleep(delay).await;
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff whose first delay is `first` and whose delays, doubling, stop at `max`.
    /// (A `max` below `first` still lets the first delay be `first`.)
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The delay to wait before the next retry; the one after it is twice as long, up to
    /// the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Starts over from the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_maximum() {
        let mut backoff = Backoff::new(10 * MS, 1000 * MS);
        let delays: Vec<_> = (0..9).map(|_| backoff.next_delay()).collect();
        let expected: Vec<_> = [10, 20, 40, 80, 160, 320, 640, 1000, 1000]
            .map(|ms| ms * MS)
            .to_vec();
        assert_eq!(delays, expected);
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::new(100 * MS, 5000 * MS);
        for _ in 0..5 {
            backoff.next_delay();
        }
        backoff.reset();
        assert_eq!(backoff.next_delay(), 100 * MS);
        assert_eq!(backoff.next_delay(), 200 * MS);
    }

    #[test]
    fn a_maximum_below_the_first_delay_caps_from_the_second() {
        let mut backoff = Backoff::new(100 * MS, 30 * MS);
        assert_eq!(backoff.next_delay(), 100 * MS);
        assert_eq!(backoff.next_delay(), 30 * MS);
        assert_eq!(backoff.next_delay(), 30 * MS);
    }

    #[test]
    fn never_overflows() {
        let mut backoff = Backoff::new(Duration::MAX / 2 + MS, Duration::MAX);
        backoff.next_delay();
        assert_eq!(backoff.next_delay(), Duration::MAX);
        assert_eq!(backoff.next_delay(), Duration::MAX);
    }
}
