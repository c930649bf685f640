//! Sandboxes and shells that outlive what ends them, on a real Docker: a sandbox kept after
//! its last session (`sandboxes.idle_timeout`) and ended on request, and a graceful stop with
//! `server.on_shutdown = "keep"` and `"delete"`; the real binary killed with `kill -9` while
//! shells run: with tmux (an image built FROM scratch out of the host's tmux, bash and
//! busybox) the same shell comes back, without it the session ends with `server_restart`.
//! Every container is removed by the test's
//! guard, and each test checks that none of its own is left.

mod common;

use std::time::Duration;

use common::docker::{self, Cleanup};
use common::{RealServer, Terminal, TestServer};
use kterm::config::{HumanDuration, OnShutdown};
use serde_json::json;

fn id(value: &serde_json::Value) -> String {
    value["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_sandbox_lingers_after_its_last_tab_and_ends_on_request() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = TestServer::start_with(|c| {
        docker::configure(c, &cleanup);
        c.sandboxes.idle_timeout = HumanDuration(Duration::from_secs(600));
    })
    .await;
    let first = server.create(json!({})).await;
    let sandbox = first["sandbox_id"].as_str().unwrap().to_string();
    let mut term = server.attach(&id(&first)).await;
    term.send("echo in-the-workspace > kept.txt; echo wrote-$((1+2))\n").await;
    term.read_until("wrote-3").await;
    assert_eq!(server.delete(&format!("/api/v1/sessions/{}", id(&first))).await, 204);
    assert_eq!(cleanup.containers().len(), 1, "the container outlives its last session");

    let second = server.create(json!({})).await;
    assert_eq!(second["sandbox_id"], sandbox.as_str());
    let mut term = server.attach(&id(&second)).await;
    term.send("cat kept.txt\n").await;
    term.read_until("in-the-workspace\r\n").await;

    let (status, listed) = server.get("/api/v1/sandboxes").await;
    assert_eq!(status, 200);
    assert_eq!(listed["sandboxes"][0]["id"], sandbox.as_str(), "{listed}");
    assert_eq!(listed["sandboxes"][0]["sessions"], 1);
    assert_eq!(server.delete(&format!("/api/v1/sandboxes/{sandbox}")).await, 204);
    let exit = term.next_control().await;
    assert_eq!(exit["reason"], "sandbox_deleted", "{exit}");
    assert!(cleanup.containers().is_empty(), "the container is removed");
    server.stop().await;
    assert!(cleanup.containers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_keeps_or_deletes_the_sandboxes_as_configured() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    // keep (the default): the next start adopts the sandbox.
    let server = TestServer::start_with(|c| docker::configure(c, &cleanup)).await;
    let session = server.create(json!({})).await;
    let sandbox = session["sandbox_id"].as_str().unwrap().to_string();
    let dir = server.stop_keeping_state().await;
    assert_eq!(cleanup.containers().len(), 1, "kept");
    let server = TestServer::start_in(dir, |c| {
        docker::configure(c, &cleanup);
        c.server.on_shutdown = OnShutdown::Delete;
    })
    .await;
    let again = server.create(json!({})).await;
    assert_eq!(again["sandbox_id"], sandbox.as_str(), "adopted");

    // delete: sessions end, every sandbox of the instance goes.
    let dir = server.stop_keeping_state().await;
    assert!(cleanup.containers().is_empty(), "deleted at the stop");
    let server = TestServer::start_in(dir, |c| docker::configure(c, &cleanup)).await;
    let (_, ended) = server.get(&format!("/api/v1/sessions/{}", id(&again))).await;
    assert_eq!(ended["status"], "terminated", "{ended}");
    assert_eq!(ended["end_reason"], "server_shutdown", "{ended}");
    let (_, listed) = server.get("/api/v1/sandboxes").await;
    assert_eq!(listed["sandboxes"], json!([]));
    let fresh = server.create(json!({})).await;
    assert_ne!(fresh["sandbox_id"], sandbox.as_str(), "a new sandbox");
    server.stop().await;
}

/// The real binary on Docker with `image`, `persistence` and this test's label.
fn start_binary(
    dir: tempfile::TempDir,
    cleanup: &Cleanup,
    image: &str,
    persistence: &str,
) -> RealServer {
    let toml = format!(
        "[backend]\nkind = \"docker\"\n[docker]\nimage = {image:?}\npull = \"never\"\nmemory = \"128m\"\n\
         pids_limit = 64\nlabels = {{ {:?} = {:?} }}\n[pool]\nmin = 0\nmax = 0\n\
         [sessions]\npersistence = {persistence:?}\n[sandboxes]\nidle_timeout = \"10m\"\n",
        docker::TEST_LABEL,
        cleanup.id
    );
    RealServer::start_in(dir, &toml)
}

/// `kill -9` of the server; hands back its state directory.
fn crash(mut server: RealServer) -> tempfile::TempDir {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.pid(), libc::SIGKILL) };
    let _ = server.wait_exit();
    std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap())
}

async fn get(server: &RealServer, path: &str) -> serde_json::Value {
    let response = reqwest::get(format!("{}{path}", server.base)).await.expect("GET");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

/// What a client attaching to an ended session is told: the first message and the close code.
async fn told_on_attach(url: &str) -> (serde_json::Value, Option<u16>) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("the upgrade");
    let mut first = serde_json::Value::Null;
    loop {
        let next = tokio::time::timeout(common::WAIT, ws.next()).await.expect("an answer");
        match next {
            Some(Ok(Message::Text(text))) if first.is_null() => {
                first = serde_json::from_str(&text).expect("JSON")
            }
            Some(Ok(Message::Close(frame))) => return (first, frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            _ => return (first, None),
        }
    }
}

fn ws_url(server: &RealServer, id: &str) -> String {
    format!("{}/api/v1/sessions/{id}/ws", server.base.replace("http://", "ws://"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_a_tmux_shell_is_the_same_shell_and_a_plain_one_ended_with_server_restart() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let image = docker::tmux_image();
    let server = start_binary(tempfile::tempdir().unwrap(), &cleanup, image, "tmux");
    let session = server.create_session(json!({"cols": 100, "rows": 30})).await;
    let (sid, sandbox) = (id(&session), session["sandbox_id"].as_str().unwrap().to_string());
    let mut term = Terminal::connect(&ws_url(&server, &sid), None).await.expect("attach");
    term.send("export KEPT=v-$((6*7)); sleep 1234 & echo started-$((1+1))\n").await;
    term.read_until("started-2").await;
    term.send("printf 'on-screen-%s\\n' before-the-crash\n").await;
    term.read_until("on-screen-before-the-crash").await;
    drop(term);

    let dir = crash(server);
    let server = start_binary(dir, &cleanup, image, "tmux");
    let listed = get(&server, "/api/v1/sessions").await;
    assert_eq!(listed["sessions"][0]["id"], sid.as_str(), "{listed}");
    assert_eq!(listed["sessions"][0]["status"], "running", "{listed}");
    assert_eq!(listed["sessions"][0]["sandbox_id"], sandbox.as_str(), "the sandbox was adopted");
    assert_eq!(cleanup.containers().len(), 1, "nothing made anew");
    let mut term = Terminal::connect(&ws_url(&server, &sid), None).await.expect("attach again");
    // tmux redraws the screen as it was.
    term.read_until("on-screen-before-the-crash").await;
    term.send("echo kept=$KEPT; jobs\n").await;
    term.read_until("kept=v-42").await;
    term.read_until("sleep 1234").await;
    drop(term);

    // Without tmux (persistence "none"), a crash ends the session, and a client that comes
    // back is told why.
    let dir = crash(server);
    let server = start_binary(dir, &cleanup, image, "none");
    let plain = server.create_session(json!({})).await;
    let plain_id = id(&plain);
    assert_eq!(plain["sandbox_id"], sandbox.as_str(), "the same sandbox");
    let gone = get(&server, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(
        (gone["status"].as_str(), gone["end_reason"].as_str()),
        (Some("terminated"), Some("server_restart")),
        "{gone}"
    );
    let dir = crash(server);
    let server = start_binary(dir, &cleanup, image, "none");
    let ended = get(&server, &format!("/api/v1/sessions/{plain_id}")).await;
    assert_eq!(ended["end_reason"], "server_restart", "{ended}");
    let (exit, close) = told_on_attach(&ws_url(&server, &plain_id)).await;
    assert_eq!(
        (exit["type"].as_str(), exit["reason"].as_str()),
        (Some("exit"), Some("server_restart")),
        "{exit}"
    );
    assert_eq!(close, Some(1000));
    assert_eq!(cleanup.containers().len(), 1, "one sandbox all along");
    drop(server);
    drop(cleanup);
}
