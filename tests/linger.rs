//! Sandboxes that outlive their last session (`sandboxes.idle_timeout`), the sandboxes API
//! (`GET /api/v1/sandboxes`, `DELETE /api/v1/sandboxes/{id}`: the caller's own, all for
//! admins, another user's is 404), and a maximum lifetime kept across a restart. On the fake
//! engine (kterm's shared container layer over host processes), so they run everywhere;
//! tests/docker_persist.rs runs the same on a real Docker.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Client, TestServer};
use kterm::config::HumanDuration;
use kterm::sandbox::fake::FakePlatform;
use serde_json::{json, Value};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789abc";
const ROOT: &str = "root-token-0123456789abc";

fn configure(c: &mut kterm::Config, linger: Duration) {
    common::token_auth(c, &[("alice", ALICE), ("bob", BOB), ("root", ROOT)], &["root"]);
    c.sessions.command = Vec::new();
    c.pool.min = 0;
    c.pool.max = 0;
    c.sandboxes.idle_timeout = HumanDuration(linger);
}

async fn start(dir: tempfile::TempDir, fake: &Arc<FakePlatform>, linger: Duration) -> TestServer {
    TestServer::start_fake(dir, fake, |c| configure(c, linger)).await
}

fn new_fake() -> (tempfile::TempDir, Arc<FakePlatform>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("engine");
    std::fs::create_dir_all(&root).unwrap();
    let fake = FakePlatform::new(&root);
    (dir, fake)
}

async fn sandboxes(client: &Client) -> Vec<Value> {
    let (status, body) = client.get("/api/v1/sandboxes").await;
    assert_eq!(status, 200, "{body}");
    body["sandboxes"].as_array().cloned().unwrap_or_default()
}

fn id(value: &Value) -> String {
    value["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_outlives_its_last_session_and_the_next_tab_finds_its_files() {
    let (dir, fake) = new_fake();
    let server = start(dir, &fake, Duration::from_secs(2)).await;
    let alice = server.bearer(ALICE);
    let first = alice.create(json!({})).await;
    let sandbox = first["sandbox_id"].as_str().unwrap().to_string();
    let mut term = alice.attach(&id(&first)).await;
    term.send("echo kept-while-lingering > notes.txt; echo wrote-$((2+3))\n").await;
    term.read_until("wrote-5").await;
    assert_eq!(alice.delete(&format!("/api/v1/sessions/{}", id(&first))).await, 204);

    // The shell ended; the sandbox stays, with no session and a removal time.
    let listed = sandboxes(&alice).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], sandbox.as_str());
    assert_eq!(listed[0]["sessions"], 0);
    assert!(listed[0]["idle_expires_at"].is_string(), "{listed:?}");
    assert_eq!(fake.ids(), vec![sandbox.clone()]);

    // A new tab within the time lands in it, with its files.
    let second = alice.create(json!({})).await;
    assert_eq!(second["sandbox_id"], sandbox.as_str(), "the same sandbox");
    let listed = sandboxes(&alice).await;
    assert_eq!(
        (listed[0]["sessions"].as_u64(), listed[0]["idle_expires_at"].is_null()),
        (Some(1), true)
    );
    let mut term = alice.attach(&id(&second)).await;
    term.send("cat notes.txt\n").await;
    term.read_until("kept-while-lingering\r\n").await;
    term.close().await;

    // Closed again and left alone: removed after sandboxes.idle_timeout.
    assert_eq!(alice.delete(&format!("/api/v1/sessions/{}", id(&second))).await, 204);
    eventually("the lingering sandbox removed", || async { fake.ids().is_empty().then_some(()) })
        .await;
    assert!(sandboxes(&alice).await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_are_the_callers_and_end_on_request() {
    let (dir, fake) = new_fake();
    let server = start(dir, &fake, Duration::from_secs(600)).await;
    let (alice, bob, root) = (server.bearer(ALICE), server.bearer(BOB), server.bearer(ROOT));
    let session = alice.create(json!({})).await;
    let sandbox = session["sandbox_id"].as_str().unwrap().to_string();
    let mut term = alice.attach(&id(&session)).await;
    term.send("echo ready-$((6*7))\n").await;
    term.read_until("ready-42").await;

    assert!(sandboxes(&bob).await.is_empty(), "bob sees none of alice's");
    let everyone = sandboxes(&root).await;
    assert_eq!(everyone.len(), 1);
    assert_eq!(
        (everyone[0]["user"].as_str(), everyone[0]["sessions"].as_u64()),
        (Some("alice"), Some(1))
    );
    assert_eq!(everyone[0]["namespace"], "default");
    assert_eq!(everyone[0]["profile"], "default");
    assert!(everyone[0]["expires_at"].is_string() && everyone[0]["created_at"].is_string());
    assert_eq!(everyone[0]["workspace"], "temporary");

    // Another user's sandbox is 404 (and stays); an unknown or hostile id too.
    let path = format!("/api/v1/sandboxes/{sandbox}");
    assert_eq!(bob.delete(&path).await, 404);
    assert_eq!(bob.delete("/api/v1/sandboxes/..%2F..%2Fetc").await, 404);
    assert_eq!(server.anonymous().delete(&path).await, 401);
    assert_eq!(fake.ids(), vec![sandbox.clone()]);

    // The owner ends it: the session ends (the client is told why), the sandbox goes.
    assert_eq!(alice.delete(&path).await, 204);
    let exit = term.next_control().await;
    assert_eq!(exit["type"], "exit", "{exit}");
    assert_eq!(exit["reason"], "sandbox_deleted", "{exit}");
    assert!(fake.ids().is_empty(), "removed before the answer");
    let (_, ended) = alice.get(&format!("/api/v1/sessions/{}", id(&session))).await;
    assert_eq!(
        (ended["status"].as_str(), ended["end_reason"].as_str()),
        (Some("terminated"), Some("sandbox_deleted"))
    );
    assert!(sandboxes(&root).await.is_empty());
    assert_eq!(alice.delete(&path).await, 404, "gone");

    // An admin may end anyone's; the next tab gets a new sandbox.
    let again = alice.create(json!({})).await;
    assert_ne!(again["sandbox_id"], sandbox.as_str());
    let path = format!("/api/v1/sandboxes/{}", again["sandbox_id"].as_str().unwrap());
    assert_eq!(root.delete(&path).await, 204);
    assert!(fake.ids().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maximum_lifetime_is_kept_across_a_restart() {
    let (dir, fake) = new_fake();
    let server = start(dir, &fake, Duration::from_secs(600)).await;
    let alice = server.bearer(ALICE);
    let first = alice.create(json!({})).await;
    let deadline = first["expires_at"].as_str().unwrap().to_string();
    let listed = sandboxes(&alice).await;
    assert_eq!(listed[0]["expires_at"], deadline.as_str());
    // A second tab does not extend it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = alice.create(json!({})).await;
    assert_eq!(second["expires_at"], deadline.as_str());

    let dir = server.stop_keeping_state().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let server = start(dir, &fake, Duration::from_secs(600)).await;
    let alice = server.bearer(ALICE);
    let listed = sandboxes(&alice).await;
    assert_eq!(listed.len(), 1, "adopted: {listed:?}");
    assert_eq!(listed[0]["expires_at"], deadline.as_str(), "the deadline survived the restart");
    let third = alice.create(json!({})).await;
    assert_eq!(third["sandbox_id"], first["sandbox_id"]);
    assert_eq!(third["expires_at"], deadline.as_str(), "counted from when it became alice's");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingering_sandbox_goes_at_its_maximum_lifetime() {
    let (dir, fake) = new_fake();
    let server = TestServer::start_fake(dir, &fake, |c| {
        configure(c, Duration::from_secs(600));
        c.sessions.max_lifetime = HumanDuration(Duration::from_secs(3));
        c.sessions.warn_before = HumanDuration(Duration::ZERO);
    })
    .await;
    let alice = server.bearer(ALICE);
    let session = alice.create(json!({})).await;
    assert_eq!(alice.delete(&format!("/api/v1/sessions/{}", id(&session))).await, 204);
    assert_eq!(fake.ids().len(), 1, "it lingers");
    eventually("removed at its lifetime's end", || async { fake.ids().is_empty().then_some(()) })
        .await;
    server.stop().await;
}
