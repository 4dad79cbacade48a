//! Expected unavailability, logged at WARN at most once per [`INTERVAL`] with the number of
//! occurrences left out — not one ERROR per request.
//!
//! While Postgres is down, read-only or failing over, every request that needs it answers
//! 503 with `Retry-After`: that is the service working as designed, and a log line per
//! request would bury everything else (and cost as much as the request). The first
//! occurrence is logged at once; later ones within [`INTERVAL`] are counted, and the next
//! line logged says how many were left out.
//!
//! ```
//! pgbridge::unavailable_log::warn("database is read-only");
//! ```

use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line per this interval.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// A rate limit for one kind of log line: [`admit`](Self::admit) says whether to log now,
/// and how many were left out since the last line.
///
/// ```
/// use std::time::{Duration, Instant};
/// use pgbridge::unavailable_log::RateLimit;
///
/// let limit = RateLimit::new(Duration::from_secs(10));
/// let t0 = Instant::now();
/// assert_eq!(limit.admit(t0), Some(0));
/// assert_eq!(limit.admit(t0 + Duration::from_secs(1)), None);
/// assert_eq!(limit.admit(t0 + Duration::from_secs(11)), Some(1));
/// ```
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimit {
    /// One line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(left_out)` when a line should be logged at `now` (`left_out` occurrences were
    /// not logged since the last line); `None` when this one is only counted.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, left_out) = &mut *state;
        match last {
            Some(at) if now.saturating_duration_since(*at) < self.interval => {
                *left_out += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(left_out))
            }
        }
    }
}

static UNAVAILABLE: RateLimit = RateLimit::new(INTERVAL);

/// Logs `what` at WARN, rate-limited (one limit for all expected unavailability).
pub fn warn(what: &str) {
    if let Some(left_out) = UNAVAILABLE.admit(Instant::now()) {
        tracing::warn!(left_out, "{what}; answering 503 with Retry-After");
    }
}

/// Logs `what` and its cause at WARN, rate-limited like [`warn`].
///
/// ```
/// pgbridge::unavailable_log::warn_error("database unavailable", &"connection refused");
/// ```
pub fn warn_error(what: &str, err: &dyn Display) {
    if let Some(left_out) = UNAVAILABLE.admit(Instant::now()) {
        tracing::warn!(left_out, error = %err, "{what}; answering 503 with Retry-After");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let limit = RateLimit::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(limit.admit(t0), Some(0));
        for i in 1..=4 {
            assert_eq!(limit.admit(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(limit.admit(t0 + Duration::from_secs(5)), Some(4));
        assert_eq!(limit.admit(t0 + Duration::from_secs(6)), None);
        assert_eq!(limit.admit(t0 + Duration::from_secs(10)), Some(1));
    }
}
