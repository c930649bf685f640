//! Sessions whose sandbox is still starting (a cold pod being scheduled, its image pulled):
//! `POST /api/v1/sessions` answers `pending` as soon as the backend reports such a phase,
//! and the creation goes on in its task. Clients that attach meanwhile follow the phases
//! (the SPEC's `status` messages) until the shell is there or the creation failed.
//!
//! Invariants:
//! - A creation announces itself as pending at most once, and only after its pending record
//!   is in the store; from then on it ends by recording the session as running, failed or
//!   (deleted) terminated, and then by `finish`, which wakes every follower.
//! - A pending session is in the registry's `pending` map from its creation's start until
//!   it finished; a follower that finds it there sees its end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::{Caller, SessionRegistry, SlotKey};
use crate::error::{Error, Result};
use crate::sandbox::{StartPhase, StartProgress};

/// Where a creation is, for those who follow it.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingState {
    /// Started; nothing reported yet.
    Creating,
    /// The backend says where the sandbox's start is.
    Phase { phase: StartPhase, detail: Option<String> },
    /// The session runs: attach to it.
    Ready,
    /// The creation failed or was called off; `reason` says why.
    Failed { reason: String },
}

impl PendingState {
    fn is_done(&self) -> bool {
        matches!(self, PendingState::Ready | PendingState::Failed { .. })
    }
}

/// A session being created.
pub struct PendingSession {
    pub id: String,
    pub user: String,
    /// The slot whose sandbox it waits for.
    key: SlotKey,
    state: watch::Sender<PendingState>,
    /// Set once its pending record is in the store (and `POST` answered with it).
    announced: AtomicBool,
    /// Set by a delete: the creation gives up.
    cancel: watch::Sender<bool>,
}

impl PendingSession {
    pub(super) fn new(id: &str, key: &SlotKey) -> Arc<PendingSession> {
        Arc::new(PendingSession {
            id: id.to_string(),
            user: key.user.clone(),
            key: key.clone(),
            state: watch::channel(PendingState::Creating).0,
            announced: AtomicBool::new(false),
            cancel: watch::channel(false).0,
        })
    }

    /// The state now and each change after it.
    pub fn follow(&self) -> watch::Receiver<PendingState> {
        self.state.subscribe()
    }

    /// Where the backend's reports about this creation's sandbox go.
    pub(super) fn progress(self: &Arc<Self>) -> StartProgress {
        let pending = Arc::downgrade(self);
        StartProgress::new(move |phase, detail| {
            if let Some(pending) = pending.upgrade() {
                pending.report(phase, detail);
            }
        })
    }

    fn report(&self, phase: StartPhase, detail: Option<String>) {
        let next = PendingState::Phase { phase, detail };
        self.state.send_if_modified(|state| {
            let change = !state.is_done() && *state != next;
            if change {
                *state = next.clone();
            }
            change
        });
    }

    /// Waits until the backend reported a phase (the start is a slow one).
    pub(super) async fn reported(&self) {
        let mut state = self.follow();
        let _ = state.wait_for(|s| matches!(s, PendingState::Phase { .. })).await;
    }

    pub(super) fn mark_announced(&self) {
        self.announced.store(true, Ordering::Release);
    }

    pub(super) fn announced(&self) -> bool {
        self.announced.load(Ordering::Acquire)
    }

    /// Waits until a delete called the creation off.
    pub(super) async fn cancelled(&self) {
        let mut cancel = self.cancel.subscribe();
        let _ = cancel.wait_for(|c| *c).await;
    }

    pub(super) fn finish(&self, end: PendingState) {
        self.state.send_replace(end);
    }
}

/// How long a delete of a pending session waits for its creation to give up.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl SessionRegistry {
    /// The session `id` that is being created, if `caller` may see it.
    pub fn pending(&self, caller: &Caller, id: &str) -> Option<Arc<PendingSession>> {
        Self::lock(&self.pending)
            .get(id)
            .filter(|p| p.announced() && caller.may_see(&p.user))
            .cloned()
    }

    /// The live session `id`; one that is still being created is waited for (its creation
    /// is bounded by `sessions.create_timeout`) and fails with its reason.
    pub async fn live_when_ready(&self, caller: &Caller, id: &str) -> Result<Arc<super::Session>> {
        if let Some(pending) = self.pending(caller, id) {
            let mut state = pending.follow();
            let end = state.wait_for(PendingState::is_done).await.map(|s| s.clone());
            if let Ok(PendingState::Failed { reason }) = end {
                return Err(Error::Conflict(format!("session {id} could not start: {reason}")));
            }
        }
        self.live(caller, id)
    }

    /// Calls off the creation of pending session `id` and waits until it gave up.
    pub(super) async fn cancel_pending(&self, pending: &PendingSession) -> Result<()> {
        let mut state = pending.follow();
        pending.cancel.send_replace(true);
        let done =
            tokio::time::timeout(CANCEL_WAIT, state.wait_for(PendingState::is_done)).await.is_ok();
        match done {
            true => {
                self.call_off_unwanted(&pending.key);
                Ok(())
            }
            false => Err(Error::BackendUnavailable(format!(
                "the creation of session {} did not stop within {}s; kterm keeps trying",
                pending.id,
                CANCEL_WAIT.as_secs()
            ))),
        }
    }
}
