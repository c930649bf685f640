//! Getting a container's image onto the fake node as the kubelet reports it
//! (`02-image-pull-*`): Pulled (present), Pulling then Pulled (policy Always), or for a missing
//! image ErrImagePull -> ImagePullBackOff with Failed/BackOff events, retried with back-off
//! (ErrImageNeverPull under policy Never), until the image appears.

use std::sync::Arc;

use serde_json::{json, Value};

use super::events::{PodEvent, Severity};
use super::lifecycle::{event, update, PodKey};
use super::pod_status;
use super::state::Shared;
use super::store::Kind;

/// Gets `container`'s image onto the node, failing (and retrying with back-off) while the image
/// is missing, as `02-image-pull-*` shows.
pub async fn pull(shared: &Arc<Shared>, key: &PodKey, container: &Value, ip: &str) -> Option<()> {
    let image = container["image"].as_str().unwrap_or_default().to_string();
    let name = container["name"].as_str().unwrap_or_default().to_string();
    let policy = container["imagePullPolicy"].as_str().unwrap_or("IfNotPresent").to_string();
    let mut backoff = shared.lock().delays.pull_backoff;
    loop {
        let missing = shared.lock().missing_images.contains(&image);
        let delays = shared.lock().delays;
        if !missing {
            if policy == "Always" {
                kubelet_event(
                    shared,
                    key,
                    Severity::Normal,
                    "Pulling",
                    &format!("Pulling image \"{image}\""),
                    &name,
                )?;
                tokio::time::sleep(delays.pull).await;
                let message = format!(
                    "Successfully pulled image \"{image}\" in {}ms",
                    delays.pull.as_millis()
                );
                kubelet_event(shared, key, Severity::Normal, "Pulled", &message, &name)?;
            } else {
                kubelet_event(
                    shared,
                    key,
                    Severity::Normal,
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                    &name,
                )?;
            }
            return Some(());
        }
        if policy == "Never" {
            let message =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            update(shared, key, |pod, state| {
                set_waiting(pod, &name, "ErrImageNeverPull", Some(&message), ip);
                let snapshot = pod.clone();
                event(
                    state,
                    shared,
                    &snapshot,
                    PodEvent::kubelet(
                        Severity::Warning,
                        "ErrImageNeverPull",
                        &message,
                        Some(&name),
                    ),
                );
                event(
                    state,
                    shared,
                    &snapshot,
                    PodEvent::kubelet(
                        Severity::Warning,
                        "Failed",
                        "Error: ErrImageNeverPull",
                        Some(&name),
                    ),
                );
            })?;
        } else {
            kubelet_event(
                shared,
                key,
                Severity::Normal,
                "Pulling",
                &format!("Pulling image \"{image}\""),
                &name,
            )?;
            tokio::time::sleep(delays.pull).await;
            let reference = qualified_image(&image);
            let error = format!(
                "rpc error: code = NotFound desc = failed to pull and unpack image \"{reference}\": failed to resolve reference \"{reference}\": {reference}: not found"
            );
            update(shared, key, |pod, state| {
                set_waiting(pod, &name, "ErrImagePull", Some(&error), ip);
                let snapshot = pod.clone();
                let failed = format!("Failed to pull image \"{image}\": {error}");
                event(
                    state,
                    shared,
                    &snapshot,
                    PodEvent::kubelet(Severity::Warning, "Failed", &failed, Some(&name)),
                );
                event(
                    state,
                    shared,
                    &snapshot,
                    PodEvent::kubelet(
                        Severity::Warning,
                        "Failed",
                        "Error: ErrImagePull",
                        Some(&name),
                    ),
                );
            })?;
            tokio::time::sleep(backoff).await;
            let message = format!("Back-off pulling image \"{image}\"");
            update(shared, key, |pod, state| {
                set_waiting(pod, &name, "ImagePullBackOff", Some(&message), ip);
                let snapshot = pod.clone();
                event(
                    state,
                    shared,
                    &snapshot,
                    PodEvent::kubelet(Severity::Normal, "BackOff", &message, Some(&name)),
                );
                event(
                    state,
                    shared,
                    &snapshot,
                    PodEvent::kubelet(
                        Severity::Warning,
                        "Failed",
                        "Error: ImagePullBackOff",
                        Some(&name),
                    ),
                );
            })?;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(delays.pull_backoff * 8);
    }
}

/// How containerd names an image in its errors (`docker.io/library/x:tag`).
fn qualified_image(image: &str) -> String {
    let with_tag =
        if image.rsplit('/').next().is_some_and(|last| last.contains(':') || last.contains('@')) {
            image.to_string()
        } else {
            format!("{image}:latest")
        };
    let first = with_tag.split('/').next().unwrap_or_default();
    let has_registry = with_tag.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    match (has_registry, with_tag.contains('/')) {
        (true, _) => with_tag,
        (false, true) => format!("docker.io/{with_tag}"),
        (false, false) => format!("docker.io/library/{with_tag}"),
    }
}

fn set_waiting(pod: &mut Value, container: &str, reason: &str, message: Option<&str>, ip: &str) {
    let waiting = pod_status::waiting(pod, reason, message);
    let statuses = pod["status"]["containerStatuses"].as_array_mut();
    if let (Some(statuses), Some(fresh)) = (statuses, waiting.as_array()) {
        for (slot, new) in statuses.iter_mut().zip(fresh) {
            if slot["name"] == container {
                *slot = new.clone();
            }
        }
    }
    pod["status"]["podIP"] = json!(ip);
    pod["status"]["podIPs"] = json!([{"ip": ip}]);
}

pub fn kubelet_event(
    shared: &Shared,
    key: &PodKey,
    severity: Severity,
    reason: &str,
    message: &str,
    container: &str,
) -> Option<()> {
    let mut state = shared.lock();
    let pod = state.store.get(Kind::Pod, &key.namespace, &key.name)?.clone();
    if pod["metadata"]["uid"] != key.uid.as_str() {
        return None;
    }
    event(&mut state, shared, &pod, PodEvent::kubelet(severity, reason, message, Some(container)));
    Some(())
}
