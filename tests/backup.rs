//! `kterm backup FILE` while the server writes: every copy is a whole, consistent store (its
//! instance id, every session recorded before the backup began), taken without stopping kterm.

mod common;

use std::process::Command;

use common::TestServer;
use serde_json::json;

fn backup(state: &std::path::Path, to: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_kterm"))
        .arg("--state")
        .arg(state)
        .arg("backup")
        .arg(to)
        .env_remove("KTERM_CONFIG")
        .output()
        .expect("run kterm backup");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_sessions_write_is_whole_and_consistent() {
    let server = TestServer::start_with(|c| c.sessions.max_per_user = 1000).await;
    let state = server.state().config.state.path.clone();
    let instance = server.state().store.instance_id().to_string();
    let out = tempfile::tempdir().unwrap();

    // Sessions come and go (rows inserted and updated) while backups are taken.
    let writing = async {
        let mut made = 0usize;
        for _ in 0..40 {
            let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
            assert_eq!(server.delete(&format!("/api/v1/sessions/{id}")).await, 204);
            made += 1;
        }
        made
    };
    let backing_up = async {
        let mut copies = Vec::new();
        for round in 0..3 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let before = server.state().store.list_sessions(None, 10_000).await.unwrap().len();
            let to = out.path().join(format!("copy-{round}.db"));
            let (state, target) = (state.clone(), to.clone());
            tokio::task::spawn_blocking(move || backup(&state, &target)).await.unwrap();
            copies.push((to, before));
        }
        copies
    };
    let (made, copies) = tokio::join!(writing, backing_up);
    assert_eq!(made, 40);
    for (copy, before) in copies {
        let store = kterm::store::Store::open(&copy).unwrap();
        assert_eq!(store.instance_id(), instance, "{}", copy.display());
        let sessions = store.list_sessions(None, 10_000).await.unwrap();
        assert!(sessions.len() >= before, "{} has {} of {before}", copy.display(), sessions.len());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // A backup over an existing file replaces it whole.
    let last = out.path().join("copy-0.db");
    backup(&state, &last);
    let store = kterm::store::Store::open(&last).unwrap();
    assert_eq!(store.list_sessions(None, 10_000).await.unwrap().len(), 40);
    server.stop().await;
}
