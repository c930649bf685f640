//! The session registry: creates sessions in their user's sandbox, finds them for their owner,
//! ends them (on exit, delete, idle timeout, max lifetime or shutdown) and keeps the store in
//! step. It owns the per-user sandbox bookkeeping: a user's sessions in one namespace share one
//! sandbox, which is destroyed when the last of them ends.
//!
//! This file holds the registry itself, lookup and the ending of sessions; creation is in
//! `create.rs`, sandbox bookkeeping in `sandboxes.rs`. A session's own process and output are in
//! `terminal.rs`, a client's attachment to it in `attachment.rs`.

mod attachment;
mod create;
mod deadlines;
mod ring;
mod sandboxes;
mod screen;
mod terminal;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Deserialize;

use crate::audit::{Action, Audit, Event, Outcome};
use crate::config::SessionsConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::pool::WarmPool;
use crate::sandbox::{Sandbox, SandboxBackend, TtyProcess};
use crate::store::{SessionRecord, SessionStatus, Store};

pub use attachment::{AttachEvent, Attachment};
pub use deadlines::{Deadline, Lifecycle, Warning};
pub use ring::ScrollbackRing;
pub use terminal::{Session, SessionInfo};

pub const DEFAULT_NAMESPACE: &str = "default";

/// The body of `POST /api/v1/sessions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub namespace: Option<String>,
    pub cols: Option<u16>,
    pub rows: Option<u16>,
    #[serde(default)]
    pub context: BTreeMap<String, String>,
}

/// Who is asking, as authentication found them: sessions of others are invisible to
/// non-admins, and a session may only be made in one of `namespaces`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub admin: bool,
    pub groups: Vec<String>,
    /// Namespaces the caller may use; `"*"` is any (the backend may still refuse).
    pub namespaces: Vec<String>,
}

impl Caller {
    /// A plain user who may use any namespace (for tools and tests that act for a user).
    pub fn user(name: &str) -> Caller {
        Caller { user: name.into(), admin: false, groups: Vec::new(), namespaces: vec!["*".into()] }
    }

    fn may_see(&self, owner: &str) -> bool {
        self.admin || self.user == owner
    }

    pub fn may_use(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == "*" || n == namespace)
    }

    /// The namespace of a session that names none: the default one when allowed, else the
    /// caller's first.
    fn default_namespace(&self) -> String {
        if self.may_use(DEFAULT_NAMESPACE) {
            return DEFAULT_NAMESPACE.to_string();
        }
        self.namespaces.first().cloned().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
    }
}

type SandboxKey = (String, String);

/// A user's sandbox in one namespace and how many sessions use it.
#[derive(Default)]
struct SandboxSlot {
    sandbox: Option<Sandbox>,
    sessions: u32,
    /// Set for a sandbox adopted at start with no session yet; it is removed when it stays
    /// unused for `sessions.idle_timeout`.
    unused_since: Option<std::time::Instant>,
    /// A started stub for the user's next tab (backends with a pool).
    spare: Option<TtyProcess>,
    /// When the sandbox reaches `sessions.max_lifetime` (counted from when it became the
    /// user's): no session in it lives longer, so neither does the sandbox.
    expires_at: Option<chrono::DateTime<Utc>>,
}

pub struct SessionRegistry {
    config: SessionsConfig,
    backend: Arc<dyn SandboxBackend>,
    store: Store,
    metrics: Arc<Metrics>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    live_per_user: Mutex<HashMap<String, u32>>,
    sandboxes: Mutex<HashMap<SandboxKey, Arc<tokio::sync::Mutex<SandboxSlot>>>>,
    /// Sandboxes this registry made and has not destroyed (bounded by `max_sandboxes`).
    sandboxes_live: AtomicU32,
    audit: Audit,
    /// The server's main runtime: sessions' tasks and I/O live there, not on the HTTP worker
    /// that happened to create them (workers stop before sessions do at shutdown).
    runtime: tokio::runtime::Handle,
    pool: Arc<WarmPool>,
}

impl SessionRegistry {
    pub fn new(
        config: SessionsConfig,
        backend: Arc<dyn SandboxBackend>,
        store: Store,
        metrics: Arc<Metrics>,
        pool: Arc<WarmPool>,
    ) -> Arc<SessionRegistry> {
        let audit = Audit::new(store.clone());
        Arc::new(SessionRegistry {
            config,
            backend,
            store,
            metrics,
            sessions: Mutex::default(),
            live_per_user: Mutex::default(),
            sandboxes: Mutex::default(),
            sandboxes_live: AtomicU32::new(0),
            audit,
            runtime: tokio::runtime::Handle::current(),
            pool,
        })
    }

    pub fn config(&self) -> &SessionsConfig {
        &self.config
    }

    fn lock<'a, T>(mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
        mutex.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by the pump's task when the process has ended.
    async fn finish(self: Arc<Self>, session: Arc<Session>, code: Option<i32>) {
        let reason = session.end_reason().unwrap_or_else(|| "exited".into());
        let info = &session.info;
        tracing::info!(session = %info.id, user = %info.user, code, reason, "session ended");
        if let Some(at) = session.take_touched() {
            let _ = self.store.touch_sessions(vec![(info.id.clone(), at)]).await;
        }
        if let Err(e) =
            self.store.end_session(&info.id, SessionStatus::Terminated, code, &reason).await
        {
            tracing::error!(session = %info.id, error = %e, "could not record the end of a session");
        }
        self.release_slot(&info.user);
        self.metrics.sessions_active.dec();
        let detail = match code {
            Some(code) => format!("reason={reason} exit_code={code}"),
            None => format!("reason={reason}"),
        };
        let event = Event::new(Action::SessionEnd, Outcome::Ok)
            .user(&info.user)
            .session(&info.id)
            .detail(detail);
        self.audit.record(event).await;

        let key = (info.user.clone(), info.namespace.clone());
        let slot = Self::lock(&self.sandboxes).get(&key).cloned();
        if let Some(slot) = slot {
            let mut slot = slot.lock().await;
            slot.sessions = slot.sessions.saturating_sub(1);
            // At shutdown the sandbox stays (with the user's files) for the next run to adopt.
            if slot.sessions == 0 && reason != "server_shutdown" {
                slot.spare = None;
                if let Some(sandbox) = slot.sandbox.take() {
                    slot.expires_at = None;
                    self.destroy_sandbox(&sandbox.id).await;
                }
            }
        }

        session.mark_recorded();

        // Keep an ended session attachable for a while (its last output and exit code), unless
        // it was deleted.
        let retain = if reason == "deleted" { Duration::ZERO } else { self.config.retain_ended.0 };
        let registry = self.clone();
        let id = info.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(retain).await;
            Self::lock(&registry.sessions).remove(&id);
        });
    }

    /// The live (or recently ended) session `id`, if `caller` may see it.
    pub fn live(&self, caller: &Caller, id: &str) -> Result<Arc<Session>> {
        Self::lock(&self.sessions)
            .get(id)
            .filter(|s| caller.may_see(&s.info.user))
            .cloned()
            .ok_or_else(|| Error::session_not_found(id))
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<SessionRecord> {
        if let Ok(session) = self.live(caller, id) {
            return Ok(session.record());
        }
        match self.store.get_session(id).await? {
            Some(record) if caller.may_see(&record.user) => Ok(record),
            _ => Err(Error::session_not_found(id)),
        }
    }

    /// The caller's sessions (everyone's for admins); ended ones only when `include_ended`.
    pub async fn list(&self, caller: &Caller, include_ended: bool) -> Result<Vec<SessionRecord>> {
        let user = if caller.admin { None } else { Some(caller.user.as_str()) };
        let mut records = self.store.list_sessions(user, 500).await?;
        if !include_ended {
            records.retain(|r| r.status.is_live());
        }
        let live = Self::lock(&self.sessions).clone();
        for record in &mut records {
            if let Some(session) = live.get(&record.id) {
                *record = session.record();
            }
        }
        if !include_ended {
            records.retain(|r| r.status.is_live());
        }
        Ok(records)
    }

    /// Ends session `id` (its shell, and its sandbox when it was the last session there).
    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        match self.live(caller, id) {
            Ok(session) => {
                self.end(&session, "deleted").await;
                Self::lock(&self.sessions).remove(id);
                Ok(())
            }
            Err(_) => match self.store.get_session(id).await? {
                Some(record) if caller.may_see(&record.user) => Ok(()),
                _ => Err(Error::session_not_found(id)),
            },
        }
    }

    /// Ends a session and waits (bounded) until its end is recorded.
    async fn end(&self, session: &Arc<Session>, reason: &str) {
        session.terminate(reason).await;
        if tokio::time::timeout(Duration::from_secs(5), session.recorded()).await.is_err() {
            tracing::warn!(session = %session.info.id, "the shell did not end within 5s of being killed");
        }
    }

    fn live_sessions(&self) -> Vec<Arc<Session>> {
        Self::lock(&self.sessions).values().filter(|s| !s.has_exited()).cloned().collect()
    }

    /// Writes the batched `last_active` times.
    pub async fn flush_activity(&self) {
        let batch: Vec<_> = Self::lock(&self.sessions)
            .values()
            .filter_map(|s| s.take_touched().map(|at| (s.info.id.clone(), at)))
            .collect();
        if let Err(e) = self.store.touch_sessions(batch).await {
            tracing::warn!(error = %e, "could not record session activity");
        }
    }

    /// Ends sessions past their idle timeout or maximum lifetime.
    pub async fn reap(&self) {
        let now = Utc::now();
        let idle = self.config.idle_timeout.0;
        for session in self.live_sessions() {
            let reason = if now >= session.info.expires_at {
                Some(Deadline::MaxLifetime.reason())
            } else if session.idle_deadline().is_some_and(|d| Instant::now() >= d) {
                Some(Deadline::IdleTimeout.reason())
            } else {
                None
            };
            if let Some(reason) = reason {
                tracing::info!(session = %session.info.id, reason, "ending session");
                session.terminate(reason).await;
            }
        }
        let slots: Vec<_> = Self::lock(&self.sandboxes).values().cloned().collect();
        for slot in slots {
            let mut slot = slot.lock().await;
            let unused =
                slot.sessions == 0 && slot.unused_since.is_some_and(|t| t.elapsed() >= idle);
            if let Some(sandbox) = slot.sandbox.take_if(|_| unused) {
                slot.expires_at = None;
                tracing::info!(sandbox = %sandbox.id, "removing an adopted sandbox nobody used");
                slot.unused_since = None;
                self.destroy_sandbox(&sandbox.id).await;
            }
        }
    }

    /// At shutdown: records activity and, where the processes would not survive us anyway,
    /// ends every session so the store says what happened.
    pub async fn shutdown(&self) {
        self.flush_activity().await;
        if self.backend.processes_survive_restart() {
            return;
        }
        let sessions = self.live_sessions();
        let ends = sessions.iter().map(|s| self.end(s, "server_shutdown"));
        futures_util::future::join_all(ends).await;
    }

    pub fn backend(&self) -> &Arc<dyn SandboxBackend> {
        &self.backend
    }

    pub fn pool(&self) -> &Arc<WarmPool> {
        &self.pool
    }
}
