//! The reconcile of the store's sandboxes with the backend's: at start and then every
//! [`RECONCILE_PERIOD`], the backend's sandboxes of this instance are listed and compared with
//! the store, and what differs is repaired, so a Docker outage or a crash leaks nothing:
//! - a sandbox the store does not know (a create whose reply was lost), or knows as ended, is
//!   removed;
//! - a sandbox the store marks `ending` (a removal that failed) is removed again, and recorded
//!   `terminated` only once the backend confirms;
//! - a running sandbox the store gives to a user but no slot holds (a previous run's, at start,
//!   or one whose adoption failed while the backend was down) is adopted, with its deadline
//!   from the store, and waits for its user's next session; at start, with tmux, the shells
//!   that survived in it are resumed as sessions; a warm one goes to the pool;
//! - a record whose sandbox is gone is ended.
//!
//! Invariant: the reconcile acts only on a quiet registry: no slot's sandbox being made and no
//! warm one being made, both before listing and after reading the store. A sandbox under
//! creation can be in the backend before it is in the store or a slot; such a round is skipped
//! and the next one decides. A removal is recorded (`ending`) before the backend is asked, so
//! a removal under way is never mistaken for a sandbox to adopt.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::sync::Arc;

use chrono::Utc;

use super::slots::Life;
use super::{SessionRegistry, SlotKey};
use crate::error::{Error, Result};
use crate::sandbox::Sandbox;
use crate::store::{SandboxRecord, SandboxStatus, SessionRecord};

/// How often the store and the backend are compared.
pub const RECONCILE_PERIOD: Duration = Duration::from_secs(30);

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub removed: usize,
    pub adopted: usize,
    pub records_ended: usize,
    /// The round was skipped (a creation under way, or the backend did not answer).
    pub skipped: bool,
}

impl SessionRegistry {
    fn quiet(&self) -> bool {
        !self.slots.held().1 && !self.pool.is_creating()
    }

    /// One round of the reconcile (see the module's header).
    pub async fn reconcile(self: &Arc<Self>) -> Reconciled {
        self.reconcile_resuming(&[]).await.0
    }

    /// A round that also resumes, in the sandboxes it adopts, the sessions of `live` whose
    /// shells survived (at start); the ids of those resumed.
    pub(super) async fn reconcile_resuming(
        self: &Arc<Self>,
        live: &[SessionRecord],
    ) -> (Reconciled, HashSet<String>) {
        let mut done = Reconciled::default();
        let mut resumed = HashSet::new();
        if !self.quiet() {
            done.skipped = true;
            return (done, resumed);
        }
        let existing = match self.backend.list_sandboxes().await {
            Ok(existing) => existing,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list sandboxes now; reconcile skipped");
                done.skipped = true;
                return (done, resumed);
            }
        };
        let records = match self.store.live_sandboxes(self.backend.kind()).await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store; reconcile skipped");
                done.skipped = true;
                return (done, resumed);
            }
        };
        let (held, making) = self.slots.held();
        if making || self.pool.is_creating() {
            done.skipped = true;
            return (done, resumed);
        }
        let held: HashSet<String> = held.into_iter().chain(self.pool.warm_ids()).collect();
        let mut known: HashMap<String, SandboxRecord> =
            records.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut seen = HashSet::new();
        for sandbox in existing {
            let sandbox = match self.renamed(&mut known, sandbox).await {
                Ok(sandbox) => sandbox,
                Err(e) => {
                    tracing::warn!(error = %e, "could not rename a sandbox record");
                    continue;
                }
            };
            seen.insert(sandbox.id.clone());
            if held.contains(&sandbox.id) {
                continue;
            }
            let record = known.get(&sandbox.id);
            match record.map(|r| (r.status, r.user.clone())) {
                Some((SandboxStatus::Warm, _)) if sandbox.running && self.pool.enabled() => {
                    self.pool.adopt(sandbox).await;
                    done.adopted += 1;
                }
                Some((SandboxStatus::Running, Some(user))) if sandbox.running => {
                    if self.adopt(user, sandbox, record, live, &mut resumed).await {
                        done.adopted += 1;
                    } else {
                        done.removed += 1;
                    }
                }
                Some(_) => {
                    tracing::info!(sandbox = %sandbox.id, "removing a sandbox the store ends");
                    if self.remove_sandbox(&sandbox.id).await {
                        done.removed += 1;
                    }
                }
                None => {
                    tracing::info!(sandbox = %sandbox.id, "removing a sandbox of this instance the store does not know");
                    if self.backend.destroy_sandbox(&sandbox.id).await.is_ok() {
                        done.removed += 1;
                    }
                }
            }
        }
        for id in known.keys().filter(|id| !seen.contains(*id) && !held.contains(*id)) {
            if self.store.end_sandbox(id).await.is_ok() {
                done.records_ended += 1;
            }
        }
        if done != Reconciled::default() {
            tracing::info!(?done, "reconciled the store with the backend");
        }
        (done, resumed)
    }

    /// Records made before sandbox ids were the engine's ids name the container: such a
    /// record takes the container's id.
    async fn renamed(
        &self,
        known: &mut HashMap<String, SandboxRecord>,
        sandbox: Sandbox,
    ) -> Result<Sandbox> {
        if !known.contains_key(&sandbox.id) {
            if let Some(mut record) = known.remove(&sandbox.name) {
                self.store.rename_sandbox(&sandbox.name, &sandbox.id).await?;
                record.id = sandbox.id.clone();
                known.insert(sandbox.id.clone(), record);
            }
        }
        Ok(sandbox)
    }

    /// Gives `user` back their running sandbox that no slot holds (a previous run's): the
    /// sessions of `live` whose shells survived in it are resumed (their ids added to
    /// `resumed`), its other processes are ended, and it waits in its slot for their next
    /// session. When the slot has another sandbox already, this one is removed (a user has one
    /// per slot). `true` when adopted.
    async fn adopt(
        self: &Arc<Self>,
        user: String,
        mut sandbox: Sandbox,
        record: Option<&SandboxRecord>,
        live: &[SessionRecord],
        resumed: &mut HashSet<String>,
    ) -> bool {
        let key = SlotKey {
            user: user.clone(),
            namespace: sandbox.namespace.clone(),
            profile: sandbox.profile.clone(),
        };
        if !self.slots.is_vacant(&key) {
            tracing::warn!(sandbox = %sandbox.id, "the user has another sandbox now; removing this one");
            self.remove_sandbox(&sandbox.id).await;
            return false;
        }
        let surviving = self.surviving_in(&sandbox, live).await;
        let keep: Vec<String> = surviving.iter().map(|r| r.id.clone()).collect();
        if let Err(e) = self.end_previous_processes(&sandbox, &keep).await {
            tracing::warn!(sandbox = %sandbox.id, error = %e, "could not end a previous run's processes");
        }
        sandbox.user = Some(user.clone());
        let id = sandbox.id.clone();
        let life = self.adopted_life(&id, record).await;
        let until = Utc::now() + self.adopted_linger();
        if !self.slots.adopt_if_empty(key.clone(), sandbox.clone(), life, until) {
            return false;
        }
        self.sandboxes_live.fetch_add(1, Ordering::AcqRel);
        let shown = crate::audit::escape_for_log(&user);
        tracing::info!(sandbox = %id, user = %shown, "adopted sandbox");
        for record in surviving {
            let session = record.id.clone();
            if self.resume(&key, &sandbox, record).await {
                resumed.insert(session);
            }
        }
        true
    }

    /// Ends what a previous run left running in `sandbox` but the shells of the sessions
    /// `keep` (tmux servers that survived, resumed).
    async fn end_previous_processes(&self, sandbox: &Sandbox, keep: &[String]) -> Result<()> {
        match self.backend.persistent_shells() {
            Some(shells) => shells.end_stray_except(sandbox, keep).await,
            None => self.backend.end_stray_processes(sandbox).await,
        }
    }

    /// The running sandbox the store gives `key` that no slot holds (a previous run's, not
    /// adopted yet because the backend was down when it was tried), for a creation in `key`'s
    /// slot to use instead of making a new one: the user keeps their files.
    pub(super) async fn previous_sandbox(&self, key: &SlotKey) -> Result<Option<(Sandbox, Life)>> {
        let records = self.store.live_sandboxes(self.backend.kind()).await?;
        let (held, _) = self.slots.held();
        let Some(record) = records.into_iter().find(|r| {
            r.status == SandboxStatus::Running
                && r.user.as_deref() == Some(key.user.as_str())
                && r.namespace == key.namespace
                && r.profile == key.profile
                && !held.contains(&r.id)
        }) else {
            return Ok(None);
        };
        let existing = self.backend.list_sandboxes().await?;
        let Some(mut sandbox) = existing.into_iter().find(|s| s.id == record.id && s.running)
        else {
            // Gone: the reconcile ends the record.
            return Ok(None);
        };
        self.end_previous_processes(&sandbox, &[]).await.map_err(|e| {
            Error::BackendUnavailable(format!(
                "ending a previous run's processes in sandbox {}: {e}",
                sandbox.id
            ))
        })?;
        sandbox.user = Some(key.user.clone());
        let life = self.adopted_life(&sandbox.id, Some(&record)).await;
        tracing::info!(sandbox = %sandbox.id, "adopted a previous run's sandbox for a new session");
        Ok(Some((sandbox, life)))
    }
}
