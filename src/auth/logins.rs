//! The login sessions that live connections were opened with, so that ending a login ends
//! what it opened.
//!
//! Invariants:
//! - A terminal WebSocket opened with a cookie (directly, or through a ticket issued to a
//!   cookie) holds a [`LoginWatch`] on that login session for as long as it is open.
//! - Ending a login in this process (logout) signals its watchers at once. A login ended by
//!   another process on the same state file (`kterm user passwd|disable`), or one that expired,
//!   is found by [`super::Authenticator::check_live_logins`], which the server runs every
//!   [`CHECK_INTERVAL`] over the watched logins only: one batched query, off the keystroke path.
//! - A watcher that has seen its login end stays ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// How often the logins behind live connections are checked against the store.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct LiveLogins {
    watched: Mutex<HashMap<String, Watched>>,
}

struct Watched {
    user: String,
    ended: watch::Sender<bool>,
    watchers: usize,
}

/// One connection's hold on its login session; see [`LoginWatch::ended`].
pub struct LoginWatch {
    login: String,
    ended: watch::Receiver<bool>,
    live: Arc<LiveLogins>,
}

impl LiveLogins {
    /// Watches the login session `login` (the SHA-256 of its cookie) of `user`.
    pub fn watch(self: &Arc<Self>, login: &str, user: &str) -> LoginWatch {
        let mut watched = self.lock();
        let entry = watched.entry(login.to_string()).or_insert_with(|| Watched {
            user: user.to_string(),
            ended: watch::Sender::new(false),
            watchers: 0,
        });
        entry.watchers += 1;
        LoginWatch { login: login.to_string(), ended: entry.ended.subscribe(), live: self.clone() }
    }

    /// Tells the watchers of `login` that it ended; returns its user if anyone watched it.
    pub fn end(&self, login: &str) -> Option<String> {
        let gone = self.lock().remove(login)?;
        gone.ended.send_replace(true);
        Some(gone.user)
    }

    /// The logins watched now.
    pub fn watched(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LoginWatch {
    /// Resolves when the login session has ended.
    pub async fn ended(&mut self) {
        // The sender goes only after it said `true`.
        let _ = self.ended.wait_for(|ended| *ended).await;
    }
}

impl Drop for LoginWatch {
    fn drop(&mut self) {
        let mut watched = self.live.lock();
        if let Some(entry) = watched.get_mut(&self.login) {
            entry.watchers = entry.watchers.saturating_sub(1);
            if entry.watchers == 0 {
                watched.remove(&self.login);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ending_a_login_wakes_its_watchers_only() {
        let live = Arc::new(LiveLogins::default());
        let mut a1 = live.watch("a", "alice");
        let mut a2 = live.watch("a", "alice");
        let mut b = live.watch("b", "bob");
        assert_eq!(live.watched().len(), 2);
        assert_eq!(live.end("a").as_deref(), Some("alice"));
        a1.ended().await;
        a2.ended().await;
        let still = tokio::time::timeout(Duration::from_millis(20), b.ended()).await;
        assert!(still.is_err(), "bob's login goes on");
        drop(b);
        assert!(live.watched().is_empty(), "the last watcher's drop forgets the login");
        assert_eq!(live.end("a"), None);
    }
}
