//! Tests of the fake Kubernetes API server itself (`tests/common/kube_fake`), driven by a real
//! `kube::Client` and, for exec framing, a raw WebSocket client; compared with the exchanges
//! recorded from a real v1.24 API server (`tests/data/k8s-api-samples`, copied from the
//! project's shared samples).

mod common;

#[path = "kube_fake/api.rs"]
mod api;
#[path = "kube_fake/exec.rs"]
mod exec;
#[path = "kube_fake/frames.rs"]
mod frames;
#[path = "kube_fake/lifecycle.rs"]
mod lifecycle;

use std::time::Duration;

use common::kube_fake::{FakeApiServer, FakeOptions, NamespaceSpec};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

/// Deadline of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A fake with the samples' namespace (`samples`, restricted) and the node name `vm`, so its
/// objects can be compared with the recordings; `None` (test skipped) where it cannot run.
pub fn sample_cluster() -> Option<FakeApiServer> {
    sample_cluster_with(|_| {})
}

pub fn sample_cluster_with(adjust: impl FnOnce(&mut FakeOptions)) -> Option<FakeApiServer> {
    if !common::kube_fake::available() {
        return None;
    }
    let mut options = FakeOptions {
        namespaces: vec![NamespaceSpec::restricted("samples"), NamespaceSpec::new("default")],
        node_name: "vm".into(),
        ..FakeOptions::default()
    };
    adjust(&mut options);
    Some(FakeApiServer::start(options))
}

/// A real kube client from the fake's kubeconfig.
pub async fn client_from(path: &std::path::Path) -> kube::Client {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).expect("the fake's kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("kube accepts the fake's kubeconfig");
    kube::Client::try_from(config).expect("a kube client")
}

pub async fn client(fake: &FakeApiServer) -> kube::Client {
    client_from(fake.kubeconfig_path()).await
}

/// A recorded sample (`tests/data/k8s-api-samples/<file>`).
pub fn sample(file: &str) -> Value {
    let path = format!("{}/tests/data/k8s-api-samples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

/// The restricted pod of `01-restricted-pod-create.json`, renamed.
pub fn restricted_pod(name: &str) -> Value {
    let mut pod = sample("01-restricted-pod-create.json")["request"]["body"].clone();
    pod["metadata"]["name"] = json!(name);
    pod
}

pub async fn create_pod(client: &kube::Client, namespace: &str, pod: &Value) -> Pod {
    let pod: Pod = serde_json::from_value(pod.clone()).expect("a pod");
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pod)
        .await
        .expect("the pod is created")
}

pub fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

/// Creates the restricted pod `name` in `samples` and waits until it runs.
pub async fn running_pod(fake: &FakeApiServer, client: &kube::Client, name: &str) {
    create_pod(client, "samples", &restricted_pod(name)).await;
    fake.wait_pod("samples", name, WAIT, |p| phase(p) == "Running").await.expect("the pod runs");
}

/// A request as raw as a client can send it: `(status, body as JSON, or as a string)`.
pub async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
    content_type: &str,
) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("accept", "application/json")
        .body(kube::client::Body::from(bytes))
        .expect("a request");
    let response = client.send(request).await.expect("the fake answers");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("a body").to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// Replaces what legitimately differs between two runs (identities, times, addresses,
/// generated names, managedFields) with placeholders, so objects compare structurally.
pub fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let v = match k.as_str() {
                    "managedFields" => continue,
                    "uid" | "resourceVersion" | "containerID" => json!(format!("<{k}>")),
                    "imageID" if v.as_str().is_some_and(|s| !s.is_empty()) => json!("<imageID>"),
                    "podIP" | "ip" => json!("<ip>"),
                    "name" if v.as_str().is_some_and(|s| s.starts_with("kube-api-access-")) => {
                        json!("kube-api-access-<x>")
                    }
                    _ => normalize(v),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::String(s) if is_timestamp(s) => json!("<time>"),
        other => other.clone(),
    }
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && s.ends_with('Z')
}

/// Panics with every differing path when two normalized objects differ.
pub fn assert_same_shape(what: &str, ours: &Value, recorded: &Value) {
    let (ours, recorded) = (normalize(ours), normalize(recorded));
    let mut differences = Vec::new();
    diff("", &ours, &recorded, &mut differences);
    assert!(
        differences.is_empty(),
        "{what} differs from the recording (fake / recorded):\n{}",
        differences.join("\n")
    );
}

fn diff(path: &str, ours: &Value, theirs: &Value, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                diff(
                    &format!("{path}.{k}"),
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {a} / {b}")),
        _ => {}
    }
}

#[tokio::test]
async fn kubeconfig_works_and_discovery_answers_like_v1_24() {
    let Some(fake) = sample_cluster() else { return };
    let client = client(&fake).await;
    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(version.git_version, "v1.24.0+0");
    assert!(
        fake.url().starts_with("https://127.0.0.1:"),
        "TLS like a real API server: {}",
        fake.url()
    );
    let (code, resources) = raw(&client, "GET", "/api/v1", None, "application/json").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(names.contains(&"pods") && names.contains(&"pods/exec"), "{names:?}");
    let (code, groups) = raw(&client, "GET", "/apis", None, "application/json").await;
    assert_eq!(code, 200);
    assert!(groups.to_string().contains("networking.k8s.io/v1"), "{groups}");
}
