//! The Kubernetes backend's lifecycle on a real cluster, opt-in: set
//! `KTERM_K8S_TEST_KUBECONFIG` (a kubeconfig allowed to manage pods there) and
//! `KTERM_K8S_TEST_NAMESPACE` (a namespace, ideally labelled
//! `pod-security.kubernetes.io/enforce=restricted`), and `KTERM_K8S_TEST_IMAGE` when the
//! cluster cannot pull `busybox:1.36` (any image with `sh` runs the test). Skipped, with the
//! reason printed, when they are unset. Every pod is removed at the end: the test deletes its
//! sessions, and the pods carry this run's instance label (kterm never touches others).

mod common;

use std::time::Duration;

use common::{eventually, TestServer};
use kterm::config::{BackendKind, HumanDuration, Persistence};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_on_a_real_cluster() {
    let (Ok(kubeconfig), Ok(namespace)) =
        (std::env::var("KTERM_K8S_TEST_KUBECONFIG"), std::env::var("KTERM_K8S_TEST_NAMESPACE"))
    else {
        eprintln!("SKIPPED: set KTERM_K8S_TEST_KUBECONFIG and KTERM_K8S_TEST_NAMESPACE to run the Kubernetes lifecycle on a real cluster");
        return;
    };
    let image = std::env::var("KTERM_K8S_TEST_IMAGE").unwrap_or_else(|_| "busybox:1.36".into());
    let server = TestServer::start_with(|c| {
        c.backend.kind = BackendKind::Kubernetes;
        c.kubernetes.kubeconfig = kubeconfig;
        c.kubernetes.namespace = namespace.clone();
        c.kubernetes.image = image;
        c.sessions.command = vec!["sh".into()];
        c.sessions.persistence = Persistence::None;
        c.sessions.create_timeout = HumanDuration(Duration::from_secs(180));
        c.pool.min = 0;
        c.pool.max = 0;
    })
    .await;
    let first =
        server.create_running(json!({"cols": 90, "rows": 20, "context": {"run_id": "real"}})).await;
    assert_eq!(first["namespace"], namespace.as_str());
    let mut tab1 = server.attach(first["id"].as_str().unwrap()).await;
    tab1.send("stty size; echo \"ctx=$KTERM_CTX_RUN_ID\"; echo shared > note.txt; pwd\n").await;
    let out = tab1.read_until("/home/user/workspace").await;
    assert!(out.contains("20 90") && out.contains("ctx=real"), "{out}");
    let second = server.create_running(json!({})).await;
    assert_eq!(second["sandbox_id"], first["sandbox_id"], "tabs share one pod");
    let mut tab2 = server.attach(second["id"].as_str().unwrap()).await;
    tab2.resize(100, 33).await;
    tab2.send("cat note.txt; stty size\n").await;
    tab2.read_until("33 100").await;
    let (status, backend) = server.get("/api/v1/backend").await;
    assert_eq!((status, backend["reachable"].as_bool()), (200, Some(true)), "{backend}");
    for session in [&first, &second] {
        let id = session["id"].as_str().unwrap();
        assert_eq!(server.delete(&format!("/api/v1/sessions/{id}")).await, 204);
    }
    eventually("the pod to be deleted", || async {
        let (_, backend) = server.get("/api/v1/backend").await;
        backend["namespaces"].as_array().is_some_and(|n| n.is_empty()).then_some(())
    })
    .await;
    server.stop().await;
}
