//! The warm pool and the session registry against the fake engine (kterm's shared container
//! layer over real host processes, with injectable delays, failures and hangs): claims and
//! races, refill and scaling, health replacement, adoption after a restart, profiles and
//! namespaces, create timeouts, a hung engine, and an engine that fails half-way. These run
//! everywhere; tests/pool.rs and tests/docker.rs run the same layer on a real Docker.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, TestServer};
use kterm::config::{HumanDuration, PoolSize, ProfileConfig};
use kterm::sandbox::fake::{FakePlatform, Op};
use kterm::session::{Caller, CreateSession};
use serde_json::{json, Value};

/// A server on a new fake engine whose sandboxes live in the test's directory.
async fn fake_server(
    min: u32,
    max: u32,
    adjust: impl FnOnce(&mut kterm::Config),
) -> (TestServer, Arc<FakePlatform>) {
    fake_server_prepared(min, max, adjust, |_| {}).await
}

/// The same, with the engine `prepare`d (faults injected) before the server (and its pool)
/// starts.
async fn fake_server_prepared(
    min: u32,
    max: u32,
    adjust: impl FnOnce(&mut kterm::Config),
    prepare: impl FnOnce(&FakePlatform),
) -> (TestServer, Arc<FakePlatform>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("engine");
    std::fs::create_dir_all(&root).unwrap();
    let fake = FakePlatform::new(&root);
    prepare(&fake);
    let server = TestServer::start_fake(dir, &fake, |c| {
        c.sessions.command = Vec::new();
        c.sessions.max_per_user = 20;
        c.pool.min = min;
        c.pool.max = max;
        c.pool.health_interval = HumanDuration(Duration::from_millis(200));
        adjust(c);
    })
    .await;
    (server, fake)
}

async fn pool_status(server: &TestServer) -> Value {
    let (status, body) = server.get("/api/v1/pool").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the pool holds `n` warm sandboxes and makes none.
async fn warm(server: &TestServer, n: u64) -> Value {
    eventually(&format!("{n} warm sandboxes"), || async {
        let status = pool_status(server).await;
        (status["warm"].as_u64() == Some(n) && status["creating"] == 0).then_some(status)
    })
    .await
}

fn ids(status: &Value) -> Vec<String> {
    serde_json::from_value(status["sandboxes"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_claim_gets_a_live_shell_and_the_pool_refills() {
    let (server, fake) = fake_server(2, 2, |_| {}).await;
    let before = ids(&warm(&server, 2).await);
    let creates = fake.calls(Op::Create);

    let session =
        server.create(json!({"cols": 100, "rows": 30, "context": {"run_id": "r-7"}})).await;
    let sandbox = session["sandbox_id"].as_str().unwrap().to_string();
    assert!(before.contains(&sandbox), "the session got a warm sandbox");
    assert_eq!(server.metric("kterm_pool_hits_total").await, 1.0);
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo \"run=$KTERM_CTX_RUN_ID profile=$KTERM_PROFILE\"; stty size\n").await;
    let out = term.read_until("30 100").await;
    assert!(out.contains("run=r-7 profile=default"), "{out}");
    assert!(!out.contains("set --"), "the activation line is never shown: {out}");

    // The claimed sandbox now says whose it is; the pool made one more to refill.
    eventually("the owner shown", || async { (fake.calls(Op::ShowOwner) == 1).then_some(()) })
        .await;
    let after = ids(&warm(&server, 2).await);
    assert!(!after.contains(&sandbox));
    assert_eq!(fake.calls(Op::Create), creates + 1);

    // The user's second tab starts from the sandbox's spare shell: no new exec is made for it
    // once the spare is there.
    let spare_ready = eventually("a spare shell", || async {
        (fake.calls(Op::ExecTty) >= 4).then_some(fake.calls(Op::ExecTty))
    })
    .await;
    let tab = server.create(json!({})).await;
    assert_eq!(tab["sandbox_id"], sandbox.as_str());
    let mut term2 = server.attach(tab["id"].as_str().unwrap()).await;
    term2.send("echo second-$((2+2))\n").await;
    term2.read_until("second-4").await;
    let spare_execs = fake.calls(Op::ExecTty) - spare_ready;
    assert!(spare_execs <= 1, "the second tab used the spare (new execs: {spare_execs})");

    for id in [&session["id"], &tab["id"]] {
        assert_eq!(server.delete(&format!("/api/v1/sessions/{}", id.as_str().unwrap())).await, 204);
    }
    eventually("the claimed sandbox removed", || async {
        (!fake.ids().contains(&sandbox)).then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_never_share_a_sandbox() {
    let (server, _fake) = fake_server(5, 5, |_| {}).await;
    warm(&server, 5).await;
    let (hits, _) = common::create_concurrently_sharing_nothing(&server, 20).await;
    assert!(hits >= 5.0, "the five warm ones were used: hits {hits}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_that_keep_coming_do_not_hold_the_refill_back() {
    // The refill waits a moment after a claim (so the claimed shell gets the engine first),
    // but not for as long as claims keep coming: it starts while warm sandboxes are left.
    let (server, fake) = fake_server(20, 20, |_| {}).await;
    warm(&server, 20).await;
    let creates = fake.calls(Op::Create);
    let registry = server.state().registry.clone();
    let mut claims = 0;
    while fake.calls(Op::Create) == creates {
        assert!(claims < 18, "{claims} claims, 10 ms apart, and still no refill");
        registry
            .create(&Caller::user(&format!("u{claims}")), CreateSession::default())
            .await
            .unwrap();
        claims += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_follows_claims_and_falls_back_to_min() {
    let (server, _fake) =
        fake_server(1, 4, |c| c.pool.window = HumanDuration(Duration::from_secs(2))).await;
    warm(&server, 1).await;
    for i in 0..3 {
        server
            .state()
            .registry
            .create(&Caller::user(&format!("s{i}")), CreateSession::default())
            .await
            .unwrap();
    }
    let status = pool_status(&server).await;
    assert_eq!(status["target"], 4, "three claims in the window raise the target: {status}");
    warm(&server, 4).await;
    // With no claim in the window the surplus goes.
    warm(&server, 1).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_sandbox_whose_shell_died_is_never_handed_out() {
    let (server, fake) = fake_server(2, 2, |c| {
        // Slow health checks: the claim itself must notice.
        c.pool.health_interval = HumanDuration(Duration::from_secs(60));
    })
    .await;
    let before = ids(&warm(&server, 2).await);
    for id in &before {
        fake.kill_processes(id);
    }
    let session = server.create(json!({})).await;
    let sandbox = session["sandbox_id"].as_str().unwrap();
    assert!(!before.iter().any(|id| id == sandbox), "a sandbox with a dead shell was handed out");
    assert_eq!(session["status"], "running");
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo alive-$((6*7))\n").await;
    term.read_until("alive-42").await;
    eventually("the dead ones removed", || async {
        before.iter().all(|id| !fake.ids().contains(id)).then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_replaces_dead_and_vanished_warm_sandboxes() {
    let (server, fake) = fake_server(2, 2, |_| {}).await;
    let before = ids(&warm(&server, 2).await);
    fake.remove_from_outside(&before[0]);
    fake.kill_processes(&before[1]);
    eventually("both replaced", || async {
        let now = ids(&pool_status(&server).await);
        (now.len() == 2 && now.iter().all(|id| !before.contains(id))).then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_adopts_warm_and_claimed_sandboxes() {
    let (server, fake) = fake_server(1, 1, |_| {}).await;
    warm(&server, 1).await;
    let session = server.create(json!({})).await;
    let sandbox = session["sandbox_id"].as_str().unwrap().to_string();
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo kept > notes.txt; echo wrote-$((1+1))\n").await;
    term.read_until("wrote-2").await;
    let warm_before = ids(&warm(&server, 1).await);
    let creates = fake.calls(Op::Create);

    let dir = server.stop_keeping_state().await;
    let server = TestServer::start_fake(dir, &fake, |c| {
        c.sessions.command = Vec::new();
        c.pool.min = 1;
        c.pool.max = 1;
    })
    .await;
    assert_eq!(ids(&warm(&server, 1).await), warm_before, "the warm sandbox was adopted");
    let again = server.create(json!({})).await;
    assert_eq!(again["sandbox_id"], sandbox.as_str(), "the user's sandbox was adopted");
    let mut term = server.attach(again["id"].as_str().unwrap()).await;
    term.send("cat notes.txt\n").await;
    term.read_until("kept\r\n").await;
    assert_eq!(fake.calls(Op::Create), creates, "nothing was made anew");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_namespaces_and_profiles_have_their_own_warm_pools() {
    let (server, fake) = fake_server(0, 0, |c| {
        c.pool.namespaces.insert("ml".into(), PoolSize { min: 1, max: 1 });
        c.profiles = vec![ProfileConfig {
            name: "data".into(),
            description: "Data tools".into(),
            env: [("DATA_HOME".to_string(), "/data".to_string())].into(),
            init: Some("export FROM_PROFILE=yes".into()),
            groups: vec!["analysts".into()],
            ..ProfileConfig::default()
        }];
        c.auth.groups.insert("analysts".into(), vec!["anonymous".into()]);
    })
    .await;
    let status = warm(&server, 2).await;
    let keys: Vec<(String, String)> = status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["warm"] == 1)
        .map(|k| (k["namespace"].as_str().unwrap().into(), k["profile"].as_str().unwrap().into()))
        .collect();
    assert_eq!(keys, [("ml".into(), "data".into()), ("ml".into(), "default".into())]);
    let warm_ids = ids(&status);

    let (code, profiles) = server.get("/api/v1/profiles").await;
    assert_eq!(code, 200);
    assert_eq!(profiles["profiles"][1]["name"], "data");

    let session = server.create(json!({"namespace": "ml", "profile": "data"})).await;
    assert_eq!(session["profile"], "data");
    assert!(
        warm_ids.iter().any(|id| id == session["sandbox_id"].as_str().unwrap()),
        "a warm claim in ml/data"
    );
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo \"$KTERM_NAMESPACE/$KTERM_PROFILE $DATA_HOME $FROM_PROFILE\"\n").await;
    term.read_until("ml/data /data yes").await;

    // The same user's default-profile tab in ml is another sandbox.
    let other = server.create(json!({"namespace": "ml"})).await;
    assert_ne!(other["sandbox_id"], session["sandbox_id"]);
    assert_eq!(server.metric("kterm_pool_hits_total").await, 2.0);
    let (code, body) = server.post("/api/v1/sessions", json!({"profile": "nope"})).await;
    assert_eq!((code, common::error_code(&body)), (400, "bad_request"), "{body}");
    drop(fake);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_some_users_may_not_use_is_403_and_not_listed() {
    let (server, _fake) = fake_server(0, 0, |c| {
        c.profiles = vec![ProfileConfig {
            name: "ops".into(),
            users: vec!["root-team".into()],
            ..ProfileConfig::default()
        }];
    })
    .await;
    let (_, profiles) = server.get("/api/v1/profiles").await;
    let names: Vec<&str> = profiles["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["default"]);
    let (code, body) = server.post("/api/v1/sessions", json!({"profile": "ops"})).await;
    assert_eq!((code, common::error_code(&body)), (403, "forbidden"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_engine_fails_the_create_at_its_deadline_and_holds_up_nobody() {
    let (server, fake) = fake_server(0, 0, |c| {
        c.sessions.create_timeout = HumanDuration(Duration::from_secs(1));
        c.sessions.idle_timeout = HumanDuration(Duration::from_millis(600));
        c.sessions.warn_before = HumanDuration(Duration::ZERO);
    })
    .await;
    // Bob's idle session must be reaped on time while alice's create hangs.
    let bob = server
        .state()
        .registry
        .create(&Caller::user("bob"), CreateSession::default())
        .await
        .unwrap();
    fake.hang(Op::Create);
    let started = Instant::now();
    let (code, body) = server.post("/api/v1/sessions", json!({})).await;
    let took = started.elapsed();
    assert_eq!((code, common::error_code(&body)), (503, "backend_unavailable"), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("sessions.create_timeout"),
        "{body}"
    );
    assert!(took < Duration::from_secs(3), "the create answered after {took:?}");
    eventually("bob's idle session reaped", || async {
        let (_, s) = server.get(&format!("/api/v1/sessions/{}", bob.id)).await;
        (s["status"] == "terminated").then_some(())
    })
    .await;
    // The engine comes back: the sandbox it made late is removed, nobody waits for it.
    fake.release(Op::Create);
    eventually("the late sandbox removed", || async { fake.ids().is_empty().then_some(()) }).await;
    let session = server.create(json!({})).await;
    assert_eq!(session["status"], "running");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_failing_half_way_leaks_nothing_and_recovers() {
    let (server, fake) = fake_server(0, 0, |_| {}).await;
    // The sandbox is made, then the shell cannot start.
    fake.fail(Op::ExecTty, 1);
    let (code, body) = server.post("/api/v1/sessions", json!({})).await;
    assert_eq!(code, 503, "{body}");
    eventually("the half-made sandbox removed", || async { fake.ids().is_empty().then_some(()) })
        .await;
    let (_, all) = server.get("/api/v1/sessions?all=true").await;
    assert_eq!(all["sessions"][0]["status"], "failed", "{all}");
    // Then the engine works again.
    let session = server.create(json!({})).await;
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo ok-$((3+4))\n").await;
    term.read_until("ok-7").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_rides_out_failed_creations() {
    // The failures are there before the pool starts making sandboxes.
    let (server, fake) = fake_server_prepared(2, 2, |_| {}, |f| f.fail(Op::Create, 3)).await;
    let status = warm(&server, 2).await;
    assert!(fake.calls(Op::Create) >= 5, "failed creations were retried");
    assert_eq!(ids(&status).len(), 2);
    // A stub that fails to start takes its sandbox with it.
    let before = fake.ids().len();
    fake.fail(Op::ExecTty, 1);
    let session = server.create(json!({})).await;
    assert_eq!(session["status"], "running");
    warm(&server, 2).await;
    assert!(fake.ids().len() <= before + 1, "no half-made sandbox was left");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_while_the_engine_hangs_says_so_then_the_session_ends() {
    let (server, fake) = fake_server(0, 0, |_| {}).await;
    let session = server.create(json!({})).await;
    let id = session["id"].as_str().unwrap().to_string();
    // Ending a session is an exec in the sandbox; it hangs.
    fake.hang(Op::Exec);
    let started = Instant::now();
    let response =
        server.http.delete(server.url(&format!("/api/v1/sessions/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(8), "DELETE took {:?}", started.elapsed());
    let (_, still) = server.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(still["status"], "running", "a session not ended is not reported ended");
    fake.release(Op::Exec);
    eventually("the session ended", || async {
        let (_, s) = server.get(&format!("/api/v1/sessions/{id}")).await;
        (s["status"] == "terminated").then_some(())
    })
    .await;
    server.stop().await;
}
