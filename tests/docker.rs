//! The Docker backend against a real daemon: lifecycle, hardening seen from inside the sandbox,
//! isolation between users, and limits that stop only the sandbox.

mod common;

use std::time::Duration;

use common::docker::{self, Cleanup};
use common::{eventually, TestServer};
use kterm::session::{Caller, CreateSession};
use serde_json::json;

async fn docker_server(cleanup: &Cleanup, adjust: impl FnOnce(&mut kterm::Config)) -> TestServer {
    TestServer::start_with(|c| {
        docker::configure(c, cleanup);
        adjust(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_create_second_tab_shares_the_container_delete_removes_it() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |_| {}).await;
    let first = server.create(json!({"cols": 90, "rows": 20, "context": {"run_id": "r-1"}})).await;
    let sandbox = first["sandbox_id"].as_str().unwrap().to_string();
    assert_eq!(cleanup.containers(), vec![sandbox.clone()]);
    assert_eq!(docker::inspect(&sandbox, "{{index .Config.Labels \"kterm.io/managed\"}}"), "true");
    let instance = server.server.as_ref().unwrap().state().store.instance_id().to_string();
    assert_eq!(
        docker::inspect(&sandbox, "{{index .Config.Labels \"kterm.io/instance\"}}"),
        instance
    );
    assert!(
        docker::name(&sandbox).starts_with("kterm-anonymous-default-default-"),
        "the name says whose it is: {}",
        docker::name(&sandbox)
    );
    assert_eq!(
        docker::inspect(&sandbox, "{{index .Config.Labels \"kterm.io/profile\"}}"),
        "default"
    );

    let mut tab1 = server.attach(first["id"].as_str().unwrap()).await;
    tab1.send("stty size; echo \"ctx=$KTERM_CTX_RUN_ID\"; echo shared > note-$((1+1)).txt; pwd\n")
        .await;
    let out = tab1.read_until("/home/user/workspace").await;
    assert!(out.contains("20 90") && out.contains("ctx=r-1"), "{out}");

    let second = server.create(json!({})).await;
    assert_eq!(second["sandbox_id"], sandbox.as_str(), "a user's tabs share one container");
    let mut tab2 = server.attach(second["id"].as_str().unwrap()).await;
    tab2.resize(100, 33).await;
    tab2.send("cat note-2.txt; stty size\n").await;
    tab2.read_until("33 100").await;
    assert!(tab2.read_until("shared").await.contains("shared"));

    tab2.send("exit 3\n").await;
    let exit = tab2.next_control().await;
    assert_eq!((exit["type"].as_str(), exit["code"].as_i64()), (Some("exit"), Some(3)));
    assert_eq!(cleanup.containers().len(), 1, "the container stays while a session uses it");

    assert_eq!(
        server.delete(&format!("/api/v1/sessions/{}", first["id"].as_str().unwrap())).await,
        204
    );
    eventually("the container to be removed", || async {
        cleanup.containers().is_empty().then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_is_locked_down_from_inside() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |_| {}).await;
    let session = server.create(json!({})).await;
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send(concat!(
        "echo uid=$(id -u); touch /rootfs-test 2>&1; touch ok && echo workspace-writable; ",
        "grep -c : /proc/net/dev; grep -E 'CapEff|NoNewPrivs' /proc/self/status; ",
        "touch /tmp/t && echo tmp-writable; echo done-$((40+2))\n"
    ))
    .await;
    let out = term.read_until("done-42").await;
    assert!(out.contains("uid=1000"), "runs as the configured non-root user: {out}");
    assert!(out.contains("Read-only file system"), "the root filesystem is read-only: {out}");
    assert!(out.contains("workspace-writable") && out.contains("tmp-writable"), "{out}");
    assert!(out.contains("\r\n1\r\n"), "only one network interface (lo): {out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "no capabilities: {out}");
    assert!(out.contains("NoNewPrivs:\t1"), "no-new-privileges: {out}");
    let name = session["sandbox_id"].as_str().unwrap();
    assert_eq!(docker::inspect(name, "{{.HostConfig.NetworkMode}}"), "none");
    assert_eq!(docker::inspect(name, "{{.HostConfig.PidMode}}"), "");
    assert_eq!(
        docker::inspect(name, "{{.HostConfig.Privileged}} {{.HostConfig.Init}}"),
        "false true"
    );
    assert_eq!(docker::inspect(name, "{{len .HostConfig.Binds}}"), "0");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bombs_and_memory_hogs_stop_inside_the_sandbox_only() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server =
        docker_server(&cleanup, |c| c.docker.memory = kterm::config::ByteSize(64 << 20)).await;
    let registry = server.server.as_ref().unwrap().state().registry.clone();
    let bystander = registry
        .create(&Caller::user("bob"), CreateSession::default())
        .await
        .expect("bob's session");
    let victim = server.create(json!({})).await;

    // A fork loop hits the pids limit (64): forks fail inside, nothing else notices.
    let mut term = server.attach(victim["id"].as_str().unwrap()).await;
    // The shell reports "can't fork" and abandons the loop; nothing else notices.
    term.send(
        "i=0; while [ $i -lt 100 ]; do sleep 60 & i=$((i+1)); echo \"n=$((i+1000)).\"; done\n",
    )
    .await;
    let out = term.read_until("can't fork").await;
    let started = out
        .split("n=1")
        .skip(1)
        .filter_map(|rest| rest.split('.').next()?.parse::<u32>().ok())
        .max()
        .expect("some forks succeeded");
    assert!(started < 64, "the pids limit (64) stopped the loop, at {started}: {out}");
    // Builtins only, to clean up: nothing can be forked until the sleeps are gone.
    term.send(concat!(
        "for p in /proc/[0-9]*; do read c < $p/comm 2>/dev/null; ",
        "if [ \"$c\" = sleep ]; then kill ${p#/proc/}; fi; done; echo calm-$((1+2))\n"
    ))
    .await;
    term.read_until("calm-3").await;

    // A memory hog is OOM-killed inside its sandbox; the server and bob's session live on.
    term.send("x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived-${#x}\n").await;
    // Either the shell itself is killed (exit 137) or the pipeline is and the shell says so.
    let mut exit_code = None;
    loop {
        match term.next().await {
            common::Event::Output(data) => term.output.extend(data),
            common::Event::Control(message) if message["type"] == "exit" => {
                exit_code = message["code"].as_i64();
                break;
            }
            common::Event::Control(_) => {}
            common::Event::Closed(_) => break,
        }
        if String::from_utf8_lossy(&term.output).contains("survived-") {
            break;
        }
    }
    let out = String::from_utf8_lossy(&term.output).into_owned();
    assert!(
        !out.contains("survived-300000000"),
        "the hog got its 300 MB in a 64 MB sandbox: {out}"
    );
    assert!(exit_code == Some(137) || out.contains("survived-"), "exit {exit_code:?}: {out}");
    let oom = docker::inspect(victim["sandbox_id"].as_str().unwrap(), "{{.State.Running}}");
    assert_eq!(oom, "true", "the sandbox itself keeps running");
    let bob = registry.live(&kterm::session::Caller::user("bob"), &bystander.id).unwrap();
    assert!(!bob.has_exited());
    let mut bob_term = server.attach(&bystander.id).await;
    bob_term.send("echo bob-$((1+1))\n").await;
    bob_term.read_until("bob-2").await;
    let health = server.http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_never_share_a_container_even_under_concurrent_creates() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |_| {}).await;
    let registry = server.server.as_ref().unwrap().state().registry.clone();
    let mut tasks = Vec::new();
    for i in 0..10 {
        for _tab in 0..2 {
            let registry = registry.clone();
            tasks.push(tokio::spawn(async move {
                let user = format!("user{i}");
                let record = registry
                    .create(&Caller::user(&user), CreateSession::default())
                    .await
                    .expect("create");
                (user, record.sandbox_id)
            }));
        }
    }
    let mut by_user = std::collections::HashMap::<String, Vec<String>>::new();
    for task in tasks {
        let (user, sandbox) = task.await.unwrap();
        by_user.entry(user).or_default().push(sandbox);
    }
    let mut all = std::collections::HashSet::new();
    for (user, sandboxes) in &by_user {
        assert_eq!(sandboxes[0], sandboxes[1], "{user}'s two tabs share one sandbox");
        assert!(all.insert(sandboxes[0].clone()), "{user}'s sandbox is someone else's too");
        let name = docker::name(&sandboxes[0]);
        assert!(name.starts_with(&format!("kterm-{user}-")), "{user}'s sandbox is {name}");
    }
    assert_eq!(all.len(), 10);
    assert_eq!(cleanup.containers().len(), 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_a_clear_error_not_a_hang() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |c| {
        c.docker.image = "kterm-no-such-image:never".into();
        c.docker.pull = kterm::config::PullPolicy::Missing;
    })
    .await;
    let started = std::time::Instant::now();
    let (status, body) = server.post("/api/v1/sessions", json!({})).await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("kterm-no-such-image:never"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(cleanup.containers().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gvisor_runs_the_same_lifecycle_when_installed() {
    if !docker::available() {
        return;
    }
    if !docker::has_runtime("runsc") {
        eprintln!(
            "SKIPPED: the runsc runtime is not registered with Docker (apt-get install runsc)"
        );
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |c| {
        c.docker.runtime = "runsc".into();
        // gVisor's own threads count against the pids limit: 64 is too few for it.
        c.docker.pids_limit = 256;
    })
    .await;
    let session = server.create(json!({})).await;
    let sandbox = session["sandbox_id"].as_str().unwrap().to_string();
    assert_eq!(docker::inspect(&sandbox, "{{.HostConfig.Runtime}}"), "runsc");
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.send("echo uid=$(id -u); dmesg 2>/dev/null | head -1; echo gv-$((2*21))\n").await;
    let out = term.read_until("gv-42").await;
    assert!(out.contains("uid=1000"), "{out}");
    assert_eq!(
        server.delete(&format!("/api/v1/sessions/{}", session["id"].as_str().unwrap())).await,
        204
    );
    eventually("the gVisor container to be removed", || async {
        cleanup.containers().is_empty().then_some(())
    })
    .await;
    server.stop().await;
}

#[test]
fn kterm_image_build_builds_through_the_docker_api() {
    let print = std::process::Command::new(env!("CARGO_BIN_EXE_kterm"))
        .args(["image", "build", "--print"])
        .output()
        .unwrap();
    let recipe = String::from_utf8_lossy(&print.stdout);
    for tool in ["bash", "tmux", "vim", "less", "curl", "jq", "git", "python3", "kubectl", "1000"] {
        assert!(recipe.contains(tool), "the shipped recipe lacks {tool}");
    }
    if !docker::available() {
        return;
    }
    let base = docker::image();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("marker"), "built-by-kterm\n").unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(&dockerfile, format!("FROM {base}\nCOPY marker /marker\n")).unwrap();
    let tag = format!("kterm-test-built:{}", uuid::Uuid::new_v4().simple());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kterm"))
        .args(["image", "build", "--tag", &tag, "--dockerfile"])
        .arg(&dockerfile)
        .output()
        .unwrap();
    let cleanup_image = || std::process::Command::new("docker").args(["rmi", "-f", &tag]).output();
    let run = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", &tag, "cat", "/marker"])
        .output()
        .unwrap();
    let _ = cleanup_image();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&run.stdout), "built-by-kterm\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_volume_keeps_the_workspace_across_sandboxes() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let prefix = format!("kterm-test-{}-", &cleanup.id[..8]);
    let server =
        docker_server(&cleanup, |c| c.docker.workspace_volume_prefix = prefix.clone()).await;
    let first = server.create(json!({})).await;
    let mut term = server.attach(first["id"].as_str().unwrap()).await;
    term.send("echo persisted > kept.txt && echo wrote-$((1+1))\n").await;
    term.read_until("wrote-2").await;
    assert_eq!(
        server.delete(&format!("/api/v1/sessions/{}", first["id"].as_str().unwrap())).await,
        204
    );
    eventually("the first container to go", || async {
        cleanup.containers().is_empty().then_some(())
    })
    .await;

    let second = server.create(json!({})).await;
    assert_ne!(second["sandbox_id"], first["sandbox_id"]);
    let mut term = server.attach(second["id"].as_str().unwrap()).await;
    term.send("cat kept.txt\n").await;
    term.read_until("persisted\r\n").await;
    server.stop().await;
    let volumes = std::process::Command::new("docker")
        .args(["volume", "ls", "-q", "--filter"])
        .arg(format!("name={prefix}"))
        .output()
        .unwrap();
    let names: Vec<String> =
        String::from_utf8_lossy(&volumes.stdout).lines().map(str::to_string).collect();
    assert_eq!(names.len(), 1, "one volume for the one user: {names:?}");
    drop(cleanup);
    let volumes = std::process::Command::new("docker")
        .args(["volume", "ls", "-q", "--filter"])
        .arg(format!("name={prefix}"))
        .output()
        .unwrap();
    assert!(volumes.stdout.is_empty(), "the cleanup removes the test's volumes");
}
