//! A session's whole life on the Kubernetes backend: cold pod, shell, resize, second tab,
//! files, contextual launch, delete; the warm pool; adoption after a restart.

use std::time::Duration;

use serde_json::json;

use super::common::files::Files;
use super::common::{eventually, TestServer};
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_pod_shell_resize_second_tab_files_context_and_delete() {
    let Some(fake) = cluster() else { return };
    let server = start(&fake, |_| {}).await;
    let first =
        server.create_running(json!({"cols": 90, "rows": 20, "context": {"run_id": "r-17"}})).await;
    assert_eq!(first["status"], "running", "{first}");
    assert_eq!(first["namespace"], "kterm", "kubernetes.namespace is the default");
    let sandbox = first["sandbox_id"].as_str().unwrap().to_string();
    let (namespace, pod) = pod_of(&sandbox);
    let pods = live_pods(&fake, &server);
    assert_eq!(pods.len(), 1, "one pod");
    let labels = &pods[0].labels;
    assert_eq!(
        (pods[0].namespace.as_str(), pods[0].name.as_str()),
        (namespace.as_str(), pod.as_str())
    );
    assert_eq!(labels["kterm.io/managed"], "true");
    assert_eq!(labels["kterm.io/user"], "anonymous");
    assert_eq!(labels["kterm.io/role"], "sandbox");
    assert_eq!(labels["kterm.io/profile"], "default");
    assert_eq!(pods[0].spec["automountServiceAccountToken"], false);

    let mut tab1 = server.attach(first["id"].as_str().unwrap()).await;
    tab1.send(
        "stty size; echo \"ctx=$KTERM_CTX_RUN_ID\"; echo shared > note-$((1+1)).txt; id -u; pwd\n",
    )
    .await;
    let out = tab1.read_until("/home/user/workspace").await;
    assert!(out.contains("20 90") && out.contains("ctx=r-17"), "{out}");
    assert!(out.contains("1000"), "runs as the configured uid: {out}");

    let second = server.create_running(json!({})).await;
    assert_eq!(second["sandbox_id"], sandbox.as_str(), "a user's tabs share one pod");
    let mut tab2 = server.attach(second["id"].as_str().unwrap()).await;
    tab2.resize(100, 33).await;
    tab2.send("cat note-2.txt; stty size\n").await;
    tab2.read_until("33 100").await;

    let files = Files::new(&server, first["id"].as_str().unwrap());
    assert_eq!(files.put("from-api.txt", b"via the files API\n".to_vec(), &[]).await.0, 204);
    let (status, _, body) = files.read("note-2.txt").await;
    assert_eq!((status, body.as_slice()), (200, b"shared\n".as_slice()));
    assert!(files.names("").await.contains("from-api.txt"));
    tab1.send("cat from-api.txt\n").await;
    tab1.read_until("via the files API").await;

    tab2.send("exit 3\n").await;
    let exit = tab2.next_control().await;
    assert_eq!((exit["type"].as_str(), exit["code"].as_i64()), (Some("exit"), Some(3)));
    assert_eq!(live_pods(&fake, &server).len(), 1, "the pod stays while a session uses it");

    assert_eq!(
        server.delete(&format!("/api/v1/sessions/{}", first["id"].as_str().unwrap())).await,
        204
    );
    fake.wait_gone(&namespace, &pod, Duration::from_secs(15)).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_pod_is_claimed_relabelled_and_replaced() {
    let Some(fake) = cluster() else { return };
    let server = start(&fake, |c| {
        c.pool.min = 1;
        c.pool.max = 1;
    })
    .await;
    let warm = eventually("a warm pod with its stub", || async {
        let (_, pool) = server.get("/api/v1/pool").await;
        let ready = pool["warm"] == 1;
        let pods = live_pods(&fake, &server);
        (ready && pods.len() == 1).then(|| pods[0].clone())
    })
    .await;
    assert_eq!(warm.labels["kterm.io/role"], "warm");
    assert!(!warm.labels.contains_key("kterm.io/user"));

    let session = server.create_running(json!({"context": {"run_id": "warm-1"}})).await;
    let (_, pod) = pod_of(session["sandbox_id"].as_str().unwrap());
    assert_eq!(pod, warm.name, "the warm pod was claimed");
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo \"claimed-$KTERM_CTX_RUN_ID\"\n").await;
    term.read_until("claimed-warm-1").await;
    fake.wait_pod(&warm.namespace, &warm.name, Duration::from_secs(10), |p| {
        p["metadata"]["labels"]["kterm.io/user"] == "anonymous"
            && p["metadata"]["labels"]["kterm.io/role"] == "sandbox"
    })
    .await
    .unwrap();
    let (_, pool) = server.get("/api/v1/pool").await;
    assert_eq!(pool["hits"], 1, "{pool}");
    eventually("the pool to replace the claimed pod", || async {
        live_pods(&fake, &server)
            .into_iter()
            .any(|p| {
                p.name != warm.name
                    && p.labels.get("kterm.io/role").map(String::as_str) == Some("warm")
            })
            .then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_adopts_the_users_pod_and_removes_its_own_orphans() {
    let Some(fake) = cluster() else { return };
    let linger = |c: &mut kterm::Config| {
        c.sandboxes.idle_timeout = kterm::config::HumanDuration(Duration::from_secs(600));
    };
    let server = start(&fake, linger).await;
    let session = server.create_running(json!({})).await;
    let sandbox = session["sandbox_id"].as_str().unwrap().to_string();
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo kept-across-restart > notes.txt; echo written-$((1+1))\n").await;
    term.read_until("written-2").await;
    drop(term);
    let dir = server.stop_keeping_state().await;
    let (namespace, pod) = pod_of(&sandbox);
    assert!(fake.pod(&namespace, &pod).is_some(), "a graceful stop keeps the user's pod");

    let server = TestServer::start_in(dir, |c| {
        configure(c, &fake);
        linger(c);
    })
    .await;
    let again = server.create_running(json!({})).await;
    assert_eq!(again["sandbox_id"], sandbox.as_str(), "the user's pod was adopted");
    let mut term = server.attach(again["id"].as_str().unwrap()).await;
    term.send("cat notes.txt\n").await;
    term.read_until("kept-across-restart\r\n").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_policy_guards_the_namespace_when_configured() {
    let Some(fake) = cluster() else { return };
    let server = start(&fake, |c| {
        c.kubernetes.network_policy = true;
        c.kubernetes.egress =
            vec![kterm::config::EgressRule { cidr: "10.96.0.1/32".into(), ports: vec![443] }];
    })
    .await;
    server.create_running(json!({})).await;
    server.create_running(json!({})).await;
    let made: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.verb == "create" && r.resource == "networkpolicies")
        .collect();
    assert_eq!(made.len(), 1, "one policy per namespace and run: {made:?}");
    assert_eq!(made[0].namespace, "kterm");
    assert!((200..300).contains(&made[0].code), "{made:?}");
    server.stop().await;
}
