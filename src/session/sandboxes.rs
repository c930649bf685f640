//! The registry's sandbox bookkeeping: one sandbox per user and namespace, taken from the warm
//! pool or made cold, counted against `sessions.max_sandboxes`, with a spare pre-started shell
//! for the next tab; and the reconciliation with what a previous run left.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::Utc;

use super::{Caller, SandboxKey, SandboxSlot, Session, SessionRegistry};
use crate::error::{Error, Result};
use crate::sandbox::{ProcessSpec, Sandbox, SandboxSpec, TtyProcess};
use crate::store::{SandboxRecord, SandboxStatus};

impl SessionRegistry {
    /// Reconciles with what a previous run left: sessions whose processes did not survive are
    /// recorded as ended; sandboxes of this instance that the store knows are adopted (their
    /// users' files are there), the others are removed. Only this instance's sandboxes are
    /// ever listed.
    pub async fn recover(&self) -> Result<()> {
        if !self.backend.processes_survive_restart() {
            let ended = self.store.end_live_sessions("server_restart").await?;
            if ended > 0 {
                tracing::info!(sessions = ended, "ended the sessions of the previous run");
            }
        }
        // Bound sandboxes are their users'; warm ones are the pool's to adopt.
        let records = self.store.live_sandboxes(self.backend.kind()).await?;
        let warm_known: std::collections::HashSet<String> = records
            .iter()
            .filter(|r| r.status == SandboxStatus::Warm)
            .map(|r| r.id.clone())
            .collect();
        let known: std::collections::HashMap<String, SandboxRecord> = records
            .into_iter()
            .filter(|r| r.status == SandboxStatus::Running)
            .map(|r| (r.id.clone(), r))
            .collect();
        let existing = match self.backend.list_sandboxes().await {
            Ok(existing) => existing,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list sandboxes now; adoption skipped");
                return Ok(());
            }
        };
        let mut adopted = std::collections::HashSet::new();
        for mut sandbox in existing {
            if let Some(user) = known.get(&sandbox.id).and_then(|r| r.user.clone()) {
                // The store says whose it is (a claimed warm sandbox's labels say "warm").
                sandbox.user = user;
            }
            if sandbox.running && warm_known.contains(&sandbox.id) && self.pool.enabled() {
                adopted.insert(sandbox.id.clone());
                self.pool.adopt(sandbox).await;
                continue;
            }
            if sandbox.running && known.contains_key(&sandbox.id) {
                self.backend.end_stray_processes(&sandbox).await;
                tracing::info!(sandbox = %sandbox.id, user = %crate::audit::escape_for_log(&sandbox.user), "adopted sandbox");
                self.sandboxes_live.fetch_add(1, Ordering::AcqRel);
                adopted.insert(sandbox.id.clone());
                let key = (sandbox.user.clone(), sandbox.namespace.clone());
                let slot = SandboxSlot {
                    sandbox: Some(sandbox),
                    sessions: 0,
                    unused_since: Some(std::time::Instant::now()),
                    spare: None,
                    expires_at: None,
                };
                Self::lock(&self.sandboxes).insert(key, Arc::new(tokio::sync::Mutex::new(slot)));
            } else {
                tracing::info!(sandbox = %sandbox.id, "removing an orphaned sandbox of this instance");
                if let Err(e) = self.backend.destroy_sandbox(&sandbox.id).await {
                    tracing::warn!(sandbox = %sandbox.id, error = %e, "could not remove an orphan");
                }
            }
        }
        for id in known.keys().chain(warm_known.iter()).filter(|id| !adopted.contains(*id)) {
            self.store.end_sandbox(id).await?;
        }
        Ok(())
    }

    /// The slot's sandbox, made (and recorded) if there is none.
    pub(super) async fn sandbox_for(
        &self,
        slot: &mut SandboxSlot,
        user: &str,
        namespace: &str,
    ) -> Result<Sandbox> {
        if let Some(sandbox) = &slot.sandbox {
            return Ok(sandbox.clone());
        }
        // Counted against sessions.max_sandboxes from here; destroy_sandbox gives it back.
        self.reserve_sandbox()?;
        if let Some(warm) = self.pool.claim(user, namespace).await {
            slot.sandbox = Some(warm.sandbox.clone());
            slot.spare = warm.stub;
            return Ok(warm.sandbox);
        }
        let spec = SandboxSpec { user: user.into(), namespace: namespace.into() };
        let sandbox =
            self.backend.create_sandbox(&spec).await.inspect_err(|_| self.release_sandbox())?;
        let record = SandboxRecord {
            id: sandbox.id.clone(),
            backend: self.backend.kind().into(),
            user: Some(user.into()),
            namespace: namespace.into(),
            status: SandboxStatus::Running,
            created_at: Utc::now(),
            expires_at: None,
        };
        if let Err(e) = self.store.insert_sandbox(&record).await {
            self.destroy_sandbox(&sandbox.id).await;
            return Err(e);
        }
        slot.sandbox = Some(sandbox.clone());
        Ok(sandbox)
    }

    /// Starts, in the background, a stub for the user's next tab in `sandbox`.
    pub(super) fn start_spare(self: &Arc<Self>, key: SandboxKey, sandbox: Sandbox) {
        let registry = self.clone();
        self.runtime.spawn(async move {
            let stub = match registry.backend.start_stub(&sandbox).await {
                Ok(stub) => stub,
                Err(e) => {
                    tracing::debug!(sandbox = %sandbox.id, error = %e, "no spare shell");
                    return;
                }
            };
            let slot = Self::lock(&registry.sandboxes).get(&key).cloned();
            if let Some(slot) = slot {
                let mut slot = slot.lock().await;
                let same = slot.sandbox.as_ref().is_some_and(|s| s.id == sandbox.id);
                if same && slot.spare.is_none() {
                    slot.spare = Some(stub);
                }
            }
        });
    }

    /// Counts a sandbox about to be made against `sessions.max_sandboxes`.
    pub(super) fn reserve_sandbox(&self) -> Result<()> {
        let max = self.config.max_sandboxes;
        self.sandboxes_live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map(drop)
            .map_err(|_| {
                Error::LimitReached(format!(
                    "the server runs {max} sandboxes, its limit (sessions.max_sandboxes)"
                ))
            })
    }

    pub(super) fn release_sandbox(&self) {
        let _ = self
            .sandboxes_live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub(super) async fn destroy_sandbox(&self, id: &str) {
        self.release_sandbox();
        if let Err(e) = self.backend.destroy_sandbox(id).await {
            tracing::warn!(sandbox = id, error = %e, "could not destroy sandbox");
        }
        if let Err(e) = self.store.end_sandbox(id).await {
            tracing::warn!(sandbox = id, error = %e, "could not record the end of a sandbox");
        }
    }

    /// The live session `id` and its sandbox, if `caller` may see it (for the files API).
    /// An ended session is 409; a sandbox that went away is 503.
    pub async fn sandbox_of(&self, caller: &Caller, id: &str) -> Result<(Arc<Session>, Sandbox)> {
        let session = self.live(caller, id)?;
        if session.has_exited() {
            return Err(Error::Conflict(format!("session {id} has ended")));
        }
        let key = (session.info.user.clone(), session.info.namespace.clone());
        let slot = Self::lock(&self.sandboxes).get(&key).cloned();
        let sandbox = match slot {
            Some(slot) => slot.lock().await.sandbox.clone(),
            None => None,
        };
        match sandbox {
            Some(sandbox) if sandbox.id == session.info.sandbox_id && sandbox.running => {
                Ok((session, sandbox))
            }
            _ => Err(Error::SandboxGone(format!("the sandbox of session {id} is gone"))),
        }
    }
}

/// Turns a started stub into the session's process: one line on its input, then its size.
pub(super) async fn activate(
    mut stub: TtyProcess,
    line: Vec<u8>,
    spec: &ProcessSpec,
) -> Result<TtyProcess> {
    use tokio::io::AsyncWriteExt;
    // The stub's terminal is 80x24; a different size is set alongside the line, and both are
    // done before the session is handed out, so its first command already sees its size.
    let control = stub.control.clone();
    let resize = async {
        if (spec.cols, spec.rows) != (80, 24) {
            if let Err(e) = control.resize(spec.cols, spec.rows).await {
                tracing::warn!(error = %e, "could not size a started shell's terminal");
            }
        }
    };
    let (written, ()) = tokio::join!(stub.input.write_all(&line), resize);
    written.map_err(|e| Error::io("activating a started shell", e))?;
    if let Some(id) = spec.session_id() {
        stub.control.bind_session(&id);
    }
    Ok(stub)
}
