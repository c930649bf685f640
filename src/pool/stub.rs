//! A pre-started shell that is watched while it waits: its output is read all along (a stub
//! prints nothing once ready), so a stub that died — its sandbox removed, its engine gone — is
//! known at once, not only when someone claims it and the first write fails.
//!
//! Invariants:
//! - While watched, the stub's process belongs to the watcher task; [`WatchedStub::hand_over`]
//!   gets it back intact (reads are cancel-safe: no byte is lost), or `None` when it died.
//! - A stub dropped without being handed over or abandoned is killed, so no idle stub is left
//!   behind in a sandbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sandbox::TtyProcess;

enum Release {
    /// Give the process back.
    HandOver,
    /// Let it go without a word: its sandbox is about to be removed anyway.
    Abandon,
}

pub struct WatchedStub {
    release: Option<oneshot::Sender<Release>>,
    task: Option<JoinHandle<Option<TtyProcess>>>,
    dead: Arc<AtomicBool>,
}

impl WatchedStub {
    /// Watches a started (ready) stub on the current runtime.
    pub fn watch(process: TtyProcess) -> WatchedStub {
        let (release, mut released) = oneshot::channel();
        let dead = Arc::new(AtomicBool::new(false));
        let died = dead.clone();
        let task = tokio::spawn(async move {
            let TtyProcess { mut output, input, control, host_pty } = process;
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    release = &mut released => match release {
                        Ok(Release::HandOver) => return Some(TtyProcess { output, input, control, host_pty }),
                        Ok(Release::Abandon) => return None,
                        Err(_) => {
                            control.kill().await;
                            return None;
                        }
                    },
                    read = output.read(&mut buf) => match read {
                        Ok(0) | Err(_) => {
                            died.store(true, Ordering::Release);
                            return None;
                        }
                        Ok(n) => tracing::debug!(bytes = n, "a waiting stub printed something; ignored"),
                    },
                }
            }
        });
        WatchedStub { release: Some(release), task: Some(task), dead }
    }

    /// Whether the stub is known to have died.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire) || self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The stub's process, if it is still alive.
    pub async fn hand_over(mut self) -> Option<TtyProcess> {
        self.finish(Release::HandOver).await.filter(|p| !p.control.has_ended())
    }

    /// Stops watching without ending the process (its sandbox is being removed).
    pub async fn abandon(mut self) {
        let _ = self.finish(Release::Abandon).await;
    }

    async fn finish(&mut self, how: Release) -> Option<TtyProcess> {
        if let Some(release) = self.release.take() {
            let _ = release.send(how);
        }
        self.task.take()?.await.ok().flatten()
    }
}

impl Drop for WatchedStub {
    fn drop(&mut self) {
        // Dropping `release` unsent makes the watcher kill the stub.
        self.release.take();
    }
}
