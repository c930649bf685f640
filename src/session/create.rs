//! Creating a session: the caller's namespace, profile and request are checked, a place under
//! `sessions.max_per_user` is reserved, the user's sandbox is found or made (see
//! [`super::sandboxes`]), the shell is started (from a pre-started stub when there is one) and
//! the session is recorded and registered — all within `sessions.create_timeout`.
//!
//! Invariants:
//! - A reserved place is released if creation fails; a created session's place is released
//!   when it ends (in `finish`). The same holds for the use of the sandbox's slot: a creation
//!   that fails or gives up releases it (see [`Reservation`]), and the sandbox is removed when
//!   nobody else uses it.
//! - A started shell lives on only if the store has its record as running; otherwise it is
//!   killed and the creation fails. A shell that could not start is recorded as failed.
//! - Creation runs on the server's main runtime, not on the HTTP worker that asked for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;

use super::pending::{PendingSession, PendingState};
use super::slots::SlotKey;
use super::validate::{validate_context, validate_namespace};
use super::{Caller, CreateSession, SessionInfo, SessionProfile, SessionRegistry};
use crate::error::{Error, Result};
use crate::sandbox::{ProcessSpec, Sandbox, StartProgress, TtyProcess};
use crate::store::{SessionRecord, SessionStatus};

/// What a session is made of, once the request is checked.
struct Plan {
    id: String,
    user: String,
    key: SlotKey,
    profile: SessionProfile,
    cols: u16,
    rows: u16,
    context: BTreeMap<String, String>,
}

impl SessionRegistry {
    /// Creates a session for `caller` in a namespace and with a profile they may use: reserves
    /// a place, finds or makes the sandbox, starts the shell, and records it.
    pub async fn create(
        self: &Arc<Self>,
        caller: &Caller,
        request: CreateSession,
    ) -> Result<SessionRecord> {
        let namespace = match request.namespace.clone() {
            Some(namespace) => namespace,
            None => caller.default_namespace(&self.default_namespace),
        };
        validate_namespace(&namespace)?;
        if !caller.may_use(&namespace) {
            return Err(Error::Forbidden(format!(
                "user {} may not use namespace {namespace}",
                caller.user
            )));
        }
        if let Some(review) = self.backend.access_review() {
            review.authorize(&caller.user, &caller.groups, &namespace).await?;
        }
        let profile = self.profiles.choose(caller, request.profile.as_deref())?.clone();
        validate_context(&request.context)?;
        let cols = request.cols.unwrap_or(80);
        let rows = request.rows.unwrap_or(24);
        if !(1..=1000).contains(&cols) || !(1..=1000).contains(&rows) {
            return Err(Error::BadRequest(format!(
                "cols and rows must be between 1 and 1000, not {cols}x{rows}"
            )));
        }
        let plan = Plan {
            id: uuid::Uuid::new_v4().to_string(),
            user: caller.user.clone(),
            key: SlotKey {
                user: caller.user.clone(),
                namespace,
                profile: profile.name().to_string(),
            },
            profile,
            cols,
            rows,
            context: request.context,
        };
        let pending = PendingSession::new(&plan.id, &plan.key);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let registry = self.clone();
        self.runtime.spawn(async move { registry.create_here(plan, pending, answer).await });
        answered.await.map_err(|_| Error::Internal("session creation failed".into()))?
    }

    /// Creates the session, answering `answer` with it once it runs, with its pending record
    /// as soon as the backend says the sandbox's start is a slow one (the creation goes on;
    /// followers of `pending` see its end), or with the error.
    async fn create_here(
        self: &Arc<Self>,
        plan: Plan,
        pending: Arc<PendingSession>,
        answer: tokio::sync::oneshot::Sender<Result<SessionRecord>>,
    ) {
        if let Err(e) = self.reserve_place(&plan.user) {
            let _ = answer.send(Err(e));
            return;
        }
        Self::lock(&self.pending).insert(plan.id.clone(), pending.clone());
        let mut answer = Some(answer);
        let limit = self.config.create_timeout.0;
        let creation =
            tokio::time::timeout(limit, self.create_reserved(&plan, &pending, &mut answer));
        // `None`: a delete called it off (only a pending session can be deleted).
        let outcome = tokio::select! {
            result = creation => Some(result.unwrap_or_else(|_| Err(Error::BackendUnavailable(format!(
                "the sandbox and shell were not ready within {} (sessions.create_timeout)",
                humantime::format_duration(limit)
            ))))),
            () = pending.cancelled() => None,
        };
        let (result, end) = match outcome {
            Some(Ok(record)) => (Ok(record), PendingState::Ready),
            failed => {
                self.release_place(&plan.user);
                let (status, reason, result) = match failed {
                    Some(Err(e)) => {
                        self.metrics.session_create_failures.inc();
                        (SessionStatus::Failed, e.to_string(), Err(e))
                    }
                    _ => {
                        let e = Error::Conflict(format!(
                            "session {} was deleted before it started",
                            plan.id
                        ));
                        (SessionStatus::Terminated, "deleted".to_string(), Err(e))
                    }
                };
                if pending.announced() {
                    // Its pending record is all the caller got: the store says how it ended.
                    if let Err(e) = self.store.end_session(&plan.id, status, None, &reason).await {
                        tracing::warn!(session = %plan.id, error = %e, "could not record the end of a session that did not start");
                    }
                    tracing::info!(session = %plan.id, reason, "a pending session did not start");
                }
                (result, PendingState::Failed { reason })
            }
        };
        pending.finish(end);
        Self::lock(&self.pending).remove(&plan.id);
        if let Some(answer) = answer {
            let _ = answer.send(result);
        }
    }

    fn reserve_place(&self, user: &str) -> Result<()> {
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

    pub(super) fn release_place(&self, user: &str) {
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
        plan: &Plan,
        pending: &Arc<PendingSession>,
        answer: &mut Option<tokio::sync::oneshot::Sender<Result<SessionRecord>>>,
    ) -> Result<SessionRecord> {
        let reservation = Reservation::new(self.clone(), plan.key.clone());
        let lifetime = chrono::Duration::from_std(self.config.max_lifetime.0)
            .unwrap_or(chrono::Duration::hours(8));
        let now = Utc::now();
        let mut info = SessionInfo {
            id: plan.id.clone(),
            user: plan.user.clone(),
            namespace: plan.key.namespace.clone(),
            profile: plan.key.profile.clone(),
            sandbox_id: String::new(),
            context: plan.context.clone(),
            created_at: now,
            expires_at: now,
            size: (plan.cols, plan.rows),
        };
        let spec = ProcessSpec {
            command: self.config.command.clone(),
            init: Some(plan.profile.init.clone()).filter(|s| !s.trim().is_empty()),
            env: self.session_env(&info, &plan.profile),
            cols: plan.cols,
            rows: plan.rows,
        };
        let record = |info: &SessionInfo, status| SessionRecord {
            id: info.id.clone(),
            user: info.user.clone(),
            namespace: info.namespace.clone(),
            profile: info.profile.clone(),
            sandbox_id: info.sandbox_id.clone(),
            status,
            context: info.context.clone(),
            created_at: now,
            last_active: now,
            expires_at: info.expires_at,
            exit_code: None,
            end_reason: None,
            ended_at: None,
        };
        let progress = pending.progress();
        let started = self.start_in_sandbox(&plan.key, &plan.profile, &spec, &progress);
        let mut started = std::pin::pin!(started);
        let started = loop {
            tokio::select! {
                started = &mut started => break started,
                () = pending.reported(), if answer.is_some() => {
                    // A slow start: the caller gets the pending session now.
                    let mut record = record(&info, SessionStatus::Pending);
                    record.expires_at = now + lifetime;
                    self.store.insert_session(&record).await?;
                    pending.mark_announced();
                    if let Some(answer) = answer.take() {
                        let _ = answer.send(Ok(record));
                    }
                }
            }
        };
        let (sandbox, process) = match started {
            Ok(started) => started,
            // An announced creation's end is recorded by the caller.
            Err(e) if pending.announced() => return Err(e),
            Err(e) => {
                // Recorded as failed, for the audit trail and GET.
                if self.store.insert_session(&record(&info, SessionStatus::Pending)).await.is_ok() {
                    let _ = self
                        .store
                        .end_session(&info.id, SessionStatus::Failed, None, &e.to_string())
                        .await;
                }
                return Err(e);
            }
        };
        info.sandbox_id = sandbox.id.clone();
        info.expires_at = self.slots.expires_at(&plan.key, lifetime);
        // One write for a started session; without it the process must not live on.
        let record = record(&info, SessionStatus::Running);
        let written = match pending.announced() {
            true => self.store.start_session(&record).await,
            false => self.store.insert_session(&record).await,
        };
        if let Err(e) = written {
            process.control.kill().await;
            return Err(e);
        }
        reservation.becomes_session();
        self.start_spare(plan.key.clone(), sandbox);

        self.metrics.sessions_created.inc();
        self.launch(info, process, super::resume::Recording::New);
        let user = crate::audit::escape_for_log(&plan.user);
        tracing::info!(session = %record.id, user, namespace = %record.namespace, profile = %record.profile, sandbox = %record.sandbox_id, "session started");
        Ok(record)
    }

    /// Starts the session's process in its slot's sandbox (found, claimed warm, or made): from
    /// a live stub when there is one, else as a new exec. A warm sandbox whose stub does not
    /// take its activation is discarded, and so is a sandbox that turns out to be gone; then
    /// the next one is tried (a few times at most). The user's own sandbox is never discarded
    /// for a dead spare shell: a new exec is started in it instead.
    async fn start_in_sandbox(
        self: &Arc<Self>,
        key: &SlotKey,
        profile: &SessionProfile,
        spec: &ProcessSpec,
        progress: &StartProgress,
    ) -> Result<(Sandbox, TtyProcess)> {
        const ATTEMPTS: u32 = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (sandbox, claimed) = self.sandbox_for(key, profile, progress).await?;
            let warm = claimed.is_some();
            let started = match (claimed, self.backend.stubs()) {
                (Some(stub), Some(stubs)) => stubs.activate(stub, &sandbox, spec).await,
                _ => self.start_in_own_sandbox(key, &sandbox, spec).await,
            };
            match started {
                Ok(process) => return Ok((sandbox, process)),
                // A warm sandbox was nobody's a moment ago: discarding it loses nothing.
                Err(e) if attempt < ATTEMPTS && (warm || gone(&e)) => {
                    tracing::warn!(sandbox = %sandbox.id, error = %e, "discarding a sandbox that cannot run the session; trying another");
                    if let Some(spare) = self.slots.forget(key, &sandbox.id) {
                        spare.abandon().await;
                    }
                    self.destroy_sandbox(&sandbox.id).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts the process in the user's own sandbox: from its spare shell when that is alive
    /// and takes its activation, else as a new exec.
    async fn start_in_own_sandbox(
        &self,
        key: &SlotKey,
        sandbox: &Sandbox,
        spec: &ProcessSpec,
    ) -> Result<TtyProcess> {
        let spare = match self.slots.take_spare(key, &sandbox.id) {
            Some(spare) => spare.hand_over().await,
            None => None,
        };
        if let (Some(stub), Some(stubs)) = (spare, self.backend.stubs()) {
            match stubs.activate(stub, sandbox, spec).await {
                Ok(process) => return Ok(process),
                Err(e) => {
                    tracing::warn!(sandbox = %sandbox.id, error = %e, "a spare shell could not be activated; starting a new one")
                }
            }
        }
        self.backend.start_process(sandbox, spec).await
    }

    /// The environment of a session's shell: the profile's variables, then kterm's, then the
    /// context.
    fn session_env(&self, info: &SessionInfo, profile: &SessionProfile) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> =
            profile.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.push(("TERM".into(), "xterm-256color".into()));
        env.push(("COLORTERM".into(), "truecolor".into()));
        env.push(("KTERM_SESSION_ID".into(), info.id.clone()));
        env.push(("KTERM_USER".into(), info.user.clone()));
        env.push(("KTERM_NAMESPACE".into(), info.namespace.clone()));
        env.push(("KTERM_PROFILE".into(), info.profile.clone()));
        for (key, value) in &info.context {
            env.push((format!("KTERM_CTX_{}", key.to_ascii_uppercase()), value.clone()));
        }
        env
    }
}

/// Whether `error` says the sandbox itself is gone.
fn gone(error: &Error) -> bool {
    matches!(error, Error::SandboxGone(_))
}

/// A creation's use of its slot: released when the creation fails or gives up (even when
/// its future is dropped at the deadline), kept when it became a session.
struct Reservation {
    registry: Arc<SessionRegistry>,
    key: SlotKey,
    kept: bool,
}

impl Reservation {
    fn new(registry: Arc<SessionRegistry>, key: SlotKey) -> Reservation {
        registry.slots.reserve(&key);
        Reservation { registry, key, kept: false }
    }

    fn becomes_session(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let after = self.registry.after_last();
        if let Some(unused) = self.registry.slots.leave(&self.key, after) {
            let registry = self.registry.clone();
            self.registry.runtime.spawn(async move { registry.remove_unused(unused).await });
        }
    }
}
