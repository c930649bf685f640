//! The ends of a pod: eviction and exceeded deadlines (phase Failed, processes killed), and
//! termination after a graceful DELETE as `01-restricted-pod-watch-events.jsonl` shows it
//! (MODIFIED with deletionTimestamp -> containers stopped -> grace 0 -> DELETED), or at once.
//!
//! Invariant: a pod's sandbox is taken out of its runtime before it is killed, so it is killed
//! exactly once, and before the pod's terminal status is written.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::events::{PodEvent, Severity};
use super::images::kubelet_event;
use super::lifecycle::{event, first_container, update, PodKey};
use super::pod_status::{self, container_names};
use super::sandbox::Sandbox;
use super::state::{Shared, State};
use super::store::Kind;

/// Takes the pod's sandbox out of its runtime (so it is killed exactly once).
pub fn take_sandbox(state: &mut State, uid: &str) -> Option<Arc<Sandbox>> {
    state.pods.get_mut(uid).and_then(|r| r.sandbox.take())
}

/// Ends a running pod as the kubelet does for eviction or an exceeded deadline: processes
/// killed, phase Failed with `reason` and `message`, Warning event, lifecycle stopped.
pub fn fail(shared: &Shared, key: &PodKey, reason: &str, message: &str) -> bool {
    let sandbox = {
        let mut state = shared.lock();
        if let Some(runtime) = state.pods.get(&key.uid) {
            runtime.stop.cancel();
        }
        take_sandbox(&mut state, &key.uid)
    };
    if let Some(sandbox) = sandbox {
        sandbox.destroy();
    }
    update(shared, key, |pod, state| {
        let snapshot = pod.clone();
        event(
            state,
            shared,
            &snapshot,
            PodEvent::kubelet(Severity::Warning, reason, message, None),
        );
        for name in container_names(&snapshot) {
            event(
                state,
                shared,
                &snapshot,
                PodEvent::kubelet(
                    Severity::Normal,
                    "Killing",
                    &format!("Stopping container {name}"),
                    Some(&name),
                ),
            );
        }
        pod_status::fail(&mut pod["status"], reason, message);
    })
    .is_some()
}

/// After a graceful DELETE: containers stopped, then the final grace-0 update and DELETED.
pub async fn terminate(shared: Arc<Shared>, key: PodKey, grace: u64) {
    let wait = shared.lock().delays.terminate.min(Duration::from_secs(grace));
    let has_sandbox = shared.lock().pods.get(&key.uid).is_some_and(|r| r.sandbox.is_some());
    if has_sandbox {
        let _ = kubelet_event(
            &shared,
            &key,
            Severity::Normal,
            "Killing",
            &format!("Stopping container {}", first_name(&shared, &key)),
            &first_name(&shared, &key),
        );
    }
    tokio::time::sleep(wait).await;
    let sandbox = take_sandbox(&mut shared.lock(), &key.uid);
    if let Some(sandbox) = sandbox {
        let _ = tokio::task::spawn_blocking(move || sandbox.destroy()).await;
        update(&shared, &key, |pod, _| {
            let names = container_names(pod);
            let status = &mut pod["status"];
            pod_status::set_not_ready(status, &names);
            // Stopped well within the grace period: as a container that exits on SIGTERM.
            let containers = pod_status::terminated(status, 0, "Completed");
            status["containerStatuses"] = containers;
        });
    }
    // The kubelet confirms with grace 0, which moves deletionTimestamp back by the old grace.
    update(&shared, &key, |pod, _| {
        let meta = &mut pod["metadata"];
        let old_grace = meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
        if let Some(ts) = meta["deletionTimestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            let moved = ts - chrono::Duration::seconds(old_grace);
            meta["deletionTimestamp"] =
                json!(moved.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        meta["deletionGracePeriodSeconds"] = json!(0);
    });
    remove(&shared, &key);
}

fn first_name(shared: &Shared, key: &PodKey) -> String {
    let state = shared.lock();
    state
        .store
        .get(Kind::Pod, &key.namespace, &key.name)
        .and_then(first_container)
        .unwrap_or_default()
}

/// Removes the pod object (DELETED) and its runtime, killing what is left of its sandbox.
pub fn remove(shared: &Shared, key: &PodKey) {
    let runtime = {
        let mut state = shared.lock();
        let same = state
            .store
            .get(Kind::Pod, &key.namespace, &key.name)
            .is_some_and(|p| p["metadata"]["uid"] == key.uid.as_str());
        if same {
            state.store.remove(Kind::Pod, &key.namespace, &key.name);
        }
        state.pods.remove(&key.uid)
    };
    shared.wake.notify_waiters();
    let sandbox = runtime.and_then(|runtime| {
        runtime.stop.cancel();
        runtime.sandbox
    });
    // Also a sandbox that a cancelled start left half made (its holder dies with the task).
    let dir = shared.fixed.base.join("pods").join(&key.uid);
    shared.rt.spawn_blocking(move || {
        if let Some(sandbox) = sandbox {
            sandbox.destroy();
        }
        let _ = std::fs::remove_dir_all(dir);
    });
}
