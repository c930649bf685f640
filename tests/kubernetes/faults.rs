//! The Kubernetes backend when things go wrong: a SubjectAccessReview that denies, a pod
//! deleted or evicted from outside (the session says so), an API server that goes away and
//! comes back. A pull that fails is in `pending.rs`.

use std::time::Duration;

use kterm::config::{AuthMode, TokenEntry};
use serde_json::json;

use super::common::kube_fake::{AccessRule, Subject};
use super::common::{error_code, eventually, Event};
use super::*;

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_access_review_decides_who_may_use_a_namespace() {
    let Some(fake) = cluster() else { return };
    fake.set_rules(vec![AccessRule::allow(
        Subject::User("alice".into()),
        &["create"],
        &["pods", "pods/exec"],
        &["kterm"],
    )]);
    let server = start(&fake, |c| {
        c.kubernetes.authorize_with_sar = true;
        c.auth.mode = AuthMode::Token;
        c.auth.tokens = vec![
            TokenEntry { user: "alice".into(), token: Some(ALICE.into()), token_sha256: None },
            TokenEntry { user: "bob".into(), token: Some(BOB.into()), token_sha256: None },
        ];
    })
    .await;
    let alice = server.bearer(ALICE);
    let bob = server.bearer(BOB);
    let (status, body) = bob.post("/api/v1/sessions", json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body), "forbidden");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("bob") && message.contains("namespace kterm"), "{message}");
    assert!(live_pods(&fake, &server).is_empty(), "no pod for a denied user");
    assert_eq!(bob.get("/api/v1/backend").await.0, 403, "GET /api/v1/backend is for admins");

    let (status, body) = alice.post("/api/v1/sessions", json!({})).await;
    assert_eq!(status, 201, "{body}");
    let reviews = fake.request_count("create", "subjectaccessreviews");
    let (status, _) = alice.post("/api/v1/sessions", json!({})).await;
    assert_eq!(status, 201);
    assert_eq!(fake.request_count("create", "subjectaccessreviews"), reviews, "answers are cached");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_from_outside_ends_its_sessions() {
    let Some(fake) = cluster() else { return };
    let server = start(&fake, |_| {}).await;
    let session = server.create_running(json!({})).await;
    let id = session["id"].as_str().unwrap().to_string();
    let (namespace, pod) = pod_of(session["sandbox_id"].as_str().unwrap());
    let mut term = server.attach(&id).await;
    term.send("echo alive-$((40+2))\n").await;
    term.read_until("alive-42").await;

    assert!(fake.delete_pod(&namespace, &pod, Some(0)));
    let ended = eventually("the session to end", || async {
        let (_, body) = server.get(&format!("/api/v1/sessions/{id}")).await;
        (body["status"] != "running").then_some(body)
    })
    .await;
    assert!(matches!(ended["status"].as_str(), Some("terminated" | "failed")), "{ended}");
    // The client and the record say what happened to the pod.
    let reason = ended["end_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("sandbox_lost: ") && reason.contains(&pod), "{ended}");
    let exit = loop {
        match term.next().await {
            Event::Control(v) if v["type"] == "exit" => break v,
            Event::Closed(code) => panic!("closed ({code:?}) without exit"),
            _ => {}
        }
    };
    assert_eq!(exit["reason"].as_str(), Some(reason), "{exit}");
    fake.wait_gone(&namespace, &pod, Duration::from_secs(10)).await.unwrap();

    // The next session gets a new pod.
    let again = server.create_running(json!({})).await;
    assert_ne!(again["sandbox_id"], session["sandbox_id"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_api_server_and_sessions_work_again_after_it_returns() {
    let Some(fake) = cluster() else { return };
    let server = start(&fake, |_| {}).await;
    let ready = || async { server.http.get(server.url("/readyz")).send().await.unwrap() };
    assert_eq!(ready().await.status(), 200);
    server.create_running(json!({})).await;
    let (status, backend) = server.get("/api/v1/backend").await;
    assert_eq!(status, 200, "{backend}");
    assert_eq!(backend["kind"], "kubernetes");
    assert_eq!(backend["reachable"], true);
    assert_eq!(backend["server_version"], "v1.24.0+0");
    assert_eq!(backend["namespaces"], json!([{"name": "kterm", "sandboxes": 1, "running": 1}]));

    fake.pause();
    let reason = eventually("/readyz to say the API server is gone", || async {
        let response = ready().await;
        match response.status().as_u16() {
            503 => Some(response.text().await.unwrap()),
            _ => None,
        }
    })
    .await;
    assert!(reason.to_lowercase().contains("kubernetes"), "{reason}");
    let (status, body) = server.post("/api/v1/sessions", json!({})).await;
    assert_eq!(status, 503, "{body}");
    let (_, backend) = server.get("/api/v1/backend").await;
    assert_eq!(backend["reachable"], false, "{backend}");
    assert!(backend["reason"].as_str().is_some_and(|r| !r.is_empty()), "{backend}");

    fake.resume();
    eventually("/readyz to be 200 again", || async {
        (ready().await.status() == 200).then_some(())
    })
    .await;
    let session = server.create_running(json!({})).await;
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo back-$((1+1))\n").await;
    term.read_until("back-2").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_pod_ends_its_session_and_an_evicted_warm_pod_is_replaced() {
    let Some(fake) = cluster() else { return };
    let server = start(&fake, |c| {
        c.pool.min = 1;
        c.pool.max = 1;
        c.pool.health_interval = kterm::config::HumanDuration(Duration::from_millis(200));
    })
    .await;
    let warm_pod = || {
        live_pods(&fake, &server).into_iter().find(|p| {
            p.phase == "Running"
                && p.labels.get("kterm.io/role").map(String::as_str) == Some("warm")
        })
    };
    let warm = eventually("a warm pod", || async { warm_pod() }).await;
    assert!(fake.evict_pod(&warm.namespace, &warm.name, "The node was low on resource: memory."));
    eventually("the pool to replace the evicted warm pod", || async {
        warm_pod().filter(|p| p.name != warm.name).map(drop)
    })
    .await;

    let session = server.create_running(json!({})).await;
    let id = session["id"].as_str().unwrap().to_string();
    let (namespace, pod) = pod_of(session["sandbox_id"].as_str().unwrap());
    let mut term = server.attach(&id).await;
    term.send("echo up-$((2+3))\n").await;
    term.read_until("up-5").await;
    assert!(fake.evict_pod(&namespace, &pod, "The node was low on resource: memory."));
    let ended = eventually("the session of the evicted pod to end", || async {
        let (_, body) = server.get(&format!("/api/v1/sessions/{id}")).await;
        (body["status"] != "running").then_some(body)
    })
    .await;
    let reason = ended["end_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("sandbox_lost: ") && reason.contains("Evicted"), "{ended}");
    server.stop().await;
}
