//! Waiting for a new pod to run: a watch on that one pod (from the resourceVersion its create
//! returned, opened again if it ends), each state judged by [`judge`]: running, still
//! starting (and in which phase, for the user), or failed with a reason a person can act on
//! (an image that cannot be pulled, a pod that ended or was deleted). A pod the scheduler
//! cannot place keeps waiting (a node may come), and says why when the time is up.

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, WatchEvent, WatchParams};

use super::client::{within, CALL_TIMEOUT};
use crate::error::{Error, Result};
use crate::sandbox::StartPhase;

/// Waiting reasons of a container that will not start without someone changing something.
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// A pod's state, as far as starting it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Running,
    Starting { phase: StartPhase, detail: Option<String> },
    Failed(String),
}

/// Judges one state of pod `pod`.
pub fn judge(pod: &Pod) -> Verdict {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    if pod.metadata.deletion_timestamp.is_some() {
        return Verdict::Failed(format!("pod {name} is being deleted"));
    }
    let Some(status) = pod.status.as_ref() else {
        return Verdict::Starting { phase: StartPhase::Scheduling, detail: None };
    };
    match status.phase.as_deref() {
        Some("Failed") | Some("Succeeded") => {
            let why = [status.reason.as_deref(), status.message.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            return Verdict::Failed(format!("pod {name} ended ({why})"));
        }
        _ => {}
    }
    for container in status.container_statuses.iter().flatten() {
        let state = container.state.as_ref();
        if state.and_then(|s| s.running.as_ref()).is_some()
            && status.phase.as_deref() == Some("Running")
        {
            return Verdict::Running;
        }
        if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
            return Verdict::Failed(format!(
                "the sandbox container of pod {name} ended ({}, exit code {})",
                terminated.reason.as_deref().unwrap_or("unknown"),
                terminated.exit_code
            ));
        }
        if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.as_deref().unwrap_or_default();
            let message = waiting.message.clone();
            if FATAL_WAITING.contains(&reason) {
                return Verdict::Failed(format!(
                    "the image {} could not be pulled ({reason}{})",
                    container.image,
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                ));
            }
            return Verdict::Starting {
                phase: StartPhase::Starting,
                detail: Some(reason.to_string()),
            };
        }
    }
    let scheduled = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled");
    match scheduled {
        Some(c) if c.status == "True" => {
            Verdict::Starting { phase: StartPhase::PullingImage, detail: None }
        }
        Some(c) => Verdict::Starting {
            phase: StartPhase::Scheduling,
            detail: c
                .message
                .clone()
                .map(|m| format!("{}: {m}", c.reason.as_deref().unwrap_or("Unschedulable"))),
        },
        None => Verdict::Starting { phase: StartPhase::Scheduling, detail: None },
    }
}

/// Waits until `pod` (as created) runs, reporting each new phase to `progress`; fails with
/// the reason when it cannot start. Unbounded: the caller sets the deadline (and gets the
/// last state from `last` when it passes).
pub async fn until_running(
    pods: &Api<Pod>,
    created: Pod,
    progress: &(dyn Fn(StartPhase, Option<String>) + Send + Sync),
    last: &std::sync::Mutex<Option<String>>,
) -> Result<Pod> {
    let name = created.metadata.name.clone().unwrap_or_default();
    let mut shown: Option<(StartPhase, Option<String>)> = None;
    let mut judge_and_report = |pod: &Pod| -> Option<Result<()>> {
        match judge(pod) {
            Verdict::Running => Some(Ok(())),
            Verdict::Failed(why) => Some(Err(Error::BackendUnavailable(why))),
            Verdict::Starting { phase, detail } => {
                let now = Some((phase, detail.clone()));
                if shown != now {
                    progress(phase, detail.clone());
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                        "{}{}",
                        phase.as_str(),
                        detail.map(|d| format!(" ({d})")).unwrap_or_default()
                    ));
                    shown = now;
                }
                None
            }
        }
    };
    let mut pod = created;
    loop {
        if let Some(done) = judge_and_report(&pod) {
            return done.map(|()| pod);
        }
        let version = pod.metadata.resource_version.clone().unwrap_or_default();
        let params = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(60);
        match within("watching the new pod", CALL_TIMEOUT, pods.watch(&params, &version)).await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(WatchEvent::Added(next)) | Ok(WatchEvent::Modified(next)) => {
                            if let Some(done) = judge_and_report(&next) {
                                return done.map(|()| next);
                            }
                        }
                        Ok(WatchEvent::Deleted(_)) => return Err(deleted(&name)),
                        Ok(WatchEvent::Bookmark(_)) => {}
                        Ok(WatchEvent::Error(status)) => {
                            tracing::debug!(pod = %name, message = %status.message, "the watch of a new pod ended; opening it again");
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(pod = %name, error = %e, "the watch of a new pod broke; opening it again");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(pod = %name, error = ?e, "watching a new pod failed; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        // Read it again: a watch from its version now misses nothing.
        pod = loop {
            match within("reading the new pod", CALL_TIMEOUT, pods.get_opt(&name)).await {
                Ok(Some(pod)) => break pod,
                Ok(None) => return Err(deleted(&name)),
                Err(e) => {
                    tracing::debug!(pod = %name, error = ?e, "reading a new pod failed; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
    }
}

fn deleted(name: &str) -> Error {
    Error::BackendUnavailable(format!("pod {name} was deleted before it ran"))
}
