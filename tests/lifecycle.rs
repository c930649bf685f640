//! The whole life of a session through the REST API and the WebSocket, as a client sees it.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{error_code, eventually, Event, TestServer};
use kterm::config::HumanDuration;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_attach_type_resize_detach_reattach_exit_delete() {
    let server = TestServer::start().await;
    let session =
        server.create(json!({"cols": 100, "rows": 30, "context": {"run_id": "run-42"}})).await;
    let id = session["id"].as_str().unwrap().to_string();
    assert_eq!(session["status"], "running");
    assert_eq!(session["namespace"], "default");
    assert_eq!(session["context"]["run_id"], "run-42");
    assert!(session["websocket_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/api/v1/sessions/{id}/ws")));
    for key in ["created_at", "last_active", "expires_at"] {
        let text = session[key].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(text).is_ok(), "{key} = {text}");
    }

    let (status, list) = server.get("/api/v1/sessions").await;
    assert_eq!(status, 200);
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    let (status, got) = server.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!((status, got["id"].as_str()), (200, Some(id.as_str())));

    // Type, and see the shell's answer; the size given at creation is the PTY's.
    let mut term = server.attach(&id).await;
    assert_eq!(term.attached["session"], id.as_str());
    term.send("stty size; echo \"ctx=$KTERM_CTX_RUN_ID sid=$KTERM_SESSION_ID term=$TERM\"\n").await;
    let out = term.read_until("term=xterm-256color").await;
    assert!(out.contains("30 100"), "{out}");
    assert!(out.contains(&format!("ctx=run-42 sid={id}")), "{out}");

    // Resize over the WebSocket and over REST.
    term.resize(120, 40).await;
    term.send("stty size\n").await;
    term.read_until("40 120").await;
    let (status, _) = server
        .post(&format!("/api/v1/sessions/{id}/resize"), json!({"cols": 81, "rows": 21}))
        .await;
    assert_eq!(status, 204);
    term.send("stty size\n").await;
    term.read_until("21 81").await;

    // Detach; the shell keeps running and its output waits in the scrollback.
    term.send("sleep 0.3; echo after-detach-$((6*7))\n").await;
    term.close().await;
    let mut again = server.attach(&id).await;
    let out = again.read_until("after-detach-42").await;
    assert!(again.replay_bytes() > 0);
    assert!(out.contains("40 120"), "the replay holds the earlier output: {out}");

    // The shell's end reaches the client with its code, then close 1000.
    again.send("exit 7\n").await;
    let exit = again.next_control().await;
    assert_eq!(exit, json!({"type": "exit", "code": 7}));
    assert_eq!(again.closed().await, Some(1000));
    let record = eventually("the session to be recorded as ended", || async {
        let (_, got) = server.get(&format!("/api/v1/sessions/{id}")).await;
        (got["status"] == "terminated").then_some(got)
    })
    .await;
    assert_eq!(record["exit_code"], 7);
    let (_, list) = server.get("/api/v1/sessions").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 0, "ended sessions are not listed");
    let (_, list) = server.get("/api/v1/sessions?all=true").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_the_shell_and_the_attached_client_hears_it() {
    let server = TestServer::start().await;
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let mut term = server.attach(&id).await;
    term.send("echo ready\n").await;
    term.read_until("ready").await;
    assert_eq!(server.delete(&format!("/api/v1/sessions/{id}")).await, 204);
    let message = term.next_control().await;
    assert_eq!(message["type"], "exit");
    assert_eq!(message["reason"], "deleted");
    assert_eq!(term.closed().await, Some(1000));
    let (status, got) = server.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["status"], "terminated");
    assert_eq!(got["end_reason"], "deleted");
    assert_eq!(server.metric("kterm_sessions_active").await, 0.0);
    // Deleting again is harmless; an unknown id is 404 with the SPEC's body.
    assert_eq!(server.delete(&format!("/api/v1/sessions/{id}")).await, 204);
    assert_eq!(server.delete("/api/v1/sessions/no-such-session").await, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_init_and_context_reach_the_shell() {
    let server = TestServer::start_with(|c| {
        c.sessions.env.insert("TEAM".into(), "blue".into());
        c.sessions.init = "export GREETING=\"hi $KTERM_CTX_RUN_ID\"; echo init-ran".into();
    })
    .await;
    let _ = std::fs::remove_file("/tmp/kterm-pwned");
    let hostile = "a'b\"c $(touch /tmp/kterm-pwned) `id` \n; rm -rf x";
    let session = server.create(json!({"context": {"run_id": "r7", "note": hostile}})).await;
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    term.read_until("init-ran").await;
    term.send("echo \"[$TEAM|$GREETING|$KTERM_USER|$KTERM_INIT]\"; printf '%s' \"$KTERM_CTX_NOTE\" | od -An -c | tr -d ' \\n'; echo\n").await;
    let out = term.read_until("[blue|hi r7|anonymous|]").await;
    let expected: String = hostile
        .chars()
        .map(|c| if c == '\n' { "\\n".to_string() } else { c.to_string() })
        .collect::<String>()
        .replace(' ', "");
    term.read_until(&expected).await;
    assert!(out.contains("[blue|hi r7|anonymous|]"));
    assert!(!std::path::Path::new("/tmp/kterm-pwned").exists(), "a context value ran a command");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_attach_policy() {
    let server = TestServer::start_with(|c| {
        c.sessions.max_per_user = 2;
        c.sessions.attach = kterm::config::AttachPolicy::Reject;
    })
    .await;
    let a = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    server.create(json!({})).await;
    let (status, body) = server.post("/api/v1/sessions", json!({})).await;
    assert_eq!((status, error_code(&body)), (429, "limit_reached"), "{body}");

    let _first = server.attach(&a).await;
    let refused = common::Terminal::connect(&server.ws_url(&a), None).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 409)
        }
        other => panic!(
            "a second attach under \"reject\" must be 409, got {:?}",
            other.map(|t| t.attached)
        ),
    }
    // Ending one frees a slot.
    assert_eq!(server.delete(&format!("/api/v1/sessions/{a}")).await, 204);
    server.create(json!({})).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_end_but_attached_ones_live() {
    let server = TestServer::start_with(|c| {
        c.sessions.idle_timeout =
            kterm::config::HumanDuration(std::time::Duration::from_millis(600));
    })
    .await;
    let idle = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let watched = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let mut term = server.attach(&watched).await;
    let record = eventually("the idle session to end", || async {
        let (_, got) = server.get(&format!("/api/v1/sessions/{idle}")).await;
        (got["status"] == "terminated").then_some(got)
    })
    .await;
    assert_eq!(record["end_reason"], "idle_timeout");
    term.send("echo still-here\n").await;
    term.read_until("still-here").await;
    let (_, got) = server.get(&format!("/api/v1/sessions/{watched}")).await;
    assert_eq!(got["status"], "running");
    server.stop().await;
}

/// A detached program that prints without end does not keep its session alive forever: output
/// nobody sees stops counting as activity `idle_timeout` after the detach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_session_with_endless_output_still_idles_out() {
    let server = TestServer::start_with(|c| {
        c.sessions.idle_timeout = kterm::config::HumanDuration(std::time::Duration::from_secs(1));
        c.sessions.warn_before = kterm::config::HumanDuration(std::time::Duration::ZERO);
    })
    .await;
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let mut term = server.attach(&id).await;
    term.send("while :; do echo endless; sleep 0.01; done\n").await;
    term.read_until("endless\r\nendless").await;
    term.close().await;
    let detached = std::time::Instant::now();
    let record = eventually("the detached, printing session to end", || async {
        let (_, got) = server.get(&format!("/api/v1/sessions/{id}")).await;
        (got["status"] == "terminated").then_some(got)
    })
    .await;
    assert_eq!(record["end_reason"], "idle_timeout");
    assert!(detached.elapsed() >= std::time::Duration::from_secs(2), "{:?}", detached.elapsed());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_the_page() {
    let server = TestServer::start().await;
    let response = server.http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let mut term = server.attach(&id).await;
    term.send("echo metered\n").await;
    term.read_until("metered").await;
    assert_eq!(server.metric("kterm_sessions_active").await, 1.0);
    assert!(server.metric("kterm_attaches_total").await >= 1.0);
    // No series moves per keystroke (a poller would see the rhythm of typing): byte counts
    // are added when a client detaches, and when a session's output ends.
    for name in
        ["kterm_input_bytes_total", "kterm_output_bytes_total", "kterm_pty_read_bytes_total"]
    {
        assert_eq!(server.metric(name).await, 0.0, "{name} moved while typing");
    }
    term.close().await;
    eventually("the detach to count the bytes", || async {
        let input = server.metric("kterm_input_bytes_total").await;
        let output = server.metric("kterm_output_bytes_total").await;
        (input >= 13.0 && output > 0.0).then_some(())
    })
    .await;
    assert_eq!(server.delete(&format!("/api/v1/sessions/{id}")).await, 204);
    eventually("the end of the session to count what was read", || async {
        (server.metric("kterm_pty_read_bytes_total").await > 0.0).then_some(())
    })
    .await;

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_lifetime_bounds_the_sandbox_not_just_each_session() {
    let server = TestServer::start_with(|c| {
        c.sessions.max_lifetime =
            kterm::config::HumanDuration(std::time::Duration::from_millis(1500));
    })
    .await;
    let first = server.create(json!({})).await;
    let mut term = server.attach(first["id"].as_str().unwrap()).await;
    let second = server.create(json!({})).await;
    assert_eq!(first["sandbox_id"], second["sandbox_id"]);
    assert_eq!(
        first["expires_at"], second["expires_at"],
        "a new tab does not extend the sandbox's life"
    );
    // The lifetime is shorter than sessions.warn_before: the warning comes right away.
    let warning = term.next_control().await;
    assert_eq!(
        (warning["type"].as_str(), warning["reason"].as_str()),
        (Some("warning"), Some("max_lifetime"))
    );
    let exit = term.next_control().await;
    assert_eq!(
        (exit["type"].as_str(), exit["reason"].as_str()),
        (Some("exit"), Some("max_lifetime"))
    );
    let record = eventually("the second session to end too", || async {
        let (_, got) =
            server.get(&format!("/api/v1/sessions/{}", second["id"].as_str().unwrap())).await;
        (got["status"] == "terminated").then_some(got)
    })
    .await;
    assert_eq!(record["end_reason"], "max_lifetime");
    server.stop().await;
}

fn millis(ms: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(ms))
}

fn time(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().unwrap_or_else(|| panic!("not a time: {value}"));
    DateTime::parse_from_rfc3339(text).expect("RFC 3339").with_timezone(&Utc)
}

/// Asserts `message` is a warning for `reason` in the protocol's shape; returns its `at`.
fn expect_warning(message: &Value, reason: &str) -> DateTime<Utc> {
    assert_eq!(message["type"], "warning", "{message}");
    assert_eq!(message["reason"], reason, "{message}");
    let at = message["at"].as_str().expect("at");
    assert!(at.ends_with('Z') && at.len() == "2024-01-01T00:00:00.000Z".len(), "{at}");
    assert!(message["in_secs"].is_u64(), "{message}");
    time(&message["at"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_client_is_warned_before_the_max_lifetime_ends_its_session() {
    let server = TestServer::start_with(|c| {
        c.sessions.max_lifetime = millis(4000);
        c.sessions.warn_before = millis(3000);
    })
    .await;
    let session = server.create(json!({})).await;
    let expires_at = time(&session["expires_at"]);
    let mut term = server.attach(session["id"].as_str().unwrap()).await;

    let warning = term.next_control().await;
    let received = Utc::now();
    let at = expect_warning(&warning, "max_lifetime");
    assert_eq!(warning["at"], session["expires_at"], "the warning names the session's end");
    assert_eq!(at, expires_at);
    // Not before the window opens (the same clock, give or take the formatting's millisecond).
    assert!(
        received >= expires_at - chrono::Duration::milliseconds(3001),
        "{received} {expires_at}"
    );
    assert!(warning["in_secs"].as_u64().unwrap() <= 3, "{warning}");

    // A page that attaches inside the window hears of it right after the replay.
    term.send("echo before-reload\n").await;
    term.read_until("before-reload").await;
    let mut term = server.attach(session["id"].as_str().unwrap()).await;
    assert!(term.replay_bytes() > 0);
    let warning = term.next_control().await;
    assert_eq!(term.output.len(), term.replay_bytes(), "the warning follows the whole replay");
    assert_eq!(expect_warning(&warning, "max_lifetime"), expires_at);

    let exit = term.next_control().await;
    assert_eq!(
        (exit["type"].as_str(), exit["reason"].as_str()),
        (Some("exit"), Some("max_lifetime"))
    );
    assert_eq!(term.closed().await, Some(1000));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_holds_an_attached_session_that_would_idle_out() {
    let server = TestServer::start_with(|c| {
        c.sessions.idle_when_attached = true;
        c.sessions.idle_timeout = millis(3000);
        c.sessions.warn_before = millis(2000);
    })
    .await;
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let mut term = server.attach(&id).await;

    let first = expect_warning(&term.next_control().await, "idle_timeout");
    term.send_control(json!({"type": "keep_alive"})).await;

    // Past the deadline first announced, the session still runs.
    let past = (first - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200);
    tokio::time::sleep(past).await;
    let (_, got) = server.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(got["status"], "running", "{got}");

    // The keep-alive moved the deadline, so its approach is announced again; a quiet client
    // then loses the session.
    let second = expect_warning(&term.next_control().await, "idle_timeout");
    assert!(second > first, "{second} after {first}");
    let exit = term.next_control().await;
    assert_eq!(
        (exit["type"].as_str(), exit["reason"].as_str()),
        (Some("exit"), Some("idle_timeout"))
    );
    assert_eq!(term.closed().await, Some(1000));
    let (_, got) = server.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(got["end_reason"], "idle_timeout");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_quiet_attached_session_is_neither_warned_nor_ended_as_idle() {
    let server = TestServer::start_with(|c| {
        c.sessions.idle_timeout = millis(1000);
        c.sessions.warn_before = millis(800);
    })
    .await;
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let mut term = server.attach(&id).await;
    term.send("echo ready\n").await;
    term.read_until("ready").await;

    // Well past the idle timeout, nothing has been said to the client.
    match tokio::time::timeout(Duration::from_millis(2500), async {
        loop {
            match term.next().await {
                Event::Output(_) => continue,
                other => return other,
            }
        }
    })
    .await
    {
        Err(_) => {}
        Ok(event) => panic!("a quiet attached session got {event:?}"),
    }
    let (_, got) = server.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(got["status"], "running", "{got}");
    term.send("echo still-here\n").await;
    term.read_until("still-here").await;
    server.stop().await;
}
