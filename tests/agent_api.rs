//! The agent API (exec, input, screen, wait) through the real server on the local backend:
//! the shared scenarios of tests/common/agent.rs, plus the limits and the audit rows.

mod common;

use common::agent::{self, Agent};
use common::{audited, TestServer};
use kterm::config::ByteSize;
use serde_json::json;

async fn local_server(adjust: impl FnOnce(&mut kterm::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.backend.kind = kterm::config::BackendKind::Local;
        agent::two_users(c);
        adjust(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_argv_with_its_io_and_refuses_bad_input() {
    let server = local_server(|c| c.exec.max_output = ByteSize(4096)).await;
    let agent = Agent::new(&server).await;
    agent::exec_basics(&agent).await;
    agent::malformed_bodies(&agent).await;
    agent::caps_and_timeouts(&agent, 4096).await;
    agent::streaming(&agent).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_drives_a_shell_through_input_wait_and_screen() {
    let server = local_server(|_| {}).await;
    let agent = Agent::new(&server).await;
    agent::drives_an_interactive_shell(&agent).await;
    agent::screen_details(&agent).await;
    agent::other_users_session(&server, &agent).await;
    agent::ended_session(&agent).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_rate_limited_concurrency_is_bounded_and_execs_audited() {
    let server = local_server(|c| {
        c.exec.per_minute = 40;
        c.exec.max_concurrent = 1;
        c.audit.record_input = true;
        c.auth.admins = vec!["bob".into()];
    })
    .await;
    let agent = Agent::new(&server).await;
    // A running exec holds the sandbox's only place (known once its first line came): a
    // wait meanwhile is 429. Typing into the shell releases it.
    let response = agent
        .client
        .request(reqwest::Method::POST, &agent.path("exec"))
        .header("accept", "application/x-ndjson")
        .json(&json!({"argv": ["sh", "-c", "echo started; while [ ! -e go ]; do sleep 0.05; done; echo released"]}))
        .send()
        .await
        .unwrap();
    let mut response = response;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("started"), "{first:?}");
    let (status, blocked) = agent.wait("x", "1s").await;
    assert_eq!(status, 429, "{blocked}");
    assert!(
        blocked["error"]["message"].as_str().unwrap().contains("exec.max_concurrent"),
        "{blocked}"
    );
    let (status, _) = agent.input(json!({"text": "touch go", "keys": ["Enter"]})).await;
    assert_eq!(status, 204);
    let rest = response.text().await.unwrap();
    assert!(rest.contains("released") && rest.contains("\"exit_code\":0"), "{rest}");
    let (status, out) = agent.exec(json!({"argv": ["echo", "audited", "$(argv)"]})).await;
    assert_eq!(status, 200, "{out}");
    // The per-minute limit: every call counts.
    let mut last = 0;
    for _ in 0..50 {
        last = agent.screen("").await.0;
        if last == 429 {
            break;
        }
    }
    assert_eq!(last, 429, "exec.per_minute = 40 was not enforced");
    let admin = server.bearer(agent::BOB);
    let detail = |row: &serde_json::Value| row["detail"].as_str().unwrap_or("").to_string();
    let row = audited(&admin, "exec", |r| detail(r).contains("\"audited\"")).await;
    assert_eq!(detail(&row), "[\"echo\",\"audited\",\"$(argv)\"]");
    assert_eq!(row["user"], "alice");
    audited(&admin, "input", |r| detail(r) == "touch go\r").await;
    server.stop().await;
}
