//! In-memory limits keyed by a string (a user name, a client address):
//! - [`RateLimiter`]: at most `max` events per fixed window, which starts with the first event.
//!   Used for failed logins per client, session creation and the audit log's denial rows.
//! - [`Backoff`]: after a number of free failures, each further failure makes the key wait
//!   twice as long as the one before (from 1s up to a maximum). Used for failed password
//!   logins per (user name, client).
//! - [`ConcurrencyLimit`]: at most `max` things in progress at once per key, each held by a
//!   [`Slot`] that gives its place back when dropped. Used for execs and waits per sandbox.
//!
//! Memory is bounded: ended windows and forgiven failures are pruned whenever a table grows
//! past [`PRUNE_AT`] keys, and a table still over [`HARD_CAP`] keys after that (a flood from
//! very many addresses) is emptied: throttling state is lost, memory is not. The keys
//! themselves are bounded by the callers (names are length-checked).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PRUNE_AT: usize = 10_000;
const HARD_CAP: usize = 200_000;

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
            if entries.len() >= HARD_CAP {
                entries.clear();
            }
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

/// Exponential backoff per key: the `after`th failure makes the key wait 1s, each further one
/// twice as long (2s, 4s, ...) up to `max`; the ones before cost nothing. A success resets the key; so does a quiet period of
/// twice `max` after the last failure.
pub struct Backoff {
    after: u32,
    max: Duration,
    entries: Mutex<HashMap<String, Strikes>>,
}

struct Strikes {
    failures: u32,
    last: Instant,
    until: Instant,
}

impl Backoff {
    pub fn new(after: u32, max: Duration) -> Backoff {
        Backoff { after: after.max(1), max, entries: Mutex::default() }
    }

    /// `Err(wait)` while `key` must wait before its next attempt.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        match self.lock().get(key) {
            Some(strikes) if strikes.until > now => Err(strikes.until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure of `key`; returns how long it must now wait (zero before `after`).
    pub fn fail(&self, key: &str) -> Duration {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= PRUNE_AT {
            entries.retain(|_, s| now.duration_since(s.last) < self.max * 2);
            if entries.len() >= HARD_CAP {
                entries.clear();
            }
        }
        let strikes = entries.entry(key.to_string()).or_insert(Strikes {
            failures: 0,
            last: now,
            until: now,
        });
        if now.duration_since(strikes.last) >= self.max * 2 {
            strikes.failures = 0;
        }
        strikes.failures = strikes.failures.saturating_add(1);
        strikes.last = now;
        let wait = match strikes.failures.checked_sub(self.after) {
            None => Duration::ZERO,
            Some(over) => Duration::from_secs(1u64 << over.min(20)).min(self.max),
        };
        strikes.until = now + wait;
        wait
    }

    pub fn reset(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Strikes>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// At most `max` holders per key at once. A key's entry exists only while it has holders.
pub struct ConcurrencyLimit {
    max: u32,
    held: std::sync::Arc<Mutex<HashMap<String, u32>>>,
}

/// One place under a [`ConcurrencyLimit`], given back on drop.
pub struct Slot {
    key: String,
    held: std::sync::Arc<Mutex<HashMap<String, u32>>>,
}

impl ConcurrencyLimit {
    pub fn new(max: u32) -> ConcurrencyLimit {
        ConcurrencyLimit { max, held: Default::default() }
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    /// A place for `key`, or `None` when `max` are held already.
    pub fn try_take(&self, key: &str) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(key.to_string()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot { key: key.to_string(), held: self.held.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn concurrency_slots_come_back() {
        let limit = super::ConcurrencyLimit::new(2);
        let a = limit.try_take("s");
        let b = limit.try_take("s");
        assert!(a.is_some() && b.is_some());
        assert!(limit.try_take("s").is_none(), "a third is refused");
        assert!(limit.try_take("other").is_some(), "keys are apart");
        drop(a);
        assert!(limit.try_take("s").is_some(), "a dropped slot is free again");
        drop(b);
    }

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
    fn backoff_doubles_after_the_free_failures_and_resets() {
        let backoff = Backoff::new(3, Duration::from_secs(8));
        assert_eq!(backoff.fail("a"), Duration::ZERO);
        assert_eq!(backoff.fail("a"), Duration::ZERO);
        assert!(backoff.check("a").is_ok());
        let waits: Vec<u64> = (0..6).map(|_| backoff.fail("a").as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        assert!(backoff.check("a").is_err());
        assert!(backoff.check("b").is_ok(), "keys are independent");
        backoff.reset("a");
        assert!(backoff.check("a").is_ok());
    }

    #[test]
    fn windows_end() {
        let limiter = RateLimiter::new(1, Duration::from_millis(1));
        assert!(limiter.hit("a").is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.hit("a").is_ok());
    }
}
