//! Many sessions at once, each with its own shell.

mod common;

use common::TestServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sessions_each_echo_their_own_token() {
    let server = TestServer::start_with(|c| c.sessions.max_per_user = 60).await;
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
            let mut term = server.attach(&id).await;
            // The typed line shows `tok-N''-x`; only the shell's output shows `tok-N-x`.
            term.send(&format!("echo tok-{i}''-x\n")).await;
            let out = term.read_until(&format!("tok-{i}-x")).await;
            for other in (0..50).filter(|&o| o != i) {
                assert!(
                    !out.contains(&format!("tok-{other}-x")),
                    "session {i} saw {other}'s output"
                );
            }
            id
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("session task"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    assert_eq!(server.metric("kterm_sessions_active").await, 50.0);
    let (_, list) = server.get("/api/v1/sessions").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 50);
    std::sync::Arc::into_inner(server).expect("tasks done").stop().await;
}
