//! `/version` (the recorded v1.24.0 server's), `/api`, `/api/v1`, `/apis` and the group
//! resource lists: the classic discovery documents, listing what the fake serves.

use serde_json::{json, Value};

use super::route::Target;

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "24",
        "gitVersion": "v1.24.0+0",
        "gitCommit": "2cc6ddc68588debdbb6806e1b57e73207505324f",
        "gitTreeState": "clean",
        "buildDate": "2022-05-06T09:44:28Z",
        "goVersion": "go1.19.8",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn resource(name: &str, namespaced: bool, kind: &str, verbs: &[&str], short: &[&str]) -> Value {
    let mut r = json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs});
    if !short.is_empty() {
        r["shortNames"] = json!(short);
    }
    r
}

const CRUD: [&str; 8] =
    ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The discovery document for `target`, if it is one.
pub fn document(target: &Target, port: u16) -> Option<Value> {
    let group = |name: &str| json!({"name": name, "versions": [{"groupVersion": format!("{name}/v1"), "version": "v1"}], "preferredVersion": {"groupVersion": format!("{name}/v1"), "version": "v1"}});
    match target {
        Target::Version => Some(version()),
        Target::CoreVersions => Some(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{port}")}]
        })),
        Target::CoreResources => Some(json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                resource("events", true, "Event", &CRUD, &["ev"]),
                resource("namespaces", false, "Namespace", &["get", "list", "watch"], &["ns"]),
                resource("persistentvolumeclaims", true, "PersistentVolumeClaim", &CRUD, &["pvc"]),
                resource("pods", true, "Pod", &CRUD, &["po"]),
                resource("pods/exec", true, "PodExecOptions", &["create", "get"], &[]),
            ]
        })),
        Target::Groups => Some(json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [group("networking.k8s.io"), group("authorization.k8s.io")]
        })),
        Target::GroupResources(name) if name == "networking.k8s.io" => Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "networking.k8s.io/v1",
            "resources": [resource("networkpolicies", true, "NetworkPolicy", &CRUD, &["netpol"])]
        })),
        Target::GroupResources(_) => Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "authorization.k8s.io/v1",
            "resources": [
                resource("selfsubjectaccessreviews", false, "SelfSubjectAccessReview", &["create"], &[]),
                resource("subjectaccessreviews", false, "SubjectAccessReview", &["create"], &[]),
            ]
        })),
        _ => None,
    }
}
