//! The fake scheduler and kubelet: each pod's life from Pending to Running on its own task, with
//! the watch events, statuses and Events a v1.24 node produces (scheduling, then the image in
//! [`super::images`], container start), and `activeDeadlineSeconds`; the ends of a pod are in
//! [`super::termination`].
//!
//! Invariants: every status write goes through [`update`], which only touches the pod with the
//! task's UID, so a re-created pod of the same name is never written by an old task; a pod's
//! sandbox is killed before its terminal status is written.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::events::{self, PodEvent, Severity};
use super::pod_status::{self, container_names};
use super::sandbox::{self, Sandbox};
use super::state::{now, Shared, State};
use super::store::Kind;

/// Which pod a task is about.
#[derive(Clone, Debug)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodKey {
    pub fn of(pod: &Value) -> PodKey {
        let text = |k: &str| pod["metadata"][k].as_str().unwrap_or_default().to_string();
        PodKey { namespace: text("namespace"), name: text("name"), uid: text("uid") }
    }
}

/// Applies `change` to the pod (if it is still the same pod) and commits it; the closure gets
/// the state too (for events). `None` when the pod is gone.
pub fn update(
    shared: &Shared,
    key: &PodKey,
    change: impl FnOnce(&mut Value, &mut State),
) -> Option<Value> {
    let mut state = shared.lock();
    let mut pod = state.store.get(Kind::Pod, &key.namespace, &key.name)?.clone();
    if pod["metadata"]["uid"] != key.uid.as_str() {
        return None;
    }
    change(&mut pod, &mut state);
    Some(state.store.put(Kind::Pod, pod))
}

pub fn event(state: &mut State, shared: &Shared, pod: &Value, event: PodEvent<'_>) {
    events::record(state, &shared.fixed.node_name, pod, event);
}

/// Runs the pod's life until it is Running (or stuck in a failure), then enforces its deadline.
pub async fn run(shared: Arc<Shared>, key: PodKey) {
    if start(&shared, &key).await.is_some() {
        let deadline = {
            let state = shared.lock();
            state
                .store
                .get(Kind::Pod, &key.namespace, &key.name)
                .and_then(|p| p["spec"]["activeDeadlineSeconds"].as_u64())
        };
        if let Some(seconds) = deadline {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            super::termination::fail(
                &shared,
                &key,
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
            );
        }
    }
}

async fn start(shared: &Arc<Shared>, key: &PodKey) -> Option<()> {
    let delays = shared.lock().delays;
    tokio::time::sleep(delays.schedule).await;
    schedule(shared, key).await?;
    let kubelet = shared.lock().delays.kubelet;
    tokio::time::sleep(kubelet).await;
    let mut ip = String::new();
    let pod = update(shared, key, |pod, state| {
        ip = format!("10.244.0.{}", state.next_pod_ip);
        state.next_pod_ip = state.next_pod_ip % 250 + 1;
        let names = container_names(pod);
        let waiting = pod_status::waiting(pod, "ContainerCreating", None);
        let status = &mut pod["status"];
        pod_status::set_condition(status, "Initialized", true, None, None);
        pod_status::set_not_ready(status, &names);
        status["hostIP"] = json!("192.0.2.2");
        status["startTime"] = json!(now());
        status["containerStatuses"] = waiting;
    })?;
    if let Some(message) = runs_as_root(&pod, shared) {
        let reason = "CreateContainerConfigError";
        update(shared, key, |pod, state| {
            pod["status"]["containerStatuses"] = pod_status::waiting(pod, reason, Some(&message));
            let snapshot = pod.clone();
            event(
                state,
                shared,
                &snapshot,
                PodEvent::kubelet(
                    Severity::Warning,
                    "Failed",
                    &format!("Error: {message}"),
                    first_container(&snapshot).as_deref(),
                ),
            );
        })?;
        return None;
    }
    for container in pod["spec"]["containers"].as_array().cloned().unwrap_or_default() {
        super::images::pull(shared, key, &container, &ip).await?;
    }
    let start_delay = shared.lock().delays.start;
    tokio::time::sleep(start_delay).await;
    let plan = sandbox::plan(&pod, &shared.fixed.base.clone(), &shared.fixed.image, &ip);
    let sandbox = match Sandbox::start(plan).await {
        Ok(sandbox) => Arc::new(sandbox),
        Err(message) => {
            update(shared, key, |pod, state| {
                pod["status"]["containerStatuses"] =
                    pod_status::waiting(pod, "RunContainerError", Some(&message));
                let snapshot = pod.clone();
                event(
                    state,
                    shared,
                    &snapshot,
                    PodEvent::kubelet(
                        Severity::Warning,
                        "Failed",
                        &format!("Error: {message}"),
                        first_container(&snapshot).as_deref(),
                    ),
                );
            });
            return None;
        }
    };
    let running = update(shared, key, |pod, state| {
        let Some(runtime) = state.pods.get_mut(&key.uid) else { return };
        runtime.sandbox = Some(sandbox.clone());
        let snapshot = pod.clone();
        for name in container_names(&snapshot) {
            event(
                state,
                shared,
                &snapshot,
                PodEvent::kubelet(
                    Severity::Normal,
                    "Created",
                    &format!("Created container {name}"),
                    Some(&name),
                ),
            );
            event(
                state,
                shared,
                &snapshot,
                PodEvent::kubelet(
                    Severity::Normal,
                    "Started",
                    &format!("Started container {name}"),
                    Some(&name),
                ),
            );
        }
        let status = &mut pod["status"];
        status["phase"] = json!("Running");
        pod_status::set_condition(status, "Ready", true, None, None);
        pod_status::set_condition(status, "ContainersReady", true, None, None);
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
        status["containerStatuses"] = pod_status::running(&snapshot);
    });
    let adopted = shared
        .lock()
        .pods
        .get(&key.uid)
        .and_then(|r| r.sandbox.clone())
        .is_some_and(|s| Arc::ptr_eq(&s, &sandbox));
    if running.is_none() || !adopted {
        // Deleted while starting: nobody else will kill it.
        tokio::task::spawn_blocking(move || sandbox.destroy());
        return None;
    }
    Some(())
}

pub fn first_container(pod: &Value) -> Option<String> {
    pod["spec"]["containers"][0]["name"].as_str().map(String::from)
}

/// The kubelet's refusal to run a root container under `runAsNonRoot`.
fn runs_as_root(pod: &Value, shared: &Shared) -> Option<String> {
    let pod_sc = &pod["spec"]["securityContext"];
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let sc = &c["securityContext"];
        let non_root =
            sc["runAsNonRoot"].as_bool().or(pod_sc["runAsNonRoot"].as_bool()) == Some(true);
        let uid = sc["runAsUser"]
            .as_u64()
            .or(pod_sc["runAsUser"].as_u64())
            .unwrap_or(shared.fixed.image.user as u64);
        if non_root && uid == 0 {
            return Some("container has runAsNonRoot and image will run as root".to_string());
        }
    }
    None
}

/// Waits until the pod can be scheduled (reporting why not, once per reason), then binds it.
async fn schedule(shared: &Shared, key: &PodKey) -> Option<()> {
    let mut reported: Option<String> = None;
    loop {
        let wake = shared.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let blocked = {
            let state = shared.lock();
            let pod = state.store.get(Kind::Pod, &key.namespace, &key.name)?;
            unschedulable(&state, shared, pod)
        };
        let Some(message) = blocked else { break };
        if reported.as_deref() != Some(message.as_str()) {
            update(shared, key, |pod, state| {
                pod_status::set_condition(
                    &mut pod["status"],
                    "PodScheduled",
                    false,
                    Some("Unschedulable"),
                    Some(&message),
                );
                let snapshot = pod.clone();
                event(
                    state,
                    shared,
                    &snapshot,
                    PodEvent::scheduler(Severity::Warning, "FailedScheduling", &message),
                );
            })?;
            reported = Some(message);
        }
        wake.await;
    }
    let node = shared.fixed.node_name.clone();
    update(shared, key, |pod, state| {
        pod["spec"]["nodeName"] = json!(node);
        pod_status::set_condition(&mut pod["status"], "PodScheduled", true, None, None);
        let message = format!("Successfully assigned {}/{} to {node}", key.namespace, key.name);
        let snapshot = pod.clone();
        event(
            state,
            shared,
            &snapshot,
            PodEvent::scheduler(Severity::Normal, "Scheduled", &message),
        );
    })?;
    Some(())
}

const NO_FIT_SUFFIX: &str =
    " preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";

fn unschedulable(state: &State, shared: &Shared, pod: &Value) -> Option<String> {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    if let Some(message) = state.unschedulable.get(namespace) {
        return Some(message.clone());
    }
    let selector = pod["spec"]["nodeSelector"].as_object();
    let fits = selector
        .into_iter()
        .flatten()
        .all(|(k, v)| shared.fixed.node_labels.get(k).map(String::as_str) == v.as_str());
    if !fits {
        return Some(format!("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.{NO_FIT_SUFFIX}"));
    }
    for volume in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        if let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() {
            if state.store.get(Kind::PersistentVolumeClaim, namespace, claim).is_none() {
                return Some(format!("0/1 nodes are available: 1 persistentvolumeclaim \"{claim}\" not found.{NO_FIT_SUFFIX}"));
            }
        }
    }
    None
}
