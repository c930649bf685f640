//! The registry's sandbox bookkeeping: one sandbox per user, namespace and profile, taken from
//! the warm pool or made cold (once per slot, in a task of its own so that it finishes and is
//! booked even when the creation that asked gives up), counted against
//! `sessions.max_sandboxes`, with a spare pre-started shell for the next tab; and the
//! reconciliation with what a previous run left.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::Utc;

use super::slots::{Life, SlotKey, Step, Unused};
use super::{Caller, Session, SessionProfile, SessionRegistry};
use crate::error::{Error, Result};
use crate::pool::{PoolKey, WatchedStub};
use crate::sandbox::{Sandbox, SandboxSpec, StartPhase, StartProgress, TtyProcess};
use crate::store::{SandboxRecord, SandboxStatus};

impl SessionRegistry {
    /// Reconciles with what a previous run left: sessions whose processes did not survive are
    /// recorded as ended (with tmux, those whose shells survived are resumed); the store's
    /// sandboxes and the backend's are reconciled (see `reconcile.rs`: known ones adopted,
    /// this instance's orphans removed). Only this instance's sandboxes are ever listed. A
    /// backend that does not answer now is reconciled by the periodic round once it does (the
    /// previous run's sessions have ended then).
    pub async fn recover(self: &Arc<Self>) -> Result<()> {
        let persistent = self.backend.persistent_shells().is_some();
        // With shells that may have survived (tmux), each adopted sandbox is asked which did;
        // the rest end below. Otherwise every live session of the previous run has ended.
        let live = match persistent {
            true => self.store.live_sessions().await?,
            false => Vec::new(),
        };
        if !self.backend.processes_survive_restart() && !persistent {
            let ended = self.store.end_live_sessions("server_restart").await?;
            if ended > 0 {
                tracing::info!(sessions = ended, "ended the sessions of the previous run");
            }
        }
        let (_, resumed) = self.reconcile_resuming(&live).await;
        self.end_unresumed(&live, &resumed).await;
        Ok(())
    }

    /// The slot's sandbox: the one there, the one another creation is making, or a new one
    /// (claimed warm, with its stub, or made cold).
    pub(super) async fn sandbox_for(
        self: &Arc<Self>,
        key: &SlotKey,
        profile: &SessionProfile,
        progress: &StartProgress,
    ) -> Result<(Sandbox, Option<TtyProcess>)> {
        loop {
            match self.slots.next_step(key) {
                Step::Use(sandbox) => return Ok((sandbox, None)),
                Step::Wait(mut done) => {
                    // Woken when the maker is done (its sender is dropped); then ask again.
                    let phases = self.slot_phases(key);
                    forward_phases(phases, progress, async { drop(done.changed().await) }).await;
                }
                Step::Make(maker) => {
                    let registry = self.clone();
                    let (key, sandbox_profile) = (key.clone(), profile.sandbox.clone());
                    // The start's phases, for this creation and any that waits for the same slot.
                    let (phases, watching) = tokio::sync::watch::channel(None);
                    let call_off = tokio::sync::watch::Sender::new(false);
                    let called_off = call_off.subscribe();
                    let entry = Making { phases: watching.clone(), call_off };
                    Self::lock(&self.making).insert(key.clone(), entry);
                    let making = self.runtime.spawn(async move {
                        let report = StartProgress::new(move |phase, detail| {
                            phases.send_replace(Some((phase, detail)));
                        });
                        let made =
                            registry.make_sandbox(&key, sandbox_profile, report, called_off).await;
                        Self::lock(&registry.making).remove(&key);
                        let sandbox = made.as_ref().ok().map(|(s, _, life)| (s.clone(), *life));
                        if let Some(unwanted) = registry.slots.made(&key, sandbox) {
                            tracing::info!(sandbox = %unwanted.id, "nobody waits for a new sandbox any more; removing it");
                            registry.destroy_sandbox(&unwanted.id).await;
                        }
                        drop(maker);
                        made.map(|(sandbox, stub, _)| (sandbox, stub))
                    });
                    return forward_phases(Some(watching), progress, making)
                        .await
                        .map_err(|e| Error::Internal(format!("making a sandbox failed: {e}")))?;
                }
            }
        }
    }

    /// The phases of the start of `key`'s sandbox, while one is being made.
    fn slot_phases(&self, key: &SlotKey) -> Option<Phases> {
        Self::lock(&self.making).get(key).map(|m| m.phases.clone())
    }

    /// Calls off the start of `key`'s sandbox when nobody waits for it any more (its only
    /// creation was deleted while pending): the half-made sandbox is removed now, not when
    /// its start would have timed out.
    pub(super) fn call_off_unwanted(&self, key: &SlotKey) {
        if self.slots.in_use(key) {
            return;
        }
        if let Some(making) = Self::lock(&self.making).get(key) {
            making.call_off.send_replace(true);
        }
    }

    /// A new sandbox for `key`: a warm one claimed from the pool (with its live stub), or one
    /// made now; recorded in the store as the user's, with the end of its maximum lifetime
    /// (counted from now, when it becomes theirs).
    async fn make_sandbox(
        &self,
        key: &SlotKey,
        profile: Arc<crate::sandbox::Profile>,
        progress: StartProgress,
        mut called_off: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(Sandbox, Option<TtyProcess>, Life)> {
        // Counted against sessions.max_sandboxes from here; destroy_sandbox gives it back.
        self.reserve_sandbox()?;
        let pool_key = PoolKey::new(&key.namespace, &key.profile);
        if let Some(claimed) = self.pool.claim(&key.user, &pool_key).await {
            let life = self.new_life();
            // The claim is recorded already; without its deadline a restart would count the
            // lifetime again from then, so a failure here is only logged.
            if let Err(e) =
                self.store.set_sandbox_expiry(&claimed.sandbox.id, life.expires_at).await
            {
                tracing::warn!(sandbox = %claimed.sandbox.id, error = %e, "could not record a sandbox's deadline");
            }
            return Ok((claimed.sandbox, Some(claimed.stub), life));
        }
        // A previous run's sandbox of this slot that could not be adopted at start (the
        // backend was down) is the user's, with their files: it, not a new one.
        if let Some((previous, life)) =
            self.previous_sandbox(key).await.inspect_err(|_| self.release_sandbox())?
        {
            return Ok((previous, None, life));
        }
        let spec = SandboxSpec {
            user: Some(key.user.clone()),
            namespace: key.namespace.clone(),
            profile,
            progress: Some(progress),
        };
        // Dropping a start that is called off removes what it made (a pod is deleted).
        let created = tokio::select! {
            created = self.backend.create_sandbox(&spec) => created,
            _ = called_off.wait_for(|off| *off) => Err(Error::Conflict(
                "the sandbox's start was called off: nobody waits for it any more".into(),
            )),
        };
        let sandbox = created.inspect_err(|_| self.release_sandbox())?;
        let life = self.new_life();
        let record = SandboxRecord {
            id: sandbox.id.clone(),
            backend: self.backend.kind().into(),
            user: Some(key.user.clone()),
            namespace: key.namespace.clone(),
            profile: key.profile.clone(),
            status: SandboxStatus::Running,
            created_at: life.since,
            expires_at: Some(life.expires_at),
        };
        if let Err(e) = self.store.insert_sandbox(&record).await {
            self.destroy_sandbox(&sandbox.id).await;
            return Err(e);
        }
        Ok((sandbox, None, life))
    }

    /// The life of a sandbox that becomes its user's now.
    fn new_life(&self) -> Life {
        let since = Utc::now();
        Life { since, expires_at: since + self.lifetime() }
    }

    /// `sessions.max_lifetime`.
    pub(super) fn lifetime(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.max_lifetime.0).unwrap_or(chrono::Duration::hours(8))
    }

    /// Starts, in the background, a stub for the user's next tab in `sandbox`, where the
    /// backend has stubs and the sandbox lacks one.
    pub(super) fn start_spare(self: &Arc<Self>, key: SlotKey, sandbox: Sandbox) {
        if self.backend.stubs().is_none() || !self.slots.wants_spare(&key, &sandbox.id) {
            return;
        }
        let registry = self.clone();
        self.runtime.spawn(async move {
            let Some(stubs) = registry.backend.stubs() else { return };
            let stub = match stubs.start_stub(&sandbox).await {
                Ok(stub) => WatchedStub::watch(stub),
                Err(e) => {
                    tracing::debug!(sandbox = %sandbox.id, error = %e, "no spare shell");
                    return;
                }
            };
            // Not wanted any more (the sandbox went, or got one meanwhile): dropping it ends it.
            drop(registry.slots.offer_spare(&key, &sandbox.id, stub));
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
        self.remove_sandbox(id).await;
    }

    /// Removes sandbox `id`: recorded `ending` first, `terminated` once the backend confirms.
    /// A removal that fails stays `ending` and the reconcile tries again. `true` when removed.
    pub(super) async fn remove_sandbox(&self, id: &str) -> bool {
        if let Err(e) = self.store.mark_sandbox_ending(id).await {
            tracing::warn!(sandbox = id, error = %e, "could not record that a sandbox ends");
        }
        if let Err(e) = self.backend.destroy_sandbox(id).await {
            tracing::warn!(sandbox = id, error = %e, "could not destroy sandbox; the reconcile retries");
            return false;
        }
        if let Err(e) = self.store.end_sandbox(id).await {
            tracing::warn!(sandbox = id, error = %e, "could not record the end of a sandbox");
        }
        true
    }

    /// Removes a sandbox nobody uses any more (its spare shell goes with it).
    pub(super) async fn remove_unused(&self, unused: Unused) {
        if let Some(spare) = unused.spare {
            spare.abandon().await;
        }
        self.destroy_sandbox(&unused.sandbox.id).await;
    }

    /// The live session `id` and its sandbox, if `caller` may see it (for the files API).
    /// An ended session is 409; a sandbox that went away is 503.
    pub async fn sandbox_of(&self, caller: &Caller, id: &str) -> Result<(Arc<Session>, Sandbox)> {
        // One still starting is waited for.
        let session = self.live_when_ready(caller, id).await?;
        if session.has_exited() {
            return Err(Error::Conflict(format!("session {id} has ended")));
        }
        match self.slots.ready(&session.info.slot_key()) {
            Some(sandbox) if sandbox.id == session.info.sandbox_id && sandbox.running => {
                Ok((session, sandbox))
            }
            _ => Err(Error::SandboxGone(format!("the sandbox of session {id} is gone"))),
        }
    }
}

/// A sandbox being made for a slot: its start's phases, and the means to call it off.
pub(super) struct Making {
    phases: Phases,
    call_off: tokio::sync::watch::Sender<bool>,
}

/// The latest phase of a sandbox's start, as its maker reports it.
pub(super) type Phases = tokio::sync::watch::Receiver<Option<(StartPhase, Option<String>)>>;

/// Runs `until`, telling `progress` each phase reported on `phases` meanwhile.
async fn forward_phases<T>(
    phases: Option<Phases>,
    progress: &StartProgress,
    until: impl std::future::Future<Output = T>,
) -> T {
    let Some(mut phases) = phases else { return until.await };
    let mut until = std::pin::pin!(until);
    loop {
        if let Some((phase, detail)) = phases.borrow_and_update().clone() {
            progress.report(phase, detail);
        }
        tokio::select! {
            done = &mut until => return done,
            changed = phases.changed() => {
                if changed.is_err() {
                    return until.await;
                }
            }
        }
    }
}
