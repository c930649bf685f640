//! The command line as a user runs it: version, check-config and its exit codes, and a graceful
//! stop on SIGTERM.

mod common;

use std::process::Command;

use common::{RealServer, Terminal};
use serde_json::{json, Value};

fn kterm(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kterm"));
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run kterm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kterm.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_string_lossy().into_owned();
    (dir, path)
}

#[test]
fn version_and_check_config() {
    let (code, out, _) = kterm(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("kterm "), "{out}");

    let (_dir, path) =
        config_file("[server]\nlisten = \"127.0.0.1:9999\"\n[sessions]\nidle_timeout = \"5m\"\n");
    let (code, out, err) =
        kterm(&["check-config", "--config", &path], &[("KTERM_SESSIONS__MAX_PER_USER", "9")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("listen = \"127.0.0.1:9999\""), "{out}");
    assert!(out.contains("idle_timeout = \"5m\""), "{out}");
    assert!(out.contains("max_per_user = 9"), "the environment layer applies: {out}");
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let cases = [
        ("[server]\nlisen = \"x\"\n", "lisen"),
        ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
        ("[sessions]\nscrollback = \"huge\"\n", "sessions.scrollback"),
        ("[sessions]\nmax_per_user = \"many\"\n", "sessions.max_per_user"),
        ("[backend]\nkind = \"vm\"\n", "backend.kind"),
        ("[server]\nlisten = \"0.0.0.0:8080\"\n", "auth.mode"),
        ("not toml at all [", "kterm.toml"),
    ];
    for (text, key) in cases {
        let (_dir, path) = config_file(text);
        for args in [vec!["check-config", "--config", &path], vec!["--config", &path]] {
            let (code, _, err) = kterm(&args, &[]);
            assert_eq!(code, 2, "{text:?} {args:?}: {err}");
            assert!(err.contains(key), "{text:?}: the message should name {key}: {err}");
        }
    }
    let (code, _, err) = kterm(&["check-config"], &[("KTERM_SESSIONS__IDLE_TIMEOUT", "soon")]);
    assert_eq!(code, 2);
    assert!(err.contains("sessions.idle_timeout"), "{err}");
    let (code, _, err) = kterm(&["check-config", "--config", "/nonexistent/kterm.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/kterm.toml"), "{err}");
    let (code, _, _) = kterm(&["--no-such-flag"], &[]);
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_websockets_with_1001_records_the_end_and_exits_0() {
    let mut server = RealServer::start("[sessions]\ncommand = [\"sh\"]\n");
    let base = server.base.clone();
    let session = server.create_session(json!({})).await;
    let id = session["id"].as_str().unwrap().to_string();
    let url = format!("{}/api/v1/sessions/{id}/ws", base.replace("http://", "ws://"));
    let mut term = Terminal::connect(&url, None).await.unwrap();
    term.send("echo up\n").await;
    term.read_until("up").await;

    server.sigterm();
    assert_eq!(term.closed().await, Some(1001));
    assert_eq!(server.wait_exit(), Some(0));

    // The store says what happened, and a restart on the same state serves it.
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    drop(server);
    let again = RealServer::start_in(dir, "");
    let got: Value = reqwest::get(format!("{}/api/v1/sessions/{id}", again.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "terminated", "{got}");
    assert_eq!(got["end_reason"], "server_shutdown", "{got}");
}
