//! The session registry: creates sessions in their user's sandbox, finds them for their owner,
//! ends them (on exit, delete, idle timeout, max lifetime or shutdown) and keeps the store in
//! step. It owns the per-user sandbox bookkeeping: a user's sessions in one namespace and
//! profile share one sandbox, which is destroyed when the last of them ends.
//!
//! This file holds the registry itself, lookup and the ending of sessions; creation is in
//! `create.rs`, sandbox bookkeeping in `sandboxes.rs` (its slots in `slots.rs`), profiles in
//! `profiles.rs`. A session's own process and output are in `terminal.rs`, a client's
//! attachment to it in `attachment.rs`.
//!
//! Invariant: no lock is held across a backend call; a slow or hung backend delays only the
//! creation that waits on it (bounded by `sessions.create_timeout`), never the reaper, other
//! users, or the end of other sessions.

mod agent;
mod attachment;
mod create;
mod deadlines;
mod input;
pub mod keys;
mod linger;
mod output;
mod pending;
mod profiles;
mod reconcile;
mod recording;
mod resume;
mod ring;
mod sandboxes;
mod screen;
mod slots;
mod terminal;
mod unrecorded;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Deserialize;

use crate::audit::{Action, Audit, Event, Outcome};
use crate::config::{OnShutdown, SandboxesConfig, SessionsConfig};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::pool::WarmPool;
use crate::sandbox::SandboxBackend;
use crate::store::{SessionRecord, SessionStatus, Store};

pub use agent::{ScreenFormat, ScreenView, WaitMatch, WaitSource, MAX_SCROLLBACK};
pub use attachment::{AttachEvent, Attachment};
pub use deadlines::{Deadline, Lifecycle, Warning};
pub use input::{InputClosed, InputQueue, INPUT_BUDGET};
pub use linger::SandboxSummary;
pub use pending::{PendingSession, PendingState};
pub use profiles::{ProfileSummary, Profiles, SessionProfile};
pub use reconcile::{Reconciled, RECONCILE_PERIOD};
pub use recording::Recordings;
pub use ring::ScrollbackRing;
pub use slots::{SandboxView, SlotKey};
pub use terminal::{Session, SessionInfo};

/// The namespace of sessions that name none on backends without namespaces of their own.
pub const DEFAULT_NAMESPACE: &str = "default";

/// How long ending a session (delete, shutdown) waits for its shell to be gone.
const END_WAIT: Duration = Duration::from_secs(5);

/// The body of `POST /api/v1/sessions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub namespace: Option<String>,
    pub profile: Option<String>,
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
    /// The login session (SHA-256 of its cookie) the caller proved themselves with, if a
    /// cookie (or a ticket issued to one): what they open ends with it.
    pub login: Option<String>,
}

impl Caller {
    /// A plain user who may use any namespace (for tools and tests that act for a user).
    pub fn user(name: &str) -> Caller {
        Caller {
            user: name.into(),
            admin: false,
            groups: Vec::new(),
            namespaces: vec!["*".into()],
            login: None,
        }
    }

    fn may_see(&self, owner: &str) -> bool {
        self.admin || self.user == owner
    }

    pub fn may_use(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == "*" || n == namespace)
    }

    /// The namespace of a session that names none: `default` (the backend's default namespace)
    /// when allowed, else the caller's first.
    fn default_namespace(&self, default: &str) -> String {
        if self.may_use(default) {
            return default.to_string();
        }
        self.namespaces.iter().find(|n| *n != "*").cloned().unwrap_or_else(|| default.to_string())
    }
}

pub struct SessionRegistry {
    config: SessionsConfig,
    /// How long a sandbox outlives its last session.
    sandboxes: SandboxesConfig,
    /// What a graceful stop does with the sandboxes.
    on_shutdown: OnShutdown,
    backend: Arc<dyn SandboxBackend>,
    store: Store,
    metrics: Arc<Metrics>,
    profiles: Profiles,
    /// Where sessions that name no namespace go (the backend's default).
    default_namespace: String,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    live_per_user: Mutex<HashMap<String, u32>>,
    slots: slots::Slots,
    /// Sessions being created, by id (see `pending.rs`).
    pending: Mutex<HashMap<String, Arc<pending::PendingSession>>>,
    /// The start phases of sandboxes being made, by slot.
    making: Mutex<HashMap<SlotKey, sandboxes::Making>>,
    /// Sandboxes this registry made and has not destroyed (bounded by `max_sandboxes`).
    sandboxes_live: AtomicU32,
    /// Set at a graceful stop that keeps shells running: ends are no longer recorded.
    stopped: AtomicBool,
    /// Session recordings, when `recording.enabled`.
    recordings: Option<Recordings>,
    audit: Audit,
    /// The server's main runtime: sessions' tasks and I/O live there, not on the HTTP worker
    /// that happened to create them (workers stop before sessions do at shutdown).
    runtime: tokio::runtime::Handle,
    pool: Arc<WarmPool>,
    /// Ends of sessions the store could not record yet.
    unrecorded: unrecorded::UnrecordedEnds,
}

impl SessionRegistry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: SessionsConfig,
        sandboxes: SandboxesConfig,
        on_shutdown: OnShutdown,
        backend: Arc<dyn SandboxBackend>,
        store: Store,
        metrics: Arc<Metrics>,
        pool: Arc<WarmPool>,
        profiles: Profiles,
        default_namespace: &str,
        recordings: Option<Recordings>,
    ) -> Arc<SessionRegistry> {
        let audit = Audit::new(store.clone());
        Arc::new(SessionRegistry {
            config,
            sandboxes,
            on_shutdown,
            backend,
            store,
            metrics,
            profiles,
            default_namespace: default_namespace.to_string(),
            sessions: Mutex::default(),
            live_per_user: Mutex::default(),
            slots: slots::Slots::default(),
            pending: Mutex::default(),
            making: Mutex::default(),
            sandboxes_live: AtomicU32::new(0),
            stopped: AtomicBool::new(false),
            recordings,
            audit,
            runtime: tokio::runtime::Handle::current(),
            pool,
            unrecorded: unrecorded::UnrecordedEnds::default(),
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
        if self.stopped.load(Ordering::Acquire) {
            // Kept for the next run: this run's connection to the shell went, not the shell.
            tracing::debug!(session = %info.id, "a kept session's connection ended after the stop");
            session.mark_recorded();
            return;
        }
        tracing::info!(session = %info.id, user = %crate::audit::escape_for_log(&info.user), code, reason, "session ended");
        if let Some(at) = session.take_touched() {
            let _ = self.store.touch_sessions(vec![(info.id.clone(), at)]).await;
        }
        let end = (SessionStatus::Terminated, code, reason.as_str());
        self.unrecorded.record(&self.store, &info.id, end).await;
        self.release_place(&info.user);
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

        // At shutdown the sandbox stays (with the user's files) for the next run to adopt (or
        // for `server.on_shutdown = "delete"` to remove).
        let after = match reason.as_str() {
            "server_shutdown" => slots::AfterLast::Keep,
            _ => self.after_last(),
        };
        if let Some(unused) = self.slots.leave(&info.slot_key(), after) {
            self.remove_unused(unused).await;
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
            Some(mut record) if caller.may_see(&record.user) => {
                self.unrecorded.overlay(&mut record);
                Ok(record)
            }
            _ => Err(Error::session_not_found(id)),
        }
    }

    /// The caller's sessions (everyone's for admins); ended ones only when `include_ended`.
    pub async fn list(&self, caller: &Caller, include_ended: bool) -> Result<Vec<SessionRecord>> {
        let user = if caller.admin { None } else { Some(caller.user.as_str()) };
        let ended_limit = if include_ended { 500 } else { 0 };
        let mut records = self.store.list_sessions(user, ended_limit).await?;
        let live = Self::lock(&self.sessions).clone();
        for record in &mut records {
            if let Some(session) = live.get(&record.id) {
                *record = session.record();
            }
            self.unrecorded.overlay(record);
        }
        if !include_ended {
            records.retain(|r| r.status.is_live());
        }
        Ok(records)
    }

    /// Deletes the store's rows of sessions that ended longer than `retention` ago (zero keeps
    /// them).
    pub async fn prune_ended(&self, retention: Duration) {
        let Ok(age) = chrono::Duration::from_std(retention) else { return };
        if age.is_zero() {
            return;
        }
        match self.store.prune_sessions(Utc::now() - age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "pruned ended sessions (sessions.retention)"),
            Err(e) => tracing::warn!(error = %e, "could not prune ended sessions"),
        }
    }

    /// Ends session `id` (its shell, and its sandbox when it was the last session there).
    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        match self.live(caller, id) {
            Ok(session) => {
                if !self.end(&session, "deleted").await {
                    return Err(Error::BackendUnavailable(format!(
                        "session {id} did not end within {}s (the backend does not answer); \
                         kterm keeps trying",
                        END_WAIT.as_secs()
                    )));
                }
                Self::lock(&self.sessions).remove(id);
                Ok(())
            }
            Err(not_live) => {
                // Still starting: its creation is called off.
                if let Some(pending) = self.pending(caller, id) {
                    return self.cancel_pending(&pending).await;
                }
                match self.store.get_session(id).await? {
                    Some(record) if caller.may_see(&record.user) => Ok(()),
                    _ => Err(not_live),
                }
            }
        }
    }

    /// Ends a session and waits (up to [`END_WAIT`]) until its end is recorded; `false` when
    /// it was not by then. The kill runs in a task of its own, so an engine that does not
    /// answer holds up nobody, and it goes on trying.
    async fn end(&self, session: &Arc<Session>, reason: &str) -> bool {
        self.end_later(session, reason);
        let ended = tokio::time::timeout(END_WAIT, session.recorded()).await.is_ok();
        if !ended {
            tracing::warn!(session = %session.info.id, "the shell did not end within {END_WAIT:?} of being killed");
        }
        ended
    }

    /// Starts ending a session without waiting for it.
    fn end_later(&self, session: &Arc<Session>, reason: &str) {
        let (session, reason) = (session.clone(), reason.to_string());
        self.runtime.spawn(async move { session.terminate(&reason).await });
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
        if self.unrecorded.len() > 0 {
            self.unrecorded.retry(&self.store).await;
        }
    }

    /// The latest activity (input, output, an attach) of any live session, if there is one.
    pub fn latest_activity(&self) -> Option<chrono::DateTime<Utc>> {
        self.live_sessions().iter().map(|s| s.last_active()).max()
    }

    /// Ends sessions past their idle timeout or maximum lifetime.
    pub async fn reap(&self) {
        let now = Utc::now();
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
                self.end_later(&session, reason);
            } else if let Some(reason) = session.end_reason() {
                // Being ended, still running: the kill did not get through (the backend did
                // not answer). Try again; a kill under way is not started twice.
                self.end_later(&session, &reason);
            }
        }
        for unused in self.slots.take_unused(now) {
            tracing::info!(sandbox = %unused.sandbox.id, "removing a sandbox nobody used for sandboxes.idle_timeout (or past its lifetime)");
            self.remove_unused(unused).await;
        }
    }

    /// At shutdown: records activity and, where the processes would not survive us anyway,
    /// ends every session so the store says what happened. With `server.on_shutdown =
    /// "delete"` every session ends and every sandbox of this instance is removed.
    pub async fn shutdown(&self) {
        self.flush_activity().await;
        let delete = self.on_shutdown == OnShutdown::Delete;
        if !delete && self.backend.persistent_shells().is_some() {
            self.shutdown_keeping_shells().await;
            return;
        }
        if self.backend.processes_survive_restart() && !delete {
            return;
        }
        let sessions = self.live_sessions();
        let ends = sessions.iter().map(|s| self.end(s, "server_shutdown"));
        futures_util::future::join_all(ends).await;
        if delete {
            self.remove_all_sandboxes().await;
        }
    }

    pub fn backend(&self) -> &Arc<dyn SandboxBackend> {
        &self.backend
    }

    pub fn pool(&self) -> &Arc<WarmPool> {
        &self.pool
    }

    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// Session recordings, when `recording.enabled`.
    pub fn recordings(&self) -> Option<&Recordings> {
        self.recordings.as_ref()
    }
}
