//! In-memory rate limits keyed by a string (a user name, a client address): at most `max`
//! events per fixed window, which starts with the first event. Used for login throttling, session
//! creation and the audit log's denial rows.
//!
//! Memory is bounded by pruning windows that have ended whenever the table grows past
//! [`PRUNE_AT`] keys; the keys themselves are bounded by the callers (names are length-checked).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PRUNE_AT: usize = 10_000;

pub struct RateLimiter {
    max: u32,
    window: Duration,
    entries: Mutex<HashMap<String, Window>>,
}

struct Window {
    start: Instant,
    count: u32,
}

impl RateLimiter {
    pub fn new(max: u32, window: Duration) -> RateLimiter {
        RateLimiter { max, window, entries: Mutex::default() }
    }

    /// Counts one event for `key`; `Err(retry_after)` when the limit was already reached (the
    /// event is then not counted).
    pub fn hit(&self, key: &str) -> Result<(), Duration> {
        self.check(key, true)
    }

    /// Whether `key` is at its limit, without counting an event.
    pub fn peek(&self, key: &str) -> Result<(), Duration> {
        self.check(key, false)
    }

    /// Forgets `key` (e.g. a user's failures after a successful login).
    pub fn reset(&self, key: &str) {
        self.lock().remove(key);
    }

    fn check(&self, key: &str, count: bool) -> Result<(), Duration> {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= PRUNE_AT {
            entries.retain(|_, w| now.duration_since(w.start) < self.window);
        }
        let window = match entries.get_mut(key) {
            Some(w) if now.duration_since(w.start) < self.window => w,
            _ if !count => return Ok(()),
            _ => {
                entries.insert(key.to_string(), Window { start: now, count: 1 });
                return Ok(());
            }
        };
        if window.count >= self.max {
            return Err((window.start + self.window).saturating_duration_since(now));
        }
        if count {
            window.count += 1;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_max_per_window_then_says_when() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        assert!(limiter.hit("a").is_ok());
        assert!(limiter.peek("a").is_ok());
        assert!(limiter.hit("a").is_ok());
        let wait = limiter.hit("a").unwrap_err();
        assert!(wait > Duration::from_secs(58) && wait <= Duration::from_secs(60));
        assert!(limiter.peek("a").is_err());
        assert!(limiter.hit("b").is_ok(), "keys are independent");
        limiter.reset("a");
        assert!(limiter.hit("a").is_ok());
    }

    #[test]
    fn windows_end() {
        let limiter = RateLimiter::new(1, Duration::from_millis(1));
        assert!(limiter.hit("a").is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.hit("a").is_ok());
    }
}
