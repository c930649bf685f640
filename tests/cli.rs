//! The command line as a user runs it: version, check-config and its exit codes, and a graceful
//! stop on SIGTERM.

mod common;

use std::os::unix::fs::PermissionsExt;
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
    assert!(out.starts_with(&format!("kterm {} (commit ", env!("CARGO_PKG_VERSION"))), "{out}");
    // Built from a git checkout: the commit is the checkout's (build.rs).
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(head) = head.filter(|_| std::env::var_os("KTERM_GIT_COMMIT").is_none()) {
        assert!(out.contains(&format!("(commit {head})")), "{out} is not HEAD {head}");
    }

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
        // Refused as clearly wrong, not merely risky.
        (
            "[auth]\nmode = \"token\"\ntokens = [{ user = \"alice\", token = \"shared-token-0123456789\" }, { user = \"bob\", token = \"shared-token-0123456789\" }]\n",
            "auth.tokens",
        ),
        ("[auth]\nmode = \"proxy\"\ntrusted_proxies = [\"0.0.0.0/0\"]\n", "auth.trusted_proxies"),
        ("[auth]\nmode = \"proxy\"\ntrusted_proxies = [\"::/0\"]\n", "auth.trusted_proxies"),
        ("[docker]\nnetwork = \"container:db\"\n", "docker.network"),
        ("[docker]\nuser = \"00:0\"\n", "docker.user"),
        ("[docker]\nuser = \"0:1000\"\n", "docker.user"),
        ("[docker]\nuser = \"root:root\"\n", "docker.user"),
        ("[docker]\nuser = \"1000\"\n", "docker.user"),
        ("[server]\nmetrics_token = \"short\"\n", "server.metrics_token"),
        ("[server]\nallowed_hosts = [\"http://vm.lan\"]\n", "server.allowed_hosts"),
        ("[files]\nmemory = \"1m\"\n", "files.memory"),
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

#[test]
fn risky_settings_are_warned_about_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "alice:alice-token-0123456789\n").unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o666)).unwrap();
    let state = dir.path().join("kterm.db");
    std::fs::write(&state, "").unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = dir.path().join("kterm.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\npublic_url = \"https://dash.example.com/kterm\"\n[state]\npath = {state:?}\n\
             [auth]\ntokens_file = {tokens:?}\n"
        ),
    )
    .unwrap();
    let (code, _, err) = kterm(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    for key in ["server.public_url", "auth.tokens_file", "state.path"] {
        assert!(err.contains("warning: ") && err.contains(key), "{key}: {err}");
    }
}

#[test]
fn a_new_state_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("new/kterm.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kterm"))
        .args(["user", "add", "alice", "--state", state.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"alice-password\n").unwrap();
    assert!(child.wait().unwrap().success());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o600);
    assert_eq!(mode(&dir.path().join("new")), 0o700);
    for side in ["kterm.db-wal", "kterm.db-shm"] {
        let side = dir.path().join("new").join(side);
        if side.exists() {
            assert_eq!(mode(&side), 0o600, "{}", side.display());
        }
    }
}

#[test]
fn auto_falling_back_to_local_off_loopback_is_a_refused_configuration() {
    // No Docker at that address: "auto" would fall back to the local backend, which must not
    // serve a non-loopback address. That is a configuration problem: exit 2, naming the key.
    let (_dir, path) = config_file(
        "[auth]\nmode = \"token\"\ntokens = [{ user = \"alice\", token = \"alice-token-0123456789\" }]\n\
         [docker]\nhost = \"unix:///nonexistent/docker.sock\"\n",
    );
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("kterm.db");
    let (code, _, err) =
        kterm(&["--config", &path, "--listen", "0.0.0.0:0", "--state", db.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("backend.kind") && err.contains("local.allow_remote"), "{err}");
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

#[test]
fn flags_work_after_the_subcommand() {
    let (code, out, err) =
        kterm(&["check-config", "--listen", "127.0.0.1:9911", "--log-format", "json"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("listen = \"127.0.0.1:9911\""), "{out}");
    assert!(out.contains("format = \"json\""), "{out}");
    let (_dir, path) = config_file("[server]\nlisten = \"127.0.0.1:9912\"\n");
    let (code, out, err) = kterm(&["check-config", "--config", &path, "--state", "/tmp/x.db"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("127.0.0.1:9912") && out.contains("/tmp/x.db"), "{out}");
    let (code, _, err) = kterm(&["check-config", "--listen", "nowhere"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("server.listen") && err.contains("127.0.0.1:8080"), "{err}");
}

#[test]
fn configuration_errors_read_like_the_readme() {
    let cases = [
        ("[server]\nlisen = \"x\"\n", "unknown key; the keys of [server] are: listen, public_url"),
        ("[sessions]\nmax_per_user = \"many\"\n", "\"many\" is not a whole number (0 or more)"),
        (
            "[backend]\nkind = \"vm\"\n",
            "is not one of \"auto\", \"local\", \"docker\" or \"kubernetes\"",
        ),
        (
            "[sessions]\nidle_timeout = \"soon\"\n",
            "\"soon\" is not a duration: write a number and a unit",
        ),
        ("[sessions]\nscrollback = \"huge\"\n", "such as \"256k\", \"512m\" or \"1g\""),
        ("not toml at all [", "not valid TOML at line 1, column 5"),
    ];
    for (text, expected) in cases {
        let (_dir, path) = config_file(text);
        let (code, _, err) = kterm(&["check-config", "--config", &path], &[]);
        assert_eq!(code, 2, "{text:?}: {err}");
        assert!(err.contains(expected), "{text:?}: expected {expected:?} in: {err}");
        assert!(err.contains(&path), "the message names the file: {err}");
        for internal in ["``", "expected `one of", " at 0)", "found `", "u32"] {
            assert!(!err.contains(internal), "{text:?}: parser internals {internal:?} in: {err}");
        }
    }
    let (code, _, err) = kterm(&["check-config"], &[("KTERM_SESSIONS__IDLE_TIMEOUT", "soon")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("config key `sessions.idle_timeout` (from the environment variable KTERM_SESSIONS__IDLE_TIMEOUT)"),
        "{err}"
    );
}

#[test]
fn the_default_state_goes_to_the_users_data_directory_not_the_current_one() {
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().to_string_lossy().into_owned();
    let clean = [("STATE_DIRECTORY", ""), ("XDG_DATA_HOME", ""), ("HOME", home_path.as_str())];
    let (code, out, err) = kterm(&["check-config"], &clean);
    assert_eq!(code, 0, "{err}");
    let expected = format!("path = \"{home_path}/.local/share/kterm/kterm.db\"");
    assert!(out.contains(&expected), "{expected} in:\n{out}");
    let (_, out, _) =
        kterm(&["check-config"], &[("XDG_DATA_HOME", "/srv/data"), ("STATE_DIRECTORY", "")]);
    assert!(out.contains("path = \"/srv/data/kterm/kterm.db\""), "{out}");
    let (_, out, _) = kterm(&["check-config"], &[("STATE_DIRECTORY", "/var/lib/kterm:/other")]);
    assert!(out.contains("path = \"/var/lib/kterm/kterm.db\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_start_leaves_the_current_directory_clean() {
    use std::io::BufRead;
    let clone = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kterm"))
        .current_dir(clone.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("HOME", home.path())
        .env("STATE_DIRECTORY", "")
        .env("XDG_DATA_HOME", "")
        .env("KTERM_BACKEND__KIND", "local")
        .env("KTERM_SESSIONS__COMMAND", "[\"sh\"]")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let data = home.path().join(".local/share/kterm");
    let mut said_workspaces = false;
    let base = loop {
        let line = lines.next().expect("kterm exited before serving").unwrap();
        said_workspaces |= line.contains(&data.join("workspaces").display().to_string());
        if let Some(rest) = line.split("serving on ").nth(1) {
            assert!(line.contains(&data.join("kterm.db").display().to_string()), "{line}");
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    assert!(said_workspaces, "the log says where the workspaces are");
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/sessions"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let left: Vec<_> =
        std::fs::read_dir(clone.path()).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "the start left {left:?} in the current directory");
    assert!(data.join("kterm.db").is_file() && data.join("workspaces").is_dir());
}
