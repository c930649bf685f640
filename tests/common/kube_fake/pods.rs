//! The pods resource: create (defaults, validation 422, Pod Security 403, quota 403, 409),
//! patch and replace (labels, annotations and the few mutable spec fields; resourceVersion
//! preconditions), delete (graceful: MODIFIED with deletionTimestamp, then the kubelet's
//! termination; immediate for grace 0, unscheduled or finished pods) and deletecollection.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::lifecycle::{self, PodKey};
use super::patch::{self, PatchType};
use super::pod_defaults::{default_pod, final_name};
use super::pss;
use super::respond::{self, Cause, Reply};
use super::rest::{check_body, missing_namespace};
use super::route::Query;
use super::selector::{FieldSelector, LabelSelector};
use super::state::{PodRuntime, Shared, State};
use super::store::Kind;
use super::termination;
use super::validate;

pub fn create(shared: &Arc<Shared>, namespace: &str, mut pod: Value, dry_run: bool) -> Reply {
    let mut state = shared.lock();
    if let Some(reply) = check_body(Kind::Pod, namespace, &pod)
        .or_else(|| missing_namespace(&state.store, namespace))
    {
        return reply;
    }
    let name = final_name(&pod["metadata"]);
    pod["metadata"]["name"] = json!(name);
    default_pod(&mut pod, namespace);
    // Mutating admission (ServiceAccount, RuntimeClass) comes before validation.
    if let Some(reply) = admit_refs(shared, namespace, &name, &pod) {
        return reply;
    }
    let mut causes = Vec::new();
    validate::metadata(&pod["metadata"], &mut causes);
    validate::pod_spec(&pod["spec"], &mut causes);
    if !causes.is_empty() {
        return respond::invalid(Kind::Pod, &name, &causes);
    }
    if let Some(reply) = admit(&state, namespace, &name, &pod) {
        return reply;
    }
    if state.store.get(Kind::Pod, namespace, &name).is_some() {
        return respond::already_exists(Kind::Pod, &name);
    }
    if dry_run {
        return respond::json(201, &pod);
    }
    let stored = state.store.put(Kind::Pod, pod);
    let key = PodKey::of(&stored);
    let stop = CancellationToken::new();
    state.pods.insert(key.uid.clone(), PodRuntime { stop: stop.clone(), sandbox: None });
    drop(state);
    let task_shared = shared.clone();
    shared.rt.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = lifecycle::run(task_shared, key) => {}
        }
    });
    respond::json(201, &stored)
}

/// Mutating admission's lookups: the ServiceAccount and the RuntimeClass must exist.
fn admit_refs(shared: &Shared, namespace: &str, name: &str, pod: &Value) -> Option<Reply> {
    let fixed = &shared.fixed;
    let account = pod["spec"]["serviceAccountName"].as_str().unwrap_or("default");
    let known = fixed.service_accounts.iter().any(|(ns, sa)| ns == namespace && sa == account);
    if !known && account != "default" {
        let why = format!(
            "error looking up service account {namespace}/{account}: serviceaccount \"{account}\" not found"
        );
        return Some(respond::admission_forbidden(Kind::Pod, name, &why));
    }
    let class = pod["spec"]["runtimeClassName"].as_str()?;
    match &fixed.runtime_classes {
        Some(classes) if !classes.iter().any(|c| c == class) => {
            let why = format!("pod rejected: RuntimeClass \"{class}\" not found");
            Some(respond::admission_forbidden(Kind::Pod, name, &why))
        }
        _ => None,
    }
}

/// Validating admission: Pod Security, then ResourceQuota.
fn admit(state: &State, namespace: &str, name: &str, pod: &Value) -> Option<Reply> {
    let labels = state
        .store
        .get(Kind::Namespace, "", namespace)
        .map(|ns| ns["metadata"]["labels"].clone())
        .unwrap_or_default();
    let (level, version) = pss::enforced(&labels);
    if let Some(why) = pss::violations(pod, level, &version) {
        return Some(respond::admission_forbidden(Kind::Pod, name, &why));
    }
    if let Some(limit) = state.pod_quota.get(namespace) {
        let used = state
            .store
            .list(Kind::Pod, Some(namespace))
            .filter(|p| {
                !matches!(p["status"]["phase"].as_str(), Some("Failed" | "Succeeded"))
                    && p["metadata"]["deletionTimestamp"].is_null()
            })
            .count();
        if used as u32 >= *limit {
            let why = format!("exceeded quota: pod-quota, requested: pods=1, used: pods={used}, limited: pods={limit}");
            return Some(respond::admission_forbidden(Kind::Pod, name, &why));
        }
    }
    None
}

const IMMUTABLE_SPEC: &str = "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// PATCH (`patch_type` set) or PUT of a pod.
pub fn update(
    shared: &Shared,
    namespace: &str,
    name: &str,
    body: Value,
    patch_type: Option<PatchType>,
) -> Reply {
    let mut state = shared.lock();
    let Some(old) = state.store.get(Kind::Pod, namespace, name).cloned() else {
        return respond::not_found(Kind::Pod, name);
    };
    let mut new = match patch_type {
        None => {
            if let Some(reply) = check_body(Kind::Pod, namespace, &body) {
                return reply;
            }
            body
        }
        Some(t) => match patch::apply(t, &old, &body) {
            Ok(v) => v,
            Err(e) => return respond::status(422, "Invalid", &e, None),
        },
    };
    if let Some(rv) = new["metadata"]["resourceVersion"].as_str().filter(|rv| !rv.is_empty()) {
        if Some(rv) != old["metadata"]["resourceVersion"].as_str() {
            return respond::conflict(Kind::Pod, name, respond::MODIFIED);
        }
    }
    for key in [
        "uid",
        "creationTimestamp",
        "namespace",
        "name",
        "generateName",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old["metadata"].get(key) {
            Some(v) => new["metadata"][key] = v.clone(),
            None => {
                new["metadata"].as_object_mut().map(|m| m.remove(key));
            }
        }
    }
    new["kind"] = json!("Pod");
    new["apiVersion"] = json!("v1");
    new["status"] = old["status"].clone();
    if !spec_change_allowed(&old["spec"], &new["spec"]) {
        return respond::invalid(Kind::Pod, name, &[Cause::forbidden("spec", IMMUTABLE_SPEC)]);
    }
    let mut causes = Vec::new();
    validate::metadata(&new["metadata"], &mut causes);
    if !causes.is_empty() {
        return respond::invalid(Kind::Pod, name, &causes);
    }
    let mut same = new.clone();
    same["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    if same == old {
        return respond::json(200, &old);
    }
    let stored = state.store.put(Kind::Pod, new);
    respond::json(200, &stored)
}

/// Only images, the deadline and added tolerations may change in a pod's spec.
fn spec_change_allowed(old: &Value, new: &Value) -> bool {
    let mut old = old.clone();
    let mut new = new.clone();
    for key in ["containers", "initContainers"] {
        for spec in [&mut old, &mut new] {
            for c in spec[key].as_array_mut().into_iter().flatten() {
                c["image"] = Value::Null;
            }
        }
    }
    for spec in [&mut old, &mut new] {
        spec["activeDeadlineSeconds"] = Value::Null;
    }
    let old_tolerations = old["tolerations"].as_array().cloned().unwrap_or_default();
    let new_tolerations = new["tolerations"].as_array().cloned().unwrap_or_default();
    if !old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        return false;
    }
    old["tolerations"] = Value::Null;
    new["tolerations"] = Value::Null;
    old == new
}

/// The grace period and preconditions of a DELETE (body `DeleteOptions` or query).
pub struct DeleteOptions {
    pub grace: Option<u64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    pub fn parse(body: &[u8], query: &Query) -> DeleteOptions {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let grace = body["gracePeriodSeconds"]
            .as_i64()
            .or_else(|| query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
        DeleteOptions {
            grace: grace.map(|g| g.max(0) as u64),
            uid: body["preconditions"]["uid"].as_str().map(String::from),
            resource_version: body["preconditions"]["resourceVersion"].as_str().map(String::from),
        }
    }
}

pub fn delete(shared: &Arc<Shared>, namespace: &str, name: &str, options: &DeleteOptions) -> Reply {
    let mut state = shared.lock();
    let Some(pod) = state.store.get(Kind::Pod, namespace, name).cloned() else {
        return respond::not_found(Kind::Pod, name);
    };
    let meta = &pod["metadata"];
    if let Some(uid) =
        options.uid.as_deref().filter(|u| *u != meta["uid"].as_str().unwrap_or_default())
    {
        let why = format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta["uid"].as_str().unwrap_or_default()
        );
        return respond::conflict(Kind::Pod, name, &why);
    }
    if let Some(rv) = options
        .resource_version
        .as_deref()
        .filter(|rv| *rv != meta["resourceVersion"].as_str().unwrap_or_default())
    {
        let why = format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            meta["resourceVersion"].as_str().unwrap_or_default()
        );
        return respond::conflict(Kind::Pod, name, &why);
    }
    if !meta["deletionTimestamp"].is_null() {
        return respond::json(200, &pod);
    }
    let key = PodKey::of(&pod);
    let mut grace =
        options.grace.or(pod["spec"]["terminationGracePeriodSeconds"].as_u64()).unwrap_or(30);
    let unscheduled = pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
    let finished = matches!(pod["status"]["phase"].as_str(), Some("Failed" | "Succeeded"));
    if unscheduled || finished {
        grace = 0;
    }
    if grace == 0 {
        drop(state);
        termination::remove(shared, &key);
        return respond::json(200, &pod);
    }
    let mut marked = pod.clone();
    let at = chrono::Utc::now() + chrono::Duration::seconds(grace as i64);
    marked["metadata"]["deletionTimestamp"] = json!(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    let stored = state.store.put(Kind::Pod, marked);
    if let Some(runtime) = state.pods.get(&key.uid) {
        runtime.stop.cancel();
    }
    drop(state);
    shared.rt.spawn(termination::terminate(shared.clone(), key, grace));
    respond::json(200, &stored)
}

/// DELETE of the collection: every pod matching the selectors, as a PodList of what was deleted.
pub fn delete_collection(
    shared: &Arc<Shared>,
    namespace: &str,
    query: &Query,
    options: &DeleteOptions,
) -> Reply {
    let labels = match LabelSelector::parse(query.get("labelSelector").unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return respond::bad_request(&e),
    };
    let fields =
        match FieldSelector::parse(Kind::Pod, query.get("fieldSelector").unwrap_or_default()) {
            Ok(s) => s,
            Err(e) => return respond::bad_request(&e),
        };
    let pods: Vec<Value> = shared
        .lock()
        .store
        .list(Kind::Pod, Some(namespace))
        .filter(|p| labels.matches(p) && fields.matches(p))
        .cloned()
        .collect();
    let mut items = Vec::new();
    for pod in pods {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        if delete(shared, namespace, name, options).status().is_success() {
            items.push(pod);
        }
    }
    let rv = shared.lock().store.rv().to_string();
    respond::json(
        200,
        &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}),
    )
}
