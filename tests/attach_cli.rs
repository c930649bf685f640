//! `kterm attach` and `kterm exec` as a user runs them: the real binary in a real terminal
//! (tmux, driven with send-keys and read with capture-pane) against an in-process server on
//! the local backend: typing, resize on SIGWINCH, the detach key; and exec's exit codes.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, TestServer};
use serde_json::json;

/// A tmux server of this test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        Tmux { socket: format!("kterm-test-{name}-{}", std::process::id()) }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// Waits until the pane shows `needle`.
    async fn shows(&self, needle: &str) -> String {
        let deadline = Instant::now() + common::WAIT;
        loop {
            let pane = self.capture();
            if pane.contains(needle) {
                return pane;
            }
            assert!(Instant::now() < deadline, "the pane never showed {needle:?}:\n{pane}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

fn have_tmux() -> bool {
    Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_types_resizes_and_detaches_under_tmux() {
    if !have_tmux() {
        return;
    }
    let server =
        TestServer::start_with(|c| c.backend.kind = kterm::config::BackendKind::Local).await;
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let tmux = Tmux::new("attach");
    let command = format!("{} attach {id} --server {}", env!("CARGO_BIN_EXE_kterm"), server.base);
    tmux.run(&["new-session", "-d", "-s", "t", "-x", "100", "-y", "30", &command]);

    // Typing reaches the shell; its answer shows in this terminal.
    tmux.shows("$").await;
    tmux.run(&["send-keys", "-t", "t", "echo typed-$((6*7))", "Enter"]);
    tmux.shows("typed-42").await;
    tmux.run(&["send-keys", "-t", "t", "stty size", "Enter"]);
    tmux.shows("30 100").await;

    // A resize of the terminal (SIGWINCH) resizes the session's.
    tmux.run(&["resize-window", "-t", "t", "-x", "90", "-y", "25"]);
    eventually("the shell sees the new size", || async {
        tmux.run(&["send-keys", "-t", "t", "clear; stty size", "Enter"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        tmux.capture().contains("25 90").then_some(())
    })
    .await;

    // The detach key leaves the session running.
    tmux.run(&["send-keys", "-t", "t", "C-]"]);
    tmux.shows("detached from session").await;
    let (_, session) = server.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(session["status"], "running", "{session}");

    // Attach again: the screen comes back, and typing still works.
    let tmux2 = Tmux::new("again");
    tmux2.run(&["new-session", "-d", "-s", "t", "-x", "90", "-y", "25", &command]);
    tmux2.shows("25 90").await;
    tmux2.run(&["send-keys", "-t", "t", "exit 3", "Enter"]);
    eventually("the session ends", || async {
        let (_, s) = server.get(&format!("/api/v1/sessions/{id}")).await;
        (s["status"] != "running").then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exits_with_the_commands_code() {
    let server =
        TestServer::start_with(|c| c.backend.kind = kterm::config::BackendKind::Local).await;
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let base = server.base.clone();
    let run = move |args: Vec<String>, stdin: &'static str| {
        let base = base.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = Command::new(env!("CARGO_BIN_EXE_kterm"))
                .args(["exec", &id, "--server", &base])
                .args(&args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        })
    };
    let out = run(
        vec!["--".into(), "sh".into(), "-c".into(), "echo out; echo err >&2; exit 7".into()],
        "",
    )
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = run(vec!["--".into(), "tr".into(), "a-z".into(), "A-Z".into()], "piped in\n")
        .await
        .unwrap();
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()),
        (Some(0), "PIPED IN\n")
    );
    let out =
        run(vec!["--timeout".into(), "1s".into(), "--".into(), "sleep".into(), "30".into()], "")
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(124), "killed at its timeout");
    server.stop().await;
}
