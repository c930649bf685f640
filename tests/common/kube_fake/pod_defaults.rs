//! What a v1.24 API server adds to a pod on create (compare `01-restricted-pod-create.json`):
//! identity (uid, creationTimestamp, generated name), API defaulting (restartPolicy, dnsPolicy,
//! grace period, container defaults, `imagePullPolicy` from the tag), the seccomp annotation
//! 1.24 still mirrors, and the mutating admission plugins: ServiceAccount (the
//! `kube-api-access-*` projected volume unless `automountServiceAccountToken: false`),
//! Priority, DefaultTolerationSeconds; and the initial status (Pending, QoS class).

use serde_json::{json, Map, Value};

use super::state::{now, random_suffix};

/// Fills in a pod being created in `namespace` (its name is already final).
pub fn default_pod(pod: &mut Value, namespace: &str) {
    let meta = &mut pod["metadata"];
    meta["namespace"] = json!(namespace);
    meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
    meta["creationTimestamp"] = json!(now());
    if let Some(obj) = meta.as_object_mut() {
        for transient in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            obj.remove(transient);
        }
    }
    pod["kind"] = json!("Pod");
    pod["apiVersion"] = json!("v1");

    let spec = &mut pod["spec"];
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "enableServiceLinks", json!(true));
    let account = spec["serviceAccountName"]
        .as_str()
        .or(spec["serviceAccount"].as_str())
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(account);
    spec["serviceAccount"] = json!(account);
    for key in ["initContainers", "containers"] {
        if let Some(containers) = spec[key].as_array_mut() {
            containers.iter_mut().for_each(default_container);
        }
    }
    seccomp_annotations(pod);
    service_account_volume(pod);
    let spec = &mut pod["spec"];
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    default_tolerations(spec);
    let qos = qos_class(spec);
    pod["status"] = json!({"phase": "Pending", "qosClass": qos});
}

fn set_default(target: &mut Value, key: &str, value: Value) {
    if target.get(key).is_none_or(Value::is_null) {
        target[key] = value;
    }
}

fn default_container(c: &mut Value) {
    set_default(c, "resources", json!({}));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let image = c["image"].as_str().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    let tag_latest =
        !image.contains('@') && last.split_once(':').is_none_or(|(_, tag)| tag == "latest");
    set_default(c, "imagePullPolicy", json!(if tag_latest { "Always" } else { "IfNotPresent" }));
    if let Some(ports) = c["ports"].as_array_mut() {
        for port in ports {
            set_default(port, "protocol", json!("TCP"));
        }
    }
}

/// 1.24 mirrors seccomp fields into the deprecated annotations.
fn seccomp_annotations(pod: &mut Value) {
    let annotation = |profile: &Value| match profile["type"].as_str() {
        Some("RuntimeDefault") => Some("runtime/default".to_string()),
        Some("Unconfined") => Some("unconfined".to_string()),
        Some("Localhost") => {
            Some(format!("localhost/{}", profile["localhostProfile"].as_str().unwrap_or_default()))
        }
        _ => None,
    };
    let mut add = Vec::new();
    if let Some(value) = annotation(&pod["spec"]["securityContext"]["seccompProfile"]) {
        add.push(("seccomp.security.alpha.kubernetes.io/pod".to_string(), value));
    }
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        if let Some(value) = annotation(&c["securityContext"]["seccompProfile"]) {
            let name = c["name"].as_str().unwrap_or_default();
            add.push((format!("container.seccomp.security.alpha.kubernetes.io/{name}"), value));
        }
    }
    if add.is_empty() {
        return;
    }
    if !pod["metadata"]["annotations"].is_object() {
        pod["metadata"]["annotations"] = Value::Object(Map::new());
    }
    for (k, v) in add {
        set_default(&mut pod["metadata"]["annotations"], &k, json!(v));
    }
}

/// The ServiceAccount admission plugin's token volume and mounts.
fn service_account_volume(pod: &mut Value) {
    if pod["spec"]["automountServiceAccountToken"].as_bool() == Some(false) {
        return;
    }
    const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
    let name = format!("kube-api-access-{}", random_suffix());
    let volume = json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ],
            "defaultMode": 420
        }
    });
    let spec = &mut pod["spec"];
    match spec["volumes"].as_array_mut() {
        Some(volumes) => volumes.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
    for key in ["initContainers", "containers"] {
        for c in spec[key].as_array_mut().into_iter().flatten() {
            let mounted =
                c["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"] == MOUNT);
            if mounted {
                continue;
            }
            let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT});
            match c["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount),
                None => c["volumeMounts"] = json!([mount]),
            }
        }
    }
}

/// DefaultTolerationSeconds: tolerate not-ready/unreachable nodes for 300 s unless tolerated.
fn default_tolerations(spec: &mut Value) {
    let mut tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let tolerated = tolerations
            .iter()
            .any(|t| t["key"] == key && (t["effect"] == "NoExecute" || t["effect"].is_null()));
        if !tolerated {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    spec["tolerations"] = Value::Array(tolerations);
}

/// BestEffort without any requests or limits; Guaranteed when every container's cpu and memory
/// limits equal its requests (requests default to limits); Burstable otherwise.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let resources = &c["resources"];
        let limits = &resources["limits"];
        let requests = &resources["requests"];
        let has = |v: &Value| v.as_object().is_some_and(|m| !m.is_empty());
        any |= has(limits) || has(requests);
        for r in ["cpu", "memory"] {
            let limit = &limits[r];
            let request = if requests[r].is_null() { limit } else { &requests[r] };
            if limit.is_null() || limit != request {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The final name of an object created with `metadata.name` or `metadata.generateName`.
pub fn final_name(meta: &Value) -> String {
    match meta["name"].as_str().filter(|n| !n.is_empty()) {
        Some(name) => name.to_string(),
        None => match meta["generateName"].as_str().filter(|g| !g.is_empty()) {
            Some(prefix) => format!("{prefix}{}", random_suffix()),
            None => String::new(),
        },
    }
}
