//! The audit trail: security-relevant events (logins, session create/attach/detach/end, file
//! writes and deletes, denials, optionally terminal input), written to the store's `audit` table
//! and to the structured log (target `kterm::audit`).
//!
//! Invariants: every string is stored and logged as data, truncated to a bounded length.
//! Control, invisible and direction-changing characters (U+202E and the like, see
//! [`is_invisible`]) are kept in the store as received and written as escapes (`\u{202e}`) in
//! the log and the audit API's JSON, so a user name cannot disguise itself or what follows it. Denials are rate limited
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
    /// A command run through `POST …/exec` (the detail is its argv).
    Exec,
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
            Action::Exec => "exec",
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
        let shown = |field: &Option<String>| field.as_deref().map_or("-".into(), escape_for_log);
        tracing::info!(
            target: "kterm::audit",
            action = event.action.as_str(),
            outcome = event.outcome.as_str(),
            user = %shown(&event.user),
            client = %shown(&event.client),
            session = %shown(&event.session),
            detail = %escape_for_log(&event.detail),
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

/// Characters that do not show as themselves: controls (C0, DEL, C1), format characters such
/// as the bidirectional overrides and isolates, zero-width characters, line and paragraph
/// separators, variation selectors, invisible fillers and tag characters.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// `text` with every [`is_invisible`] character, and the backslash, written as an escape
/// (`\u{202e}`, `\\`), for the log.
pub fn escape_for_log(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if is_invisible(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// JSON text with every [`is_invisible`] character written as a `\uXXXX` escape (a surrogate
/// pair above U+FFFF): the same JSON value, but what is shown is visible. Such characters can
/// only occur inside JSON strings, where an escape is equivalent.
pub fn escape_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if is_invisible(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", unit));
            }
        } else {
            out.push(c);
        }
    }
    out
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
    fn invisible_characters_are_escaped() {
        let name = "admin\u{202e}nimda\u{200b}\u{7f}\u{9b}x\u{e0041}";
        assert_eq!(escape_for_log(name), "admin\\u{202e}nimda\\u{200b}\\u{7f}\\u{9b}x\\u{e0041}");
        assert_eq!(escape_for_log("a\\u{202e}"), "a\\\\u{202e}", "a backslash cannot fake one");
        let json = serde_json::to_string(&serde_json::json!({ "user": name })).unwrap();
        let escaped = escape_json(&json);
        assert!(escaped.contains("admin\\u202enimda\\u200b"), "{escaped}");
        assert!(escaped.contains("\\udb40\\udc41"), "{escaped}");
        assert!(!escaped.chars().any(is_invisible), "{escaped}");
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back["user"], name, "the same value");
        assert!(!is_invisible('é') && !is_invisible('✓') && !is_invisible(' '));
    }

    #[test]
    fn long_fields_are_cut_at_a_character() {
        assert_eq!(truncate("ééé".into(), 2), "éé…");
        assert_eq!(truncate("ab".into(), 2), "ab");
    }
}
