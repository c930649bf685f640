//! Building blocks of `pod.status` as the kubelet writes them (`01-restricted-pod-watch-events.jsonl`,
//! `02-image-pull-*-pod.json`): conditions in the kubelet's order (Initialized, Ready,
//! ContainersReady, PodScheduled), container statuses waiting/running/terminated, and the
//! terminal states (Evicted, DeadlineExceeded).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::state::now;

/// Sets condition `kind`, keeping its `lastTransitionTime` when the status does not change.
pub fn set_condition(
    status: &mut Value,
    kind: &str,
    value: bool,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let text = if value { "True" } else { "False" };
    let mut conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let previous = conditions.iter().position(|c| c["type"] == kind);
    let transition = match previous {
        Some(i) if conditions[i]["status"] == text => conditions[i]["lastTransitionTime"].clone(),
        _ => json!(now()),
    };
    let mut condition = json!({"type": kind, "status": text, "lastProbeTime": null, "lastTransitionTime": transition});
    if let Some(reason) = reason {
        condition["reason"] = json!(reason);
    }
    if let Some(message) = message {
        condition["message"] = json!(message);
    }
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
    const ORDER: [&str; 4] = ["Initialized", "Ready", "ContainersReady", "PodScheduled"];
    conditions.sort_by_key(|c| ORDER.iter().position(|o| c["type"] == *o).unwrap_or(ORDER.len()));
    status["conditions"] = Value::Array(conditions);
}

/// Ready and ContainersReady false because containers are not ready.
pub fn set_not_ready(status: &mut Value, containers: &[String]) {
    let message = format!("containers with unready status: [{}]", containers.join(" "));
    set_condition(status, "Ready", false, Some("ContainersNotReady"), Some(&message));
    set_condition(status, "ContainersReady", false, Some("ContainersNotReady"), Some(&message));
}

pub fn container_names(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .map(String::from)
        .collect()
}

/// What every container's status holds besides its state.
fn base(container: &Value) -> Value {
    json!({
        "name": container["name"],
        "lastState": {},
        "ready": false,
        "restartCount": 0,
        "image": container["image"],
        "imageID": "",
        "started": false,
    })
}

/// All containers waiting with `reason` (and `message`).
pub fn waiting(pod: &Value, reason: &str, message: Option<&str>) -> Value {
    let statuses: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let mut s = base(c);
            let mut state = json!({"reason": reason});
            if let Some(message) = message {
                state["message"] = json!(message);
            }
            s["state"] = json!({"waiting": state});
            s
        })
        .collect();
    Value::Array(statuses)
}

fn hex_digest(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// All containers running since now, with image and container IDs.
pub fn running(pod: &Value) -> Value {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let started = now();
    let statuses: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let mut s = base(c);
            let image = c["image"].as_str().unwrap_or_default();
            s["state"] = json!({"running": {"startedAt": started}});
            s["ready"] = json!(true);
            s["started"] = json!(true);
            s["imageID"] = json!(format!("sha256:{}", hex_digest(image)));
            s["containerID"] =
                json!(format!("containerd://{}", hex_digest(&format!("{uid}/{}", c["name"]))));
            s
        })
        .collect();
    Value::Array(statuses)
}

/// Containers as they are after ending with `exit_code` and `reason` (0 "Completed" when they
/// stopped on SIGTERM within the grace period, 137 "Error" when killed), keeping IDs and starts.
pub fn terminated(status: &Value, exit_code: i32, reason: &str) -> Value {
    let finished = now();
    let statuses: Vec<Value> = status["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let mut s = s.clone();
            if let Some(started) = s["state"]["running"]["startedAt"].as_str().map(String::from) {
                s["state"] = json!({"terminated": {
                    "exitCode": exit_code,
                    "reason": reason,
                    "startedAt": started,
                    "finishedAt": finished,
                    "containerID": s["containerID"],
                }});
            }
            s["ready"] = json!(false);
            s["started"] = json!(false);
            s
        })
        .collect();
    Value::Array(statuses)
}

/// A pod the kubelet has given up on: phase Failed with `reason` and `message`.
pub fn fail(status: &mut Value, reason: &str, message: &str) {
    status["phase"] = json!("Failed");
    status["reason"] = json!(reason);
    status["message"] = json!(message);
    set_condition(status, "Ready", false, Some("PodCompleted"), None);
    set_condition(status, "ContainersReady", false, Some("PodCompleted"), None);
    let containers = terminated(status, 137, "Error");
    status["containerStatuses"] = containers;
}
