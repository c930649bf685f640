//! The warm pool against a real Docker daemon: filling, claiming, concurrency without sharing,
//! hostile context through the pre-started shell, replacement, adoption, and scaling.

mod common;

use std::time::Duration;

use common::docker::{self, Cleanup};
use common::{eventually, TestServer};
use kterm::config::HumanDuration;
use kterm::session::{Caller, CreateSession};
use serde_json::{json, Value};

async fn pool_server(
    cleanup: &Cleanup,
    min: u32,
    max: u32,
    adjust: impl FnOnce(&mut kterm::Config),
) -> TestServer {
    TestServer::start_with(|c| {
        docker::configure(c, cleanup);
        c.pool.min = min;
        c.pool.max = max;
        c.pool.health_interval = HumanDuration(Duration::from_millis(300));
        adjust(c);
    })
    .await
}

async fn pool_status(server: &TestServer) -> Value {
    let (status, body) = server.get("/api/v1/pool").await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn warm_count(server: &TestServer, n: u64) -> Value {
    eventually(&format!("{n} warm sandboxes"), || async {
        let status = pool_status(server).await;
        (status["warm"].as_u64() == Some(n) && status["creating"] == 0).then_some(status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_fills_a_claim_is_a_hit_and_the_pool_refills() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = pool_server(&cleanup, 2, 2, |_| {}).await;
    let status = warm_count(&server, 2).await;
    let warm: Vec<String> = serde_json::from_value(status["sandboxes"].clone()).unwrap();
    for id in &warm {
        assert!(docker::name(id).starts_with("kterm-warm-default-default-"), "{id}");
    }

    let session = server.create(json!({"context": {"run_id": "warm-1"}})).await;
    let sandbox = session["sandbox_id"].as_str().unwrap().to_string();
    assert!(warm.contains(&sandbox), "the session got a warm sandbox");
    assert_eq!(server.metric("kterm_pool_hits_total").await, 1.0);
    // Labels cannot change; the name says whose the claimed sandbox is now.
    eventually("the claimed sandbox renamed for its user", || async {
        docker::name(&sandbox).starts_with("kterm-anonymous-default-default-").then_some(())
    })
    .await;
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo \"run=$KTERM_CTX_RUN_ID uid=$(id -u)\"; stty size; pwd\n").await;
    let out = term.read_until("/home/user/workspace").await;
    assert!(out.contains("run=warm-1 uid=1000") && out.contains("24 80"), "{out}");
    assert!(!out.contains("printf"), "the activation line is never shown: {out}");

    // The pool refills; the claimed sandbox is not in it any more.
    let status = warm_count(&server, 2).await;
    assert!(!status["sandboxes"].as_array().unwrap().iter().any(|s| s == sandbox.as_str()));

    // A second tab uses the sandbox's spare shell; deleting both removes the sandbox for good.
    let tab = eventually("a second tab", || async {
        Some(server.create(json!({"cols": 100, "rows": 30})).await)
    })
    .await;
    assert_eq!(tab["sandbox_id"], sandbox.as_str());
    let mut term2 = server.attach(tab["id"].as_str().unwrap()).await;
    term2.send("stty size\n").await;
    term2.read_until("30 100").await;
    for id in [&session["id"], &tab["id"]] {
        assert_eq!(server.delete(&format!("/api/v1/sessions/{}", id.as_str().unwrap())).await, 204);
    }
    eventually("the claimed sandbox to be deleted", || async {
        (!cleanup.containers().contains(&sandbox)).then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_users_at_once_with_a_pool_of_five_share_nothing() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = pool_server(&cleanup, 5, 5, |_| {}).await;
    warm_count(&server, 5).await;
    let (hits, misses) = common::create_concurrently_sharing_nothing(&server, 20).await;
    // All five warm ones are used; refills made during the burst may serve a few more.
    assert!((5.0..=8.0).contains(&hits), "hits {hits}, misses {misses}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_context_values_arrive_verbatim_through_the_warm_shell() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = pool_server(&cleanup, 1, 1, |_| {}).await;
    warm_count(&server, 1).await;
    let hostile =
        "it's \"$(touch /tmp/pwned)\" `touch /tmp/pwned2` $HOME\nline2; exit 3 \\ %s \u{e9}";
    let session =
        server.create(json!({"context": {"evil": hostile, "long": "x".repeat(1024)}})).await;
    assert_eq!(server.metric("kterm_pool_hits_total").await, 1.0);
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("printf '%s' \"$KTERM_CTX_EVIL\" | od -An -tx1 | tr -d ' \\n'; echo; echo ${#KTERM_CTX_LONG}; ls /tmp; echo end-$((5+5))\n").await;
    let out = term.read_until("end-10").await;
    let hex: String = hostile.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(out.contains(&hex), "the value arrived changed: {out}");
    assert!(out.contains("\r\n1024\r\n"), "{out}");
    assert!(!out.contains("pwned"), "a context value ran a command: {out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_sandbox_removed_from_outside_is_replaced_and_a_restart_adopts() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = pool_server(&cleanup, 2, 2, |_| {}).await;
    let status = warm_count(&server, 2).await;
    let victim = status["sandboxes"][0].as_str().unwrap().to_string();
    std::process::Command::new("docker").args(["rm", "-f", &victim]).output().unwrap();
    let status = eventually("the removed sandbox to be replaced", || async {
        let status = pool_status(&server).await;
        let ids = status["sandboxes"].as_array()?.clone();
        (ids.len() == 2 && !ids.iter().any(|s| s == victim.as_str())).then_some(status)
    })
    .await;
    let mut before: Vec<String> = serde_json::from_value(status["sandboxes"].clone()).unwrap();
    before.sort();

    let dir = server.stop_keeping_state().await;
    let server = TestServer::start_in(dir, |c| {
        docker::configure(c, &cleanup);
        c.pool.min = 2;
        c.pool.max = 2;
    })
    .await;
    let status = warm_count(&server, 2).await;
    let mut after: Vec<String> = serde_json::from_value(status["sandboxes"].clone()).unwrap();
    after.sort();
    assert_eq!(before, after, "the restart adopted the warm sandboxes instead of making new ones");
    assert_eq!(cleanup.containers().len(), 2);
    let session = server.create(json!({})).await;
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo adopted-$((6*7))\n").await;
    term.read_until("adopted-42").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_rises_under_a_burst_and_falls_back_when_idle() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    // The window must outlast filling three containers on a loaded machine (at 3 s, CI saw
    // the target fall back before the pool had reached it), and end within the wait after.
    let server =
        pool_server(&cleanup, 1, 4, |c| c.pool.window = HumanDuration(Duration::from_secs(8)))
            .await;
    warm_count(&server, 1).await;
    assert_eq!(pool_status(&server).await["target"], 1);
    let registry = server.state().registry.clone();
    for i in 0..3 {
        registry
            .create(&Caller::user(&format!("burst{i}")), CreateSession::default())
            .await
            .expect("create");
    }
    let status = pool_status(&server).await;
    assert_eq!(status["target"], 4, "three claims in the window raise the target: {status}");
    warm_count(&server, 4).await;
    eventually("the target to fall back to min when idle", || async {
        let status = pool_status(&server).await;
        (status["target"] == 1 && status["warm"] == 1).then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pool_when_min_and_max_are_zero() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = pool_server(&cleanup, 0, 0, |_| {}).await;
    let status = pool_status(&server).await;
    assert_eq!((status["enabled"].as_bool(), status["warm"].as_u64()), (Some(false), Some(0)));
    let session = server.create(json!({})).await;
    assert_eq!(cleanup.containers(), vec![session["sandbox_id"].as_str().unwrap().to_string()]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_namespace_and_profile_have_warm_sandboxes_of_their_own() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = pool_server(&cleanup, 0, 0, |c| {
        c.pool.namespaces.insert("ml".into(), kterm::config::PoolSize { min: 1, max: 1 });
        c.profiles = vec![kterm::config::ProfileConfig {
            name: "data".into(),
            memory: Some(kterm::config::ByteSize(96 << 20)),
            env: [("DATA_HOME".to_string(), "/home/user/workspace/data".to_string())].into(),
            ..Default::default()
        }];
    })
    .await;
    let status = warm_count(&server, 2).await;
    let warm: Vec<String> = serde_json::from_value(status["sandboxes"].clone()).unwrap();
    let session = server.create(json!({"namespace": "ml", "profile": "data"})).await;
    let sandbox = session["sandbox_id"].as_str().unwrap().to_string();
    assert!(warm.contains(&sandbox), "a warm claim in ml/data: {status}");
    assert_eq!(server.metric("kterm_pool_hits_total").await, 1.0);
    assert_eq!(docker::inspect(&sandbox, "{{.HostConfig.Memory}}"), (96u64 << 20).to_string());
    assert_eq!(docker::inspect(&sandbox, "{{index .Config.Labels \"kterm.io/namespace\"}}"), "ml");
    assert_eq!(docker::inspect(&sandbox, "{{index .Config.Labels \"kterm.io/profile\"}}"), "data");
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo \"$KTERM_NAMESPACE/$KTERM_PROFILE $DATA_HOME\"\n").await;
    term.read_until("ml/data /home/user/workspace/data").await;
    eventually("the claimed sandbox renamed for its user", || async {
        docker::name(&sandbox).starts_with("kterm-anonymous-ml-data-").then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_containers_killed_behind_our_back_are_never_handed_out() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    // Health checks are rare here: the claim itself must notice.
    let server = pool_server(&cleanup, 2, 2, |c| {
        c.pool.health_interval = HumanDuration(Duration::from_secs(120));
    })
    .await;
    let status = warm_count(&server, 2).await;
    let warm: Vec<String> = serde_json::from_value(status["sandboxes"].clone()).unwrap();
    let out = std::process::Command::new("docker").arg("kill").args(&warm).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let session = server.create(json!({})).await;
    assert_eq!(session["status"], "running");
    assert!(!warm.contains(&session["sandbox_id"].as_str().unwrap().to_string()));
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo alive-$((6*7))\n").await;
    term.read_until("alive-42").await;
    server.stop().await;
}
