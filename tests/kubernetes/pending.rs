//! A cold pod is slow, and says so: the session is `pending` at once, an attached client
//! follows the pod's phases (`status` messages) to `attached`, and a start that fails or is
//! called off ends the session with its reason, never a hang.

use std::time::Duration;

use serde_json::{json, Value};

use super::common::kube_fake::Delays;
use super::common::{eventually, TestServer};
use super::*;
use kterm::config::ImagePullPolicy;

/// A cluster whose pods take about 1.2 s from create to Running, each phase visible.
fn slow_cluster() -> Option<FakeApiServer> {
    cluster_with(|o| {
        o.delays = Delays {
            schedule: Duration::from_millis(300),
            kubelet: Duration::from_millis(200),
            pull: Duration::from_millis(400),
            start: Duration::from_millis(300),
            ..Delays::default()
        }
    })
}

async fn session(server: &TestServer, id: &str) -> Value {
    let (status, body) = server.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_pod_is_pending_and_its_client_follows_the_phases_to_the_shell() {
    let Some(fake) = slow_cluster() else { return };
    let server = start(&fake, |c| c.kubernetes.image_pull_policy = ImagePullPolicy::Always).await;
    let created = server.create(json!({"context": {"run_id": "cold-1"}})).await;
    assert_eq!(created["status"], "pending", "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(session(&server, &id).await["status"], "pending");
    let (_, listed) = server.get("/api/v1/sessions").await;
    assert!(
        listed["sessions"].as_array().unwrap().iter().any(|s| s["id"] == id.as_str()),
        "a pending session is listed: {listed}"
    );

    let (statuses, attached) = server.follow(&id).await;
    let mut term = attached.unwrap_or_else(|exit| panic!("the session did not start: {exit}"));
    let phases: Vec<&str> = statuses.iter().map(|s| s["phase"].as_str().unwrap()).collect();
    assert!(!phases.is_empty(), "no status before the shell");
    for phase in &phases {
        assert!(["scheduling", "pulling image", "starting"].contains(phase), "{statuses:?}");
    }
    assert!(phases.contains(&"pulling image"), "the pull is shown: {statuses:?}");
    term.send("echo ctx-$KTERM_CTX_RUN_ID-$((6*7))\n").await;
    term.read_until("ctx-cold-1-42").await;

    let running = session(&server, &id).await;
    assert_eq!(running["status"], "running", "{running}");
    let (namespace, pod) = pod_of(running["sandbox_id"].as_str().unwrap());
    assert!(fake.pod(&namespace, &pod).is_some());

    // A second tab goes into the same, running pod at once.
    let second = server.create(json!({})).await;
    assert_eq!(second["status"], "running", "{second}");
    assert_eq!(second["sandbox_id"], running["sandbox_id"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_of_a_pending_session_and_the_agent_api_wait_for_it() {
    let Some(fake) = slow_cluster() else { return };
    let server = start(&fake, |_| {}).await;
    let created = server.create(json!({})).await;
    assert_eq!(created["status"], "pending", "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    // A ticket, a second follower and an exec all work on a session that is still starting.
    let (status, ticket) = server.post(&format!("/api/v1/sessions/{id}/ticket"), json!({})).await;
    assert_eq!(status, 201, "{ticket}");
    let other = server.follow(&id);
    let exec_path = format!("/api/v1/sessions/{id}/exec");
    let exec = server.post(&exec_path, json!({"argv": ["sh", "-c", "echo from-exec-$((2*21))"]}));
    let ((_, first), (_, second), (status, ran)) = tokio::join!(server.follow(&id), other, exec);
    assert_eq!(status, 200, "{ran}");
    assert!(ran["stdout"].as_str().unwrap_or_default().contains("from-exec-42"), "{ran}");
    // The newest attach wins; the other is told it was taken over. Either way both got there.
    for term in [first, second] {
        term.unwrap_or_else(|exit| panic!("did not start: {exit}"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_ends_the_pending_session_with_the_reason() {
    let Some(fake) = slow_cluster() else { return };
    fake.fail_image_pull(IMAGE);
    let server = start(&fake, |_| {}).await;
    let created = server.create(json!({})).await;
    assert_eq!(created["status"], "pending", "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let (_, outcome) = server.follow(&id).await;
    let exit = outcome.err().expect("an exit, not a shell");
    let reason = exit["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("could not be pulled") && reason.contains(IMAGE), "{exit}");
    let failed = session(&server, &id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["end_reason"].as_str(), Some(reason), "{failed}");
    eventually("the failed pod to be deleted", || async {
        live_pods(&fake, &server).is_empty().then_some(())
    })
    .await;
    // A client that comes later is told the same.
    let (statuses, late) = server.follow(&id).await;
    assert!(statuses.is_empty());
    assert_eq!(late.err().expect("an exit")["reason"].as_str(), Some(reason));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pending_session_calls_off_its_pod() {
    let Some(fake) = cluster_with(|o| o.delays.schedule = Duration::from_secs(30)) else { return };
    let server = start(&fake, |c| c.sessions.max_per_user = 1).await;
    let created = server.create(json!({})).await;
    assert_eq!(created["status"], "pending", "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    eventually("the pod to be made", || async {
        (!live_pods(&fake, &server).is_empty()).then_some(())
    })
    .await;
    let follower = server.follow(&id);
    let delete = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.delete(&format!("/api/v1/sessions/{id}")).await
    };
    let ((statuses, outcome), status) = tokio::join!(follower, delete);
    assert_eq!(status, 204);
    assert_eq!(statuses.first().map(|s| s["phase"].clone()), Some(json!("scheduling")));
    assert_eq!(outcome.err().expect("an exit")["reason"], "deleted");
    let ended = session(&server, &id).await;
    assert_eq!(ended["status"], "terminated", "{ended}");
    assert_eq!(ended["end_reason"], "deleted", "{ended}");
    eventually("the pod to be deleted", || async {
        live_pods(&fake, &server).is_empty().then_some(())
    })
    .await;
    // Its place (the only one: max_per_user = 1) is free again.
    fake.set_delays(Delays::default());
    server.create_running(json!({})).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_nobody_can_schedule_fails_at_the_create_timeout_saying_why() {
    let Some(fake) = cluster() else { return };
    fake.set_unschedulable("kterm", Some("0/1 nodes are available: 1 Insufficient memory."));
    let server = start(&fake, |c| {
        c.sessions.create_timeout = kterm::config::HumanDuration(Duration::from_secs(2))
    })
    .await;
    let created = server.create(json!({})).await;
    assert_eq!(created["status"], "pending", "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (statuses, outcome) = server.follow(&id).await;
    assert!(
        statuses.iter().any(|s| s["phase"] == "scheduling"
            && s["detail"].as_str().is_some_and(|d| d.contains("Insufficient memory"))),
        "{statuses:?}"
    );
    let exit = outcome.err().expect("an exit");
    let reason = exit["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("create_timeout") && reason.contains("Insufficient memory"), "{exit}");
    assert_eq!(session(&server, &id).await["status"], "failed");
    eventually("the pod to be deleted", || async {
        live_pods(&fake, &server).is_empty().then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_reach_a_pending_session() {
    const ALICE: &str = "alice-token-0123456789abcdef";
    const BOB: &str = "bob-token-0123456789abcdef01";
    let Some(fake) = cluster_with(|o| o.delays.schedule = Duration::from_secs(30)) else { return };
    let server =
        start(&fake, |c| super::common::token_auth(c, &[("alice", ALICE), ("bob", BOB)], &[]))
            .await;
    let (alice, bob) = (server.bearer(ALICE), server.bearer(BOB));
    let created = alice.create(json!({})).await;
    assert_eq!(created["status"], "pending", "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    // To bob, alice's starting session does not exist: not listed, not found, not followed.
    let (_, listed) = bob.get("/api/v1/sessions").await;
    assert_eq!(listed["sessions"], json!([]), "{listed}");
    let path = format!("/api/v1/sessions/{id}");
    assert_eq!(bob.get(&path).await.0, 404);
    let (status, body) = bob.post(&format!("{path}/ticket"), json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = bob.post(&format!("{path}/exec"), json!({"argv": ["true"]})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(bob.ws_refused(&bob.ws_url(&id), None).await, 404);
    assert_eq!(bob.delete(&path).await, 404);
    assert_eq!(bob.get(&format!("{path}/files?path=/")).await.0, 404);

    // It is still alice's, still starting, and hers to delete.
    assert_eq!(alice.get(&path).await.1["status"], "pending");
    assert_eq!(alice.delete(&path).await, 204);
    assert_eq!(alice.get(&path).await.1["end_reason"], "deleted");
    eventually("the pod to be deleted", || async {
        live_pods(&fake, &server).is_empty().then_some(())
    })
    .await;
    server.stop().await;
}
