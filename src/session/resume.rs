//! Sessions whose shells outlive kterm (tmux in the sandbox, `sessions.persistence`): at a
//! graceful stop they are left running (those not in tmux end with `server_shutdown`); at the
//! next start, in each adopted sandbox, the sessions whose tmux servers still answer are
//! attached again and registered as they were (same id, owner, context and deadline); the
//! store's other live sessions end with `server_restart`.
//!
//! Invariant: once the registry has stopped, an ending session records nothing: a shell kept
//! for the next run is not marked ended because this run's connection to it went away.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::slots::SlotKey;
use super::{Lifecycle, Session, SessionInfo, SessionRegistry};
use crate::sandbox::{Sandbox, TtyProcess};
use crate::store::{SessionRecord, SessionStatus};

/// Whether a launched session is new (recorded from its start) or resumed after a restart.
pub(super) enum Recording {
    New,
    Resumed,
}

impl SessionRegistry {
    /// Registers a started process as session `info` and runs it until it ends; `recorded`:
    /// whether its output is recorded (`[recording]`; a resumed session's is not, its file
    /// belongs to the run that started it).
    pub(super) fn launch(
        self: &Arc<Self>,
        info: SessionInfo,
        process: TtyProcess,
        recording: Recording,
    ) -> Arc<Session> {
        let recorder = match (recording, &self.recordings) {
            (Recording::New, Some(recordings)) => {
                recordings.start(&info.id, info.size.0, info.size.1)
            }
            _ => None,
        };
        let (session, pump) = Session::start(
            info,
            process,
            self.config.scrollback.0 as usize,
            Lifecycle::from_config(&self.config),
            self.metrics.clone(),
            recorder,
        );
        Self::lock(&self.sessions).insert(session.info.id.clone(), session.clone());
        self.metrics.sessions_active.inc();
        let registry = self.clone();
        let ended = session.clone();
        tokio::spawn(async move {
            let code = pump.await;
            registry.finish(ended, code).await;
        });
        session
    }

    /// The sessions of the store, live in `sandbox` (adopted at start), whose shells survived:
    /// their ids, for the stray processes' cleanup to spare.
    pub(super) async fn surviving_in(
        &self,
        sandbox: &Sandbox,
        live: &[SessionRecord],
    ) -> Vec<SessionRecord> {
        let Some(shells) = self.backend.persistent_shells() else { return Vec::new() };
        let alive: HashSet<String> = match shells.surviving(sandbox).await {
            Ok(ids) => ids.into_iter().collect(),
            Err(e) => {
                tracing::warn!(sandbox = %sandbox.id, error = %e, "cannot list the shells that survived");
                return Vec::new();
            }
        };
        live.iter()
            .filter(|r| r.sandbox_id == sandbox.id && alive.contains(&r.id))
            .cloned()
            .collect()
    }

    /// Attaches again to `record`'s shell in the adopted `sandbox` of slot `key`; `true` when
    /// it is a session again.
    pub(super) async fn resume(
        self: &Arc<Self>,
        key: &SlotKey,
        sandbox: &Sandbox,
        record: SessionRecord,
    ) -> bool {
        let Some(shells) = self.backend.persistent_shells() else { return false };
        let (cols, rows) = (80, 24);
        let process = match shells.reattach(sandbox, &record.id, cols, rows).await {
            Ok(process) => process,
            Err(e) => {
                tracing::warn!(session = %record.id, error = %e, "could not attach to a surviving shell");
                return false;
            }
        };
        self.slots.reserve(key);
        *Self::lock(&self.live_per_user).entry(record.user.clone()).or_default() += 1;
        let info = SessionInfo {
            id: record.id.clone(),
            user: record.user.clone(),
            namespace: record.namespace.clone(),
            profile: record.profile.clone(),
            sandbox_id: sandbox.id.clone(),
            context: record.context.clone(),
            created_at: record.created_at,
            expires_at: self.slots.expires_at(key, self.lifetime()),
            size: (cols, rows),
        };
        self.launch(info, process, Recording::Resumed);
        let user = crate::audit::escape_for_log(&record.user);
        tracing::info!(session = %record.id, user, sandbox = %sandbox.id, "resumed a session whose shell survived the restart");
        true
    }

    /// Ends with `server_restart` the store's live sessions that were not resumed.
    pub(super) async fn end_unresumed(&self, live: &[SessionRecord], resumed: &HashSet<String>) {
        let mut ended = 0;
        for record in live.iter().filter(|r| !resumed.contains(&r.id)) {
            let result = self
                .store
                .end_session(&record.id, SessionStatus::Terminated, None, "server_restart")
                .await;
            match result {
                Ok(()) => ended += 1,
                Err(e) => {
                    tracing::warn!(session = %record.id, error = %e, "could not record the end of a session")
                }
            }
        }
        if ended > 0 {
            tracing::info!(
                sessions = ended,
                "ended the sessions of the previous run whose shells did not survive"
            );
        }
    }

    /// At a graceful stop that keeps the sandboxes: the sessions whose shells run in tmux stay
    /// (for the next start to attach again); the others end with `server_shutdown`. Then the
    /// registry stops recording ends.
    pub(super) async fn shutdown_keeping_shells(&self) {
        let live = self.live_sessions();
        let mut by_sandbox: HashMap<String, (SlotKey, Vec<Arc<Session>>)> = HashMap::new();
        for session in live {
            let entry = by_sandbox
                .entry(session.info.sandbox_id.clone())
                .or_insert_with(|| (session.info.slot_key(), Vec::new()));
            entry.1.push(session);
        }
        let mut ending = Vec::new();
        for (id, (key, sessions)) in by_sandbox {
            let alive: HashSet<String> =
                match (self.slots.ready(&key), self.backend.persistent_shells()) {
                    (Some(sandbox), Some(shells)) if sandbox.id == id => {
                        shells.surviving(&sandbox).await.unwrap_or_default().into_iter().collect()
                    }
                    _ => HashSet::new(),
                };
            ending.extend(sessions.into_iter().filter(|s| !alive.contains(&s.info.id)));
        }
        let ends = ending.iter().map(|s| self.end(s, "server_shutdown"));
        futures_util::future::join_all(ends).await;
        self.stopped.store(true, Ordering::Release);
    }
}
