//! [`KeyedLimit`]: at most N of something at once per key (a client address, an account),
//! with a permit that gives its place back when dropped.
//!
//! Used for the connections and long requests of one client address (`src/server/`,
//! `src/bulkhead/`) and the event streams of one account (`apps/notes/events/limits.rs`).
//! A key's entry exists only while it holds a permit, so the map is as large as the number
//! of keys holding something, never the number ever seen.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// At most `max` permits at once per key; `max == 0` means no limit (permits are still
/// handed out, and counted).
///
/// ```
/// use pgbridge::keyed_limit::KeyedLimit;
///
/// let limit = KeyedLimit::new(2);
/// let a = limit.try_acquire("10.0.0.1").unwrap();
/// let _b = limit.try_acquire("10.0.0.1").unwrap();
/// assert!(limit.try_acquire("10.0.0.1").is_none(), "a third for one key is refused");
/// assert!(limit.try_acquire("10.0.0.2").is_some(), "other keys are not affected");
/// drop(a);
/// assert!(limit.try_acquire("10.0.0.1").is_some());
/// ```
pub struct KeyedLimit<K: Eq + Hash + Clone> {
    max: usize,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

/// A clone counts against the same keys: servers that share one limit hold clones.
impl<K: Eq + Hash + Clone> Clone for KeyedLimit<K> {
    fn clone(&self) -> Self {
        Self {
            max: self.max,
            held: Arc::clone(&self.held),
        }
    }
}

impl<K: Eq + Hash + Clone> fmt::Debug for KeyedLimit<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimit")
            .field("max", &self.max)
            .field("keys", &lock(&self.held).len())
            .finish()
    }
}

impl<K: Eq + Hash + Clone> KeyedLimit<K> {
    /// A limit of `max` per key (`0`: unlimited).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The limit per key (`0`: unlimited).
    pub fn max(&self) -> usize {
        self.max
    }

    /// A permit for `key`, or `None` when `key` already holds `max`.
    pub fn try_acquire(&self, key: K) -> Option<KeyedPermit<K>> {
        let mut held = lock(&self.held);
        let count = held.entry(key.clone()).or_insert(0);
        if self.max != 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(KeyedPermit {
            key: Some(key),
            held: Arc::clone(&self.held),
        })
    }

    /// Permits `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        lock(&self.held).get(key).copied().unwrap_or(0)
    }
}

/// One place under a [`KeyedLimit`], given back when dropped.
pub struct KeyedPermit<K: Eq + Hash + Clone> {
    key: Option<K>,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash + Clone> fmt::Debug for KeyedPermit<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedPermit").finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone> Drop for KeyedPermit<K> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut held = lock(&self.held);
        if let Some(count) = held.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&key);
            }
        }
    }
}

fn lock<K>(held: &Mutex<HashMap<K, usize>>) -> std::sync::MutexGuard<'_, HashMap<K, usize>> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_forgotten_once_they_hold_nothing() {
        let limit = KeyedLimit::new(1);
        let permit = limit.try_acquire(7_i64).unwrap();
        assert_eq!(limit.held(&7), 1);
        drop(permit);
        assert_eq!(limit.held(&7), 0);
        assert!(lock(&limit.held).is_empty());
    }

    #[test]
    fn zero_is_no_limit() {
        let limit = KeyedLimit::new(0);
        let permits: Vec<_> = (0..100).filter_map(|_| limit.try_acquire(1_u8)).collect();
        assert_eq!(permits.len(), 100);
        assert_eq!(limit.held(&1), 100);
    }
}
