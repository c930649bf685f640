//! REST verbs shared by every kind (get, list with selectors), and the simple kinds: namespaces
//! (read-only, from the options), events (read and watch), networkpolicies and
//! persistentvolumeclaims (create, get, list, replace, patch, delete), shaped like
//! `04-networkpolicy-create.json`.

use serde_json::{json, Value};

use super::patch::{self, PatchType};
use super::respond::{self, Cause, Reply};
use super::route::Query;
use super::selector::{FieldSelector, LabelSelector};
use super::state::{now, Shared};
use super::store::{Kind, Store};
use super::validate;

pub fn get(store: &Store, kind: Kind, namespace: &str, name: &str) -> Reply {
    match store.get(kind, namespace, name) {
        Some(object) => respond::json(200, object),
        None => respond::not_found(kind, name),
    }
}

/// A `<Kind>List` of the objects matching the query's selectors (items without kind/apiVersion).
pub fn list(store: &Store, kind: Kind, namespace: Option<&str>, query: &Query) -> Reply {
    let labels = match LabelSelector::parse(query.get("labelSelector").unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return respond::bad_request(&e),
    };
    let fields = match FieldSelector::parse(kind, query.get("fieldSelector").unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return respond::bad_request(&e),
    };
    let items: Vec<Value> = store
        .list(kind, namespace)
        .filter(|o| labels.matches(o) && fields.matches(o))
        .map(|o| {
            let mut item = o.clone();
            if let Some(map) = item.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            item
        })
        .collect();
    let list = json!({
        "kind": format!("{}List", kind.kind()),
        "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": store.rv().to_string()},
        "items": items,
    });
    respond::json(200, &list)
}

/// The Namespace object the fake serves for a configured namespace.
pub fn namespace_object(name: &str, labels: &std::collections::BTreeMap<String, String>) -> Value {
    let mut all = json!({"kubernetes.io/metadata.name": name});
    for (k, v) in labels {
        all[k] = json!(v);
    }
    json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now(), "labels": all},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

/// Checks that the body names the right kind and, if it names one, the request's namespace;
/// `Some` is the rejection.
pub fn check_body(kind: Kind, namespace: &str, body: &Value) -> Option<Reply> {
    if !body.is_object() {
        return Some(respond::bad_request("the body of the request is not a JSON object"));
    }
    if let Some(k) = body["kind"].as_str().filter(|k| *k != kind.kind()) {
        return Some(respond::bad_request(&format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            kind.kind()
        )));
    }
    match body["metadata"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() && ns != namespace => Some(respond::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => None,
    }
}

/// The namespace must exist (NamespaceLifecycle admission); `Some` is the 404.
pub fn missing_namespace(store: &Store, namespace: &str) -> Option<Reply> {
    match store.get(Kind::Namespace, "", namespace) {
        Some(_) => None,
        None => Some(respond::not_found(Kind::Namespace, namespace)),
    }
}

/// POST of a NetworkPolicy or PersistentVolumeClaim.
pub fn create(
    shared: &Shared,
    kind: Kind,
    namespace: &str,
    mut body: Value,
    dry_run: bool,
) -> Reply {
    let mut state = shared.lock();
    if let Some(reply) =
        check_body(kind, namespace, &body).or_else(|| missing_namespace(&state.store, namespace))
    {
        return reply;
    }
    let name = super::pod_defaults::final_name(&body["metadata"]);
    body["metadata"]["name"] = json!(name);
    let mut causes = Vec::new();
    validate::metadata(&body["metadata"], &mut causes);
    if !causes.is_empty() {
        return respond::invalid(kind, &name, &causes);
    }
    if state.store.get(kind, namespace, &name).is_some() {
        return respond::already_exists(kind, &name);
    }
    let meta = &mut body["metadata"];
    meta["namespace"] = json!(namespace);
    meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
    meta["creationTimestamp"] = json!(now());
    body["kind"] = json!(kind.kind());
    body["apiVersion"] = json!(kind.api_version());
    match kind {
        Kind::NetworkPolicy => {
            body["metadata"]["generation"] = json!(1);
            body["status"] = json!({});
        }
        Kind::PersistentVolumeClaim => {
            let uid = body["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            let spec = &mut body["spec"];
            if spec["storageClassName"].is_null() {
                spec["storageClassName"] = json!("standard");
            }
            spec["volumeMode"] = json!(spec["volumeMode"].as_str().unwrap_or("Filesystem"));
            spec["volumeName"] = json!(format!("pvc-{uid}"));
            let capacity = spec["resources"]["requests"].clone();
            let modes = spec["accessModes"].clone();
            body["status"] = json!({"phase": "Bound", "accessModes": modes, "capacity": capacity});
        }
        _ => {}
    }
    if dry_run {
        return respond::json(201, &body);
    }
    let stored = state.store.put(kind, body);
    drop(state);
    // A pending pod may have waited for this claim.
    shared.wake.notify_waiters();
    respond::json(201, &stored)
}

/// PUT or PATCH of a NetworkPolicy or PersistentVolumeClaim.
pub fn update(
    shared: &Shared,
    kind: Kind,
    namespace: &str,
    name: &str,
    body: Value,
    patch_type: Option<PatchType>,
) -> Reply {
    let mut state = shared.lock();
    let Some(old) = state.store.get(kind, namespace, name).cloned() else {
        return respond::not_found(kind, name);
    };
    let mut new = match patch_type {
        None => {
            if let Some(reply) = check_body(kind, namespace, &body) {
                return reply;
            }
            if body["metadata"]["name"].as_str() != Some(name) {
                return respond::bad_request(
                    "the name of the object does not match the name on the URL",
                );
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
            return respond::conflict(kind, name, respond::MODIFIED);
        }
    }
    for key in ["uid", "creationTimestamp", "namespace", "name", "generation"] {
        new["metadata"][key] = old["metadata"][key].clone();
    }
    new["kind"] = json!(kind.kind());
    new["apiVersion"] = json!(kind.api_version());
    new["status"] = old["status"].clone();
    if kind == Kind::PersistentVolumeClaim && new["spec"] != old["spec"] {
        let cause = Cause::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests for bound claims",
        );
        return respond::invalid(kind, name, &[cause]);
    }
    if kind == Kind::NetworkPolicy && new["spec"] != old["spec"] {
        new["metadata"]["generation"] =
            json!(old["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
    }
    let mut causes = Vec::new();
    validate::metadata(&new["metadata"], &mut causes);
    if !causes.is_empty() {
        return respond::invalid(kind, name, &causes);
    }
    let mut unchanged = new.clone();
    unchanged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    if unchanged == old {
        return respond::json(200, &old);
    }
    let stored = state.store.put(kind, new);
    respond::json(200, &stored)
}

/// DELETE of a NetworkPolicy or PersistentVolumeClaim: a `Status` Success, as a real server
/// answers for kinds without graceful deletion.
pub fn delete(shared: &Shared, kind: Kind, namespace: &str, name: &str) -> Reply {
    let removed = shared.lock().store.remove(kind, namespace, name);
    let Some(object) = removed else {
        return respond::not_found(kind, name);
    };
    if kind == Kind::PersistentVolumeClaim {
        let dir = shared.fixed.base.join("pvcs").join(namespace).join(name);
        let _ = std::fs::remove_dir_all(dir);
    }
    let mut details = respond::details(kind, name);
    details["uid"] = object["metadata"]["uid"].clone();
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details});
    respond::json(200, &status)
}
