//! Creating a session: the caller's namespace and request are checked, a slot under
//! `sessions.max_per_user` is reserved, the user's sandbox is found or made (see
//! [`super::sandboxes`]), the shell is started (from the spare stub when there is one) and the
//! session is recorded and registered.
//!
//! Invariants:
//! - A reserved slot is released if creation fails; a created session's slot is released when
//!   it ends (in `finish`).
//! - A started shell lives on only if the store has its record as running; otherwise it is
//!   killed and the creation fails. A shell that could not start is recorded as failed.
//! - Creation runs on the server's main runtime, not on the HTTP worker that asked for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;

use super::sandboxes::activate;
use super::validate::{validate_context, validate_namespace};
use super::DEFAULT_NAMESPACE;
use super::{Caller, CreateSession, Lifecycle, Session, SessionInfo, SessionRegistry};
use crate::error::{Error, Result};
use crate::sandbox::ProcessSpec;
use crate::store::{SessionRecord, SessionStatus};

impl SessionRegistry {
    /// Creates a session for `caller` in a namespace they may use: reserves a slot, finds or
    /// makes the sandbox, starts the shell, and records it.
    pub async fn create(
        self: &Arc<Self>,
        caller: &Caller,
        request: CreateSession,
    ) -> Result<SessionRecord> {
        let namespace = request.namespace.clone().unwrap_or_else(|| caller.default_namespace());
        validate_namespace(&namespace)?;
        if !caller.may_use(&namespace) {
            return Err(Error::Forbidden(format!(
                "user {} may not use namespace {namespace}",
                caller.user
            )));
        }
        let registry = self.clone();
        let user = caller.user.clone();
        let request = CreateSession { namespace: Some(namespace), ..request };
        self.runtime
            .spawn(async move { registry.create_here(&user, request).await })
            .await
            .map_err(|e| Error::Internal(format!("session creation failed: {e}")))?
    }

    async fn create_here(
        self: &Arc<Self>,
        user: &str,
        request: CreateSession,
    ) -> Result<SessionRecord> {
        let namespace = request.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        validate_namespace(&namespace)?;
        validate_context(&request.context)?;
        let cols = request.cols.unwrap_or(80);
        let rows = request.rows.unwrap_or(24);
        if !(1..=1000).contains(&cols) || !(1..=1000).contains(&rows) {
            return Err(Error::BadRequest(format!(
                "cols and rows must be between 1 and 1000, not {cols}x{rows}"
            )));
        }
        self.reserve_slot(user)?;
        let result = self.create_reserved(user, &namespace, cols, rows, request.context).await;
        if result.is_err() {
            self.release_slot(user);
            self.metrics.session_create_failures.inc();
        }
        result
    }

    fn reserve_slot(&self, user: &str) -> Result<()> {
        let mut live = Self::lock(&self.live_per_user);
        let count = live.entry(user.to_string()).or_default();
        if *count >= self.config.max_per_user {
            return Err(Error::LimitReached(format!(
                "user {user} has {count} sessions, the limit (sessions.max_per_user) is {}",
                self.config.max_per_user
            )));
        }
        *count += 1;
        Ok(())
    }

    pub(super) fn release_slot(&self, user: &str) {
        let mut live = Self::lock(&self.live_per_user);
        if let Some(count) = live.get_mut(user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                live.remove(user);
            }
        }
    }

    async fn create_reserved(
        self: &Arc<Self>,
        user: &str,
        namespace: &str,
        cols: u16,
        rows: u16,
        context: BTreeMap<String, String>,
    ) -> Result<SessionRecord> {
        let key = (user.to_string(), namespace.to_string());
        let slot = Self::lock(&self.sandboxes).entry(key.clone()).or_default().clone();
        let mut slot = slot.lock().await;
        let sandbox = self.sandbox_for(&mut slot, user, namespace).await?;

        let now = Utc::now();
        let lifetime = chrono::Duration::from_std(self.config.max_lifetime.0)
            .unwrap_or(chrono::Duration::hours(8));
        let expires_at = *slot.expires_at.get_or_insert(now + lifetime);
        let mut info = SessionInfo {
            id: uuid::Uuid::new_v4().to_string(),
            user: user.into(),
            namespace: namespace.into(),
            sandbox_id: sandbox.id.clone(),
            context,
            created_at: now,
            expires_at,
            size: (cols, rows),
        };
        let mut record = SessionRecord {
            id: info.id.clone(),
            user: info.user.clone(),
            namespace: info.namespace.clone(),
            sandbox_id: info.sandbox_id.clone(),
            status: SessionStatus::Pending,
            context: info.context.clone(),
            created_at: now,
            last_active: now,
            expires_at: info.expires_at,
            exit_code: None,
            end_reason: None,
        };

        let spec = ProcessSpec {
            command: self.config.command.clone(),
            init: Some(self.config.init.clone()).filter(|s| !s.trim().is_empty()),
            env: self.session_env(&info),
            cols,
            rows,
        };
        let mut started = match slot.spare.take().filter(|stub| !stub.control.has_ended()) {
            Some(stub) => activate(stub, self.backend.activation(&spec), &spec).await,
            None => self.backend.start_process(&sandbox, &spec).await,
        };
        let mut sandbox = sandbox;
        if let Err(Error::SandboxGone(reason)) = &started {
            // The container died or was removed behind our back: replace it, once.
            tracing::warn!(sandbox = %sandbox.id, reason, "sandbox is gone; making a new one");
            slot.sandbox = None;
            slot.expires_at = None;
            slot.spare = None;
            self.destroy_sandbox(&sandbox.id).await;
            sandbox = self.sandbox_for(&mut slot, user, namespace).await?;
            info.sandbox_id = sandbox.id.clone();
            record.sandbox_id = sandbox.id.clone();
            started = self.backend.start_process(&sandbox, &spec).await;
        }
        let process = match started {
            Ok(process) => process,
            Err(e) => {
                // Recorded as failed, for the audit trail and GET.
                if self.store.insert_session(&record).await.is_ok() {
                    let _ = self
                        .store
                        .end_session(&info.id, SessionStatus::Failed, None, &e.to_string())
                        .await;
                }
                if slot.sessions == 0 {
                    slot.sandbox = None;
                    slot.expires_at = None;
                    self.destroy_sandbox(&sandbox.id).await;
                }
                return Err(e);
            }
        };
        // One write for a started session; without it the process must not live on.
        record.status = SessionStatus::Running;
        if let Err(e) = self.store.insert_session(&record).await {
            process.control.kill().await;
            return Err(e);
        }
        slot.unused_since = None;
        if self.pool.enabled() && slot.spare.is_none() {
            self.start_spare(key.clone(), sandbox.clone());
        }
        slot.sessions += 1;
        drop(slot);

        let (session, pump) = Session::start(
            info,
            process,
            self.config.scrollback.0 as usize,
            Lifecycle::from_config(&self.config),
            self.metrics.clone(),
        );
        Self::lock(&self.sessions).insert(session.info.id.clone(), session.clone());
        self.metrics.sessions_created.inc();
        self.metrics.sessions_active.inc();
        let registry = self.clone();
        let ended = session.clone();
        tokio::spawn(async move {
            let code = pump.await;
            registry.finish(ended, code).await;
        });
        tracing::info!(session = %record.id, user, namespace, sandbox = %record.sandbox_id, "session started");
        Ok(record)
    }

    /// The environment of a session's shell: fixed variables, then the context.
    fn session_env(&self, info: &SessionInfo) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> =
            self.config.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.push(("TERM".into(), "xterm-256color".into()));
        env.push(("COLORTERM".into(), "truecolor".into()));
        env.push(("KTERM_SESSION_ID".into(), info.id.clone()));
        env.push(("KTERM_USER".into(), info.user.clone()));
        env.push(("KTERM_NAMESPACE".into(), info.namespace.clone()));
        for (key, value) in &info.context {
            env.push((format!("KTERM_CTX_{}", key.to_ascii_uppercase()), value.clone()));
        }
        env
    }
}
