//! Ends of sessions the store could not record (its disk full or read-only): kept here and
//! written again on every tick of the background loop until the store takes them, and shown in
//! place of the store's stale `running` meanwhile. So a session that ended never reads
//! `running` while the disk is full, and its end reaches the store when the disk recovers.
//! (A restart before that records it as ended with `server_restart`.)

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{SessionRecord, SessionStatus, Store};

#[derive(Debug, Clone)]
struct End {
    status: SessionStatus,
    exit_code: Option<i32>,
    reason: String,
}

#[derive(Default)]
pub(super) struct UnrecordedEnds {
    ends: Mutex<HashMap<String, End>>,
}

impl UnrecordedEnds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, End>> {
        self.ends.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records session `id`'s end in the store, or keeps it for [`UnrecordedEnds::retry`].
    pub async fn record(
        &self,
        store: &Store,
        id: &str,
        (status, exit_code, reason): (SessionStatus, Option<i32>, &str),
    ) {
        if let Err(e) = store.end_session(id, status, exit_code, reason).await {
            tracing::error!(session = %id, error = %e, "could not record the end of a session; kterm retries");
            let end = End { status, exit_code, reason: reason.to_string() };
            self.lock().insert(id.to_string(), end);
        }
    }

    /// Writes the kept ends again; those the store takes are forgotten.
    pub async fn retry(&self, store: &Store) {
        let pending: Vec<(String, End)> =
            self.lock().iter().map(|(id, end)| (id.clone(), end.clone())).collect();
        for (id, end) in pending {
            match store.end_session(&id, end.status, end.exit_code, &end.reason).await {
                Ok(()) => {
                    self.lock().remove(&id);
                    tracing::info!(session = %id, "recorded the end of a session after all");
                }
                // The store still cannot write: the next tick tries again.
                Err(_) => return,
            }
        }
    }

    /// Shows a kept end in place of the store's stale live status.
    pub fn overlay(&self, record: &mut SessionRecord) {
        if !record.status.is_live() {
            return;
        }
        if let Some(end) = self.lock().get(&record.id) {
            record.status = end.status;
            record.exit_code = end.exit_code;
            record.end_reason = Some(end.reason.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}
