//! The files API on the local backend: the shared scenarios of tests/common/files.rs.

mod common;

use common::files::{self, Files};
use common::TestServer;
use kterm::config::ByteSize;
use serde_json::json;

async fn session(server: &TestServer) -> String {
    server.create(json!({})).await["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_of_text_and_binary_files() {
    let server = TestServer::start().await;
    let id = session(&server).await;
    files::round_trip(&Files::new(&server, &id)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_follow_the_shell_and_the_shell_sees_the_api() {
    let server = TestServer::start().await;
    let id = session(&server).await;
    files::shell_and_api_agree(&Files::new(&server, &id)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_atomic_under_concurrent_readers() {
    let server = TestServer::start().await;
    let id = session(&server).await;
    files::atomic_write_under_readers(&Files::new(&server, &id)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_precondition_is_a_conflict() {
    let server = TestServer::start().await;
    let id = session(&server).await;
    files::precondition_conflicts(&Files::new(&server, &id)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_above_the_caps_are_413() {
    let server = TestServer::start_with(|c| {
        c.files.max_read = ByteSize(64 * 1024);
        c.files.max_write = ByteSize(64 * 1024);
    })
    .await;
    let id = session(&server).await;
    files::size_caps(&Files::new(&server, &id)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_is_refused_and_nothing_outside_is_touched() {
    let server = TestServer::start().await;
    let outside = server.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret-content\n").unwrap();
    let id = session(&server).await;
    files::traversal_is_refused(&Files::new(&server, &id), outside.to_str().unwrap()).await;
    let mut left: Vec<_> =
        std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["secret.txt"]);
    assert_eq!(std::fs::read_to_string(outside.join("secret.txt")).unwrap(), "secret-content\n");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_files_are_out_of_reach() {
    let server = TestServer::start().await;
    let id = session(&server).await;
    files::other_users_files_are_out_of_reach(&server, &id).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_has_no_files() {
    let server = TestServer::start().await;
    let id = session(&server).await;
    assert_eq!(server.delete(&format!("/api/v1/sessions/{id}")).await, 204);
    let (status, _) = Files::new(&server, &id).list("").await;
    assert!(status == 404 || status == 409, "{status}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_deletes_reach_the_audit_log() {
    let server = TestServer::start().await;
    let id = session(&server).await;
    let content =
        format!("{}/api/v1/sessions/{id}/files/content?path=audited%20note.txt", server.base);
    let put = server.http.put(&content).body("hello").send().await.unwrap();
    assert_eq!(put.status(), 204);
    let delete = server
        .http
        .delete(format!("{}/api/v1/sessions/{id}/files?path=audited%20note.txt", server.base));
    assert_eq!(delete.send().await.unwrap().status(), 204);
    for action in ["file_write", "file_delete"] {
        let events = common::eventually(&format!("an audit row for {action}"), || async {
            let (status, body) = server.get(&format!("/api/v1/audit?action={action}")).await;
            assert_eq!(status, 200, "{body}");
            let events = body["events"].as_array()?.clone();
            (!events.is_empty()).then_some(events)
        })
        .await;
        let event = &events[0];
        assert_eq!(event["session"], id.as_str(), "{event}");
        assert!(event["detail"].as_str().unwrap().contains("audited note.txt"), "{event}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_are_held_within_the_files_memory() {
    let server = TestServer::start_with(|c| {
        c.backend.kind = kterm::config::BackendKind::Local;
        c.files.max_write = ByteSize(4096);
        c.files.memory = ByteSize(4096);
    })
    .await;
    let id = session(&server).await;
    let (status, _) = server.get(&format!("/api/v1/sessions/{id}/files?path=")).await;
    assert_eq!(status, 200, "a small listing fits");
    // A directory whose listing is larger than all of files.memory.
    let mut term = server.attach(&id).await;
    term.send("mkdir big && for i in $(seq 400); do : > big/file-with-a-long-name-$i; done; echo made-$((1+1))\n").await;
    term.read_until("made-2").await;
    let response = server
        .http
        .get(server.url(&format!("/api/v1/sessions/{id}/files?path=big")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let (status, _) = server.get(&format!("/api/v1/sessions/{id}/files?path=")).await;
    assert_eq!(status, 200, "what it held was given back");
    server.stop().await;
}
