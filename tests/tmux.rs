//! Shells that survive kterm, on the fake engine (host processes, the host's tmux): with
//! `sessions.persistence = "tmux"` a graceful restart leaves each shell running in its tmux
//! server, and the next start attaches to it again: same shell, variables, background jobs.
//! tests/docker_persist.rs does the same on Docker, after a `kill -9`.

mod common;

use std::time::Duration;

use common::TestServer;
use kterm::config::{HumanDuration, Persistence};
use kterm::sandbox::fake::FakePlatform;
use serde_json::json;

fn has_tmux() -> bool {
    let found =
        std::process::Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: no tmux on this host");
    }
    found
}

fn configure(c: &mut kterm::Config) {
    c.sessions.persistence = Persistence::Tmux;
    c.sessions.command = vec!["bash".into(), "--noprofile".into(), "--norc".into()];
    c.pool.min = 0;
    c.pool.max = 0;
    c.sandboxes.idle_timeout = HumanDuration(Duration::from_secs(600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_keeps_the_shell_its_variables_and_its_jobs() {
    if !has_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("engine");
    std::fs::create_dir_all(&root).unwrap();
    let fake = FakePlatform::new(&root);
    let server = TestServer::start_fake(dir, &fake, configure).await;
    let session = server.create(json!({"cols": 100, "rows": 30})).await;
    let id = session["id"].as_str().unwrap().to_string();
    let mut term = server.attach(&id).await;
    term.send("export KEPT=v-$((6*7)); sleep 1234 & echo started-$((1+1))\n").await;
    term.read_until("started-2").await;
    term.send("echo in-tmux=${TMUX:-no}\n").await;
    term.read_until("in-tmux=no").await;
    drop(term);

    let dir = server.stop_keeping_state().await;
    let server = TestServer::start_fake(dir, &fake, configure).await;
    let (_, listed) = server.get("/api/v1/sessions").await;
    assert_eq!(listed["sessions"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["sessions"][0]["status"], "running", "{listed}");
    let mut term = server.attach(&id).await;
    term.send("echo kept=$KEPT; jobs\n").await;
    term.read_until("kept=v-42").await;
    term.read_until("sleep 1234").await;

    // Exit codes still reach kterm through tmux.
    term.send("kill %1; wait; exit 7\n").await;
    let exit = term.next_control().await;
    assert_eq!((exit["type"].as_str(), exit["code"].as_i64()), (Some("exit"), Some(7)), "{exit}");
    server.stop().await;
}
