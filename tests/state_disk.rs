//! The state store on a disk that fills up: requests that must write answer 503 with the
//! reason, `/readyz` says so, a session that ends meanwhile never reads `running` (its end is
//! kept and written once the disk has room), and everything recovers when the disk does. The
//! state directory is a small tmpfs the test mounts (it needs root; skipped with the reason
//! otherwise, unless KTERM_REQUIRE_MOUNT=1).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{eventually, TestServer};
use kterm::store::SessionStatus;
use serde_json::json;

/// A tmpfs mounted on a directory of the test's own; unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(SmallDisk { path, _dir: dir }),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("KTERM_REQUIRE_MOUNT").as_deref() == Ok("1") {
                    panic!("KTERM_REQUIRE_MOUNT=1 but a tmpfs cannot be mounted: {why}");
                }
                eprintln!("SKIPPED: cannot mount a tmpfs ({why}); this test needs root");
                None
            }
        }
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}

fn state_path(disk: &Path) -> PathBuf {
    disk.join("kterm.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_disk_is_503_with_the_reason_and_nothing_is_lost() {
    let Some(disk) = SmallDisk::mount("4m") else { return };
    let workspaces = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(|c| {
        c.state.path = state_path(&disk.path);
        c.local.root = workspaces.path().to_path_buf();
    })
    .await;
    let session = server.create(json!({})).await;
    let id = session["id"].as_str().unwrap().to_string();
    let mut term = server.attach(&id).await;
    term.send("echo on-$((2+5))\n").await;
    term.read_until("on-7").await;

    let filler = disk.fill();
    let (status, body) = server.post("/api/v1/sessions", json!({})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("full"), "{body}");
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let reason = ready.text().await.unwrap();
    assert!(reason.contains("full"), "{reason}");

    // The shell ends while the disk is full: the store cannot say so, the API does.
    term.send("exit 3\n").await;
    let exit = term.next_control().await;
    assert_eq!(exit["type"], "exit", "{exit}");
    let store = server.state().store.clone();
    let stored = store.get_session(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, SessionStatus::Running, "the disk is full: not written yet");
    let (status, shown) = server.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown["status"], "terminated", "{shown}");
    let (_, listed) = server.get("/api/v1/sessions").await;
    assert!(
        listed["sessions"].as_array().unwrap().iter().all(|s| s["id"] != id.as_str()),
        "{listed}"
    );

    // The disk recovers: so do readiness, the kept end and new sessions.
    std::fs::remove_file(filler).unwrap();
    eventually("readiness once the disk has room", || async {
        let ready = server.http.get(server.url("/readyz")).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    eventually("the kept end written", || async {
        let stored = store.get_session(&id).await.ok()??;
        (stored.status == SessionStatus::Terminated && stored.exit_code == Some(3)).then_some(())
    })
    .await;
    let again = server.create(json!({})).await;
    let mut term = server.attach(again["id"].as_str().unwrap()).await;
    term.send("echo back-$((3+3))\n").await;
    term.read_until("back-6").await;
    server.stop().await;
}
