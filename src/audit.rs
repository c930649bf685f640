//! The audit trail: security-relevant events (logins, session create/attach/detach/end, file
//! writes and deletes, denials, optionally terminal input), written to the store's `audit` table
//! and to the structured log (target `kterm::audit`).
//!
//! Invariants: every string is stored and logged as data, truncated to a bounded length
//! (control characters are kept in the store and escaped in the log). Denials are rate limited
//! per client so that a flood of bad requests cannot grow the table without bound. Recording
//! never fails a request: a store error is logged and the request goes on.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::limits::RateLimiter;
use crate::store::{AuditRecord, Store};

/// Longest user, client or session field kept, in characters.
const MAX_FIELD: usize = 256;
/// Longest detail kept, in characters.
const MAX_DETAIL: usize = 4096;
/// Denial rows per client address per minute; the rest go to the log only.
const DENIALS_PER_MINUTE: u32 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Login,
    Logout,
    SessionCreate,
    Attach,
    Detach,
    SessionEnd,
    FileWrite,
    FileDelete,
    /// A request refused for want of credentials or rights (401, 403, foreign Origin, 429).
    Denied,
    /// Terminal input, when `audit.record_input` is on.
    Input,
    /// `kterm user add|passwd|disable|enable`.
    UserAdmin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Logout => "logout",
            Action::SessionCreate => "session_create",
            Action::Attach => "attach",
            Action::Detach => "detach",
            Action::SessionEnd => "session_end",
            Action::FileWrite => "file_write",
            Action::FileDelete => "file_delete",
            Action::Denied => "denied",
            Action::Input => "input",
            Action::UserAdmin => "user_admin",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Denied => "denied",
        }
    }
}

/// One event, built with the setters: `Event::new(Action::Attach, Outcome::Ok).user(u)...`.
#[derive(Debug, Clone)]
pub struct Event {
    at: chrono::DateTime<Utc>,
    action: Action,
    outcome: Outcome,
    user: Option<String>,
    client: Option<String>,
    session: Option<String>,
    detail: String,
}

impl Event {
    pub fn new(action: Action, outcome: Outcome) -> Event {
        Event {
            at: Utc::now(),
            action,
            outcome,
            user: None,
            client: None,
            session: None,
            detail: String::new(),
        }
    }

    pub fn user(mut self, user: impl Into<String>) -> Event {
        self.user = Some(truncate(user.into(), MAX_FIELD));
        self
    }

    pub fn client(mut self, client: Option<impl Into<String>>) -> Event {
        self.client = client.map(|c| truncate(c.into(), MAX_FIELD));
        self
    }

    pub fn session(mut self, session: impl Into<String>) -> Event {
        self.session = Some(truncate(session.into(), MAX_FIELD));
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Event {
        self.detail = truncate(detail.into(), MAX_DETAIL);
        self
    }
}

/// Cheap to clone; share one per server.
#[derive(Clone)]
pub struct Audit {
    store: Store,
    denials: Arc<RateLimiter>,
}

impl Audit {
    pub fn new(store: Store) -> Audit {
        let denials = Arc::new(RateLimiter::new(DENIALS_PER_MINUTE, Duration::from_secs(60)));
        Audit { store, denials }
    }

    /// Writes `event` to the log and the store. A file API calls this with
    /// [`Action::FileWrite`] / [`Action::FileDelete`], the path in the detail.
    pub async fn record(&self, event: Event) {
        tracing::info!(
            target: "kterm::audit",
            action = event.action.as_str(),
            outcome = event.outcome.as_str(),
            user = ?event.user,
            client = ?event.client,
            session = ?event.session,
            detail = ?event.detail,
            "audit"
        );
        if event.action == Action::Denied {
            let key = event.client.clone().unwrap_or_default();
            if self.denials.hit(&key).is_err() {
                return;
            }
        }
        let row = AuditRecord {
            id: 0,
            at: event.at,
            action: event.action.as_str().into(),
            outcome: event.outcome.as_str().into(),
            user: event.user,
            client: event.client,
            session_id: event.session,
            detail: event.detail,
        };
        if let Err(e) = self.store.insert_audit(row).await {
            tracing::error!(error = %e, "could not write an audit row");
        }
    }

    /// Records `event` in the background, for paths that must not wait for the store (a
    /// terminal attaching). The row keeps the time the event happened.
    pub fn record_later(&self, event: Event) {
        let audit = self.clone();
        tokio::spawn(async move { audit.record(event).await });
    }

    /// Deletes rows older than `retention` (zero keeps everything).
    pub async fn prune(&self, retention: Duration) {
        let Ok(age) = chrono::Duration::from_std(retention) else { return };
        if age.is_zero() {
            return;
        }
        match self.store.prune_audit(Utc::now() - age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned the audit log"),
            Err(e) => tracing::warn!(error = %e, "could not prune the audit log"),
        }
    }
}

/// Records a connection's terminal input (`audit.record_input`), a line (or 4 KiB) per row.
pub struct InputRecorder {
    audit: Audit,
    user: String,
    session: String,
    pending: Vec<u8>,
}

impl InputRecorder {
    const FLUSH_AT: usize = 4096;

    pub fn new(audit: Audit, user: &str, session: &str) -> InputRecorder {
        InputRecorder { audit, user: user.into(), session: session.into(), pending: Vec::new() }
    }

    /// Adds input; writes a row once a line ends or enough has gathered.
    pub async fn push(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= Self::FLUSH_AT || data.iter().any(|b| matches!(b, b'\r' | b'\n')) {
            self.flush().await;
        }
    }

    /// Writes what is pending (at the end of a connection).
    pub async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
        let event = Event::new(Action::Input, Outcome::Ok)
            .user(&self.user)
            .session(&self.session)
            .detail(text);
        self.audit.record(event).await;
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if let Some((index, _)) = text.char_indices().nth(max) {
        text.truncate(index);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_at_a_character() {
        assert_eq!(truncate("ééé".into(), 2), "éé…");
        assert_eq!(truncate("ab".into(), 2), "ab");
    }
}
