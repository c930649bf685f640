//! The files API on real Docker sandboxes as hardened (read-only root, tmpfs workspace,
//! non-root user): the shared scenarios of tests/common/files.rs, plus what only Docker has.

mod common;

use common::docker::{self, Cleanup};
use common::files::{self, Files};
use common::TestServer;
use kterm::config::ByteSize;
use serde_json::json;

async fn docker_server(cleanup: &Cleanup, adjust: impl FnOnce(&mut kterm::Config)) -> TestServer {
    TestServer::start_with(|c| {
        docker::configure(c, cleanup);
        adjust(c);
    })
    .await
}

async fn session(server: &TestServer) -> String {
    server.create(json!({})).await["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_and_listing_on_a_tmpfs_workspace_as_the_sandbox_user() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |_| {}).await;
    let id = session(&server).await;
    let files = Files::new(&server, &id);
    files::round_trip(&files).await;
    files::shell_and_api_agree(&files).await;
    let out = files.sh("stat -c 'owner=%u' doc-owner.txt 2>/dev/null; echo x > probe; stat -c 'owner=%u' probe; grep -c ' /home/user/workspace tmpfs ' /proc/mounts").await;
    assert!(out.contains("owner=1000"), "{out}");
    assert_eq!(files.put("api-made.txt", b"x".to_vec(), &[]).await.0, 204);
    let out = files.sh("stat -c 'api-owner=%u:%g' api-made.txt").await;
    assert!(out.contains("api-owner=1000:1000"), "written as the sandbox user: {out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_writes_preconditions_and_caps() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |c| {
        c.files.max_read = ByteSize(64 * 1024);
        c.files.max_write = ByteSize(64 * 1024);
    })
    .await;
    let id = session(&server).await;
    let files = Files::new(&server, &id);
    files::precondition_conflicts(&files).await;
    files::size_caps(&files).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_atomic_under_concurrent_readers() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |_| {}).await;
    let id = session(&server).await;
    files::atomic_write_under_readers(&Files::new(&server, &id)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_is_refused_and_nothing_outside_is_touched() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |_| {}).await;
    let id = session(&server).await;
    let files = Files::new(&server, &id);
    files.sh("mkdir -p /tmp/outside && echo secret-content > /tmp/outside/secret.txt").await;
    files::traversal_is_refused(&files, "/tmp/outside").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_files_are_out_of_reach() {
    if !docker::available() {
        return;
    }
    let cleanup = Cleanup::new();
    let server = docker_server(&cleanup, |_| {}).await;
    let id = session(&server).await;
    files::other_users_files_are_out_of_reach(&server, &id).await;
    server.stop().await;
}
