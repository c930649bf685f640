//! A user's sandboxes as they see them: listed (`GET /api/v1/sandboxes`), ended on request
//! (`DELETE /api/v1/sandboxes/{id}`), kept after their last session for
//! `sandboxes.idle_timeout` (a new tab within that time lands in the same sandbox with its
//! files), given a lifetime that survives restarts, and removed at a graceful stop under
//! `server.on_shutdown = "delete"`.
//!
//! Invariant: another user's sandbox is reported as not found, never as forbidden.

use std::sync::Arc;

use chrono::Utc;

use super::slots::{AfterLast, Life, SandboxView};
use super::{Caller, Session, SessionRegistry};
use crate::error::{Error, Result};
use crate::store::SandboxRecord;

/// A user's sandbox and how many sessions run in it.
#[derive(Debug, Clone)]
pub struct SandboxSummary {
    pub view: SandboxView,
    pub sessions: usize,
}

impl SessionRegistry {
    /// What becomes of a sandbox when its last session ends: it lingers for
    /// `sandboxes.idle_timeout`, or (`0s`) goes with it.
    pub(super) fn after_last(&self) -> AfterLast {
        match self.sandboxes.idle_timeout.0 {
            d if d.is_zero() => AfterLast::Remove,
            d => AfterLast::Linger(d),
        }
    }

    /// `sandboxes.idle_timeout`.
    pub fn sandbox_idle_timeout(&self) -> std::time::Duration {
        self.sandboxes.idle_timeout.0
    }

    /// How long a sandbox adopted at start waits for its user's next session:
    /// `sandboxes.idle_timeout`, or `sessions.idle_timeout` when that is `0s` (a sandbox kept
    /// over a restart is never removed the moment kterm comes back).
    pub(super) fn adopted_linger(&self) -> chrono::Duration {
        let linger = match self.sandboxes.idle_timeout.0 {
            d if d.is_zero() => self.config.idle_timeout.0,
            d => d,
        };
        chrono::Duration::from_std(linger).unwrap_or(chrono::Duration::minutes(15))
    }

    /// The life of an adopted sandbox as the store recorded it; a record without a deadline
    /// (made before deadlines were kept) gets one from now, and it is recorded.
    pub(super) async fn adopted_life(&self, id: &str, record: Option<&SandboxRecord>) -> Life {
        if let Some(expires_at) = record.and_then(|r| r.expires_at) {
            return Life { since: expires_at - self.lifetime(), expires_at };
        }
        let since = Utc::now();
        let life = Life { since, expires_at: since + self.lifetime() };
        if let Err(e) = self.store.set_sandbox_expiry(id, life.expires_at).await {
            tracing::warn!(sandbox = id, error = %e, "could not record a sandbox's deadline");
        }
        life
    }

    /// The caller's sandboxes (everyone's for admins), with their sessions counted.
    pub fn list_sandboxes(&self, caller: &Caller) -> Vec<SandboxSummary> {
        let live = self.live_sessions();
        let mut list: Vec<SandboxSummary> = self
            .slots
            .list()
            .into_iter()
            .filter(|view| caller.may_see(&view.key.user))
            .map(|view| {
                let sessions = live.iter().filter(|s| s.info.sandbox_id == view.id).count();
                SandboxSummary { view, sessions }
            })
            .collect();
        list.sort_by(|a, b| (a.view.created_at, &a.view.id).cmp(&(b.view.created_at, &b.view.id)));
        list
    }

    /// Ends sandbox `id` now: it leaves its slot (a new tab makes a new one), its sessions end
    /// with the reason `sandbox_deleted`, then it is removed with its workspace (unless that
    /// is a volume). Another user's sandbox is not found.
    pub async fn delete_sandbox(&self, caller: &Caller, id: &str) -> Result<()> {
        let owned =
            self.slots.list().into_iter().any(|v| v.id == id && caller.may_see(&v.key.user));
        if !owned {
            return Err(Error::NotFound(format!("sandbox {id} not found")));
        }
        let Some((_, unused)) = self.slots.take(id) else {
            // Removed meanwhile (its last session ended, or another request): done.
            return Ok(());
        };
        let sessions: Vec<Arc<Session>> =
            self.live_sessions().into_iter().filter(|s| s.info.sandbox_id == id).collect();
        let ends = sessions.iter().map(|s| self.end(s, "sandbox_deleted"));
        futures_util::future::join_all(ends).await;
        tracing::info!(sandbox = id, user = %crate::audit::escape_for_log(&caller.user), "sandbox ended on request");
        self.remove_unused(unused).await;
        Ok(())
    }

    /// Removes every sandbox of this instance, the warm ones too (`server.on_shutdown =
    /// "delete"`), after the sessions have ended.
    pub(super) async fn remove_all_sandboxes(&self) {
        for view in self.slots.list() {
            if let Some((_, unused)) = self.slots.take(&view.id) {
                self.remove_unused(unused).await;
            }
        }
        match self.backend.list_sandboxes().await {
            Ok(left) => {
                for sandbox in left {
                    if let Err(e) = self.backend.destroy_sandbox(&sandbox.id).await {
                        tracing::warn!(sandbox = %sandbox.id, error = %e, "could not remove a sandbox at shutdown");
                    }
                    let _ = self.store.end_sandbox(&sandbox.id).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list sandboxes to remove them at shutdown")
            }
        }
    }
}
