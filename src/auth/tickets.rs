//! Single-use WebSocket tickets, for clients that cannot send a cookie or header on a WebSocket
//! (Safari behind basic auth, embedded frames). An authenticated REST call gets one for one
//! session; the WebSocket presents it as `?ticket=`. Kept in memory as SHA-256 digests: a ticket
//! lives seconds, is redeemed at most once, and only for the session it names. A ticket issued
//! to a login session dies with it. A user holds at most [`MAX_PER_USER`] live tickets (a new
//! one replaces their oldest), so asking for tickets in a loop cannot grow memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::secret::{random_token, sha256};
use crate::error::Result;
use crate::session::Caller;

/// Live tickets one user may hold.
pub const MAX_PER_USER: usize = 32;

pub struct Tickets {
    ttl: Duration,
    live: Mutex<HashMap<[u8; 32], Ticket>>,
}

struct Ticket {
    caller: Caller,
    session: String,
    expires: Instant,
}

impl Tickets {
    pub fn new(ttl: Duration) -> Tickets {
        Tickets { ttl, live: Mutex::default() }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new ticket that lets `caller` attach to `session` once.
    pub fn issue(&self, caller: &Caller, session: &str) -> Result<String> {
        let token = random_token()?;
        let now = Instant::now();
        let mut live = self.lock();
        live.retain(|_, t| t.expires > now);
        let mut theirs: Vec<([u8; 32], Instant)> = live
            .iter()
            .filter(|(_, t)| t.caller.user == caller.user)
            .map(|(k, t)| (*k, t.expires))
            .collect();
        if theirs.len() >= MAX_PER_USER {
            theirs.sort_by_key(|(_, expires)| *expires);
            for (key, _) in &theirs[..=theirs.len() - MAX_PER_USER] {
                live.remove(key);
            }
        }
        let ticket = Ticket {
            caller: caller.clone(),
            session: session.to_string(),
            expires: now + self.ttl,
        };
        live.insert(sha256(&token), ticket);
        Ok(token)
    }

    /// The caller of a live ticket for `session`. The ticket is gone afterwards, whatever the
    /// answer: a ticket is never tried twice.
    pub fn redeem(&self, token: &str, session: &str) -> Option<Caller> {
        let ticket = self.lock().remove(&sha256(token))?;
        (ticket.expires > Instant::now() && ticket.session == session).then_some(ticket.caller)
    }

    /// Forgets every ticket issued to the login session `login`.
    pub fn revoke_login(&self, login: &str) {
        self.lock().retain(|_, t| t.caller.login.as_deref() != Some(login));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Ticket>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Caller {
        Caller {
            user: "alice".into(),
            admin: false,
            groups: vec![],
            namespaces: vec![],
            login: Some("login-a".into()),
        }
    }

    #[test]
    fn a_ticket_works_once_and_only_for_its_session() {
        let tickets = Tickets::new(Duration::from_secs(30));
        let t = tickets.issue(&alice(), "s1").unwrap();
        assert_eq!(tickets.redeem(&t, "s1").map(|c| c.user), Some("alice".into()));
        assert!(tickets.redeem(&t, "s1").is_none());
        let t = tickets.issue(&alice(), "s1").unwrap();
        assert!(tickets.redeem(&t, "s2").is_none());
        assert!(tickets.redeem(&t, "s1").is_none(), "a wrong try burns it");
        let expired = Tickets::new(Duration::ZERO);
        let t = expired.issue(&alice(), "s1").unwrap();
        assert!(expired.redeem(&t, "s1").is_none());
    }

    #[test]
    fn tickets_die_with_their_login_and_are_bounded_per_user() {
        let tickets = Tickets::new(Duration::from_secs(30));
        let t = tickets.issue(&alice(), "s1").unwrap();
        tickets.revoke_login("login-b");
        let kept = tickets.issue(&alice(), "s1").unwrap();
        tickets.revoke_login("login-a");
        assert!(tickets.redeem(&t, "s1").is_none() && tickets.redeem(&kept, "s1").is_none());
        let all: Vec<String> = (0..100).map(|_| tickets.issue(&alice(), "s1").unwrap()).collect();
        assert_eq!(tickets.lock().len(), MAX_PER_USER);
        assert!(tickets.redeem(&all[99], "s1").is_some(), "the newest stay");
        assert!(tickets.redeem(&all[0], "s1").is_none(), "the oldest went");
    }
}
