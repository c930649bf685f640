//! Scenarios of the agent API (exec, input, screen, wait) shared by the local and Docker test
//! files: each takes a server whose auth mode is `token` with [`ALICE`] and [`BOB`].

#![allow(dead_code)]

use std::time::Duration;

use base64::Engine as _;
use kterm::config::{AuthMode, TokenEntry};
use serde_json::{json, Value};

use super::{error_code, eventually, Client, TestServer};

pub const ALICE: &str = "alice-agent-token-0123456789";
pub const BOB: &str = "bob-agent-token-0123456789";

/// Token auth with alice and bob.
pub fn two_users(config: &mut kterm::Config) {
    config.auth.mode = AuthMode::Token;
    config.auth.tokens = vec![
        TokenEntry { user: "alice".into(), token: Some(ALICE.into()), token_sha256: None },
        TokenEntry { user: "bob".into(), token: Some(BOB.into()), token_sha256: None },
    ];
}

pub struct Agent {
    pub client: Client,
    pub id: String,
}

impl Agent {
    /// Alice's client and a new session of hers.
    pub async fn new(server: &TestServer) -> Agent {
        let client = server.bearer(ALICE);
        let id = client.create_id().await;
        eventually("the session runs", || {
            let client = client.clone();
            let id = id.clone();
            async move {
                let (_, s) = client.get(&format!("/api/v1/sessions/{id}")).await;
                (s["status"] == "running").then_some(())
            }
        })
        .await;
        Agent { client, id }
    }

    pub fn path(&self, endpoint: &str) -> String {
        format!("/api/v1/sessions/{}/{endpoint}", self.id)
    }

    pub async fn exec(&self, body: Value) -> (u16, Value) {
        self.client.post(&self.path("exec"), body).await
    }

    /// Runs `sh -c script` and expects it to end with 0; its stdout.
    pub async fn sh(&self, script: &str) -> String {
        let (status, out) = self.exec(json!({"argv": ["sh", "-c", script]})).await;
        assert_eq!((status, out["exit_code"].as_i64()), (200, Some(0)), "{script}: {out}");
        out["stdout"].as_str().unwrap_or_default().to_string()
    }

    pub async fn input(&self, body: Value) -> (u16, Value) {
        self.client.post(&self.path("input"), body).await
    }

    pub async fn wait(&self, pattern: &str, timeout: &str) -> (u16, Value) {
        self.client.post(&self.path("wait"), json!({"pattern": pattern, "timeout": timeout})).await
    }

    pub async fn screen(&self, query: &str) -> (u16, Value) {
        self.client.get(&format!("{}{query}", self.path("screen"))).await
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Exit codes, stdout and stderr apart, binary output and input, stdin, env, cwd, and an argv
/// that would be dangerous in a shell passed as data.
pub async fn exec_basics(agent: &Agent) {
    let (status, out) =
        agent.exec(json!({"argv": ["sh", "-c", "echo out; echo err >&2; exit 7"]})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["exit_code"], 7);
    assert_eq!(out["stdout"], "out\n");
    assert_eq!(out["stderr"], "err\n");
    assert_eq!(
        (out["truncated"].as_bool(), out["timed_out"].as_bool()),
        (Some(false), Some(false))
    );
    assert!(out["duration_ms"].as_u64().is_some(), "{out}");

    // Bytes that are not UTF-8 come back exactly, base64.
    let (_, out) = agent.exec(json!({"argv": ["printf", "a\\377\\000b"]})).await;
    assert_eq!(out["stdout_base64"], b64(b"a\xff\x00b"), "{out}");
    assert!(out.get("stderr_base64").is_none(), "{out}");
    let (_, out) = agent
        .exec(json!({"argv": ["od", "-An", "-tx1"], "stdin_base64": b64(&[0, 0xfe, 0x41])}))
        .await;
    assert_eq!(
        out["stdout"].as_str().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["00", "fe", "41"]
    );

    // stdin, then end of file.
    let (_, out) = agent.exec(json!({"argv": ["wc", "-l"], "stdin": "a\nb\nc\n"})).await;
    assert_eq!(out["stdout"].as_str().unwrap().trim(), "3", "{out}");
    let (_, out) = agent.exec(json!({"argv": ["cat"]})).await;
    assert_eq!((out["exit_code"].as_i64(), out["stdout"].as_str()), (Some(0), Some("")));

    // A hostile argv is only data: nothing in it runs.
    let hostile =
        ["$(touch pwned1)", "`touch pwned2`", "; touch pwned3", "| touch pwned4", "'\"", "a b"];
    let mut argv = vec!["printf".to_string(), "[%s]".to_string()];
    argv.extend(hostile.iter().map(|s| s.to_string()));
    let (_, out) = agent.exec(json!({"argv": argv, "env": {"HOSTILE": "$(touch pwned5)"}})).await;
    let expected: String = hostile.iter().map(|s| format!("[{s}]")).collect();
    assert_eq!(out["stdout"], expected.as_str(), "{out}");
    let (_, out) = agent.exec(json!({"argv": ["sh", "-c", "printf %s \"$HOSTILE\""], "env": {"HOSTILE": "$(touch pwned5)"}})).await;
    assert_eq!(out["stdout"], "$(touch pwned5)");
    let listing = agent.sh("ls -a").await;
    assert!(!listing.contains("pwned"), "{listing}");
    // A missing program is the shell's 127, as `docker exec` says.
    let (_, out) = agent.exec(json!({"argv": ["no-such-program-kterm"]})).await;
    assert_eq!(out["exit_code"], 127, "{out}");

    // cwd: relative to the workspace, checked as files paths are.
    agent.sh("mkdir -p sub/dir && ln -sfn / escape && touch sub/dir/here").await;
    let (_, out) = agent.exec(json!({"argv": ["ls"], "cwd": "sub/dir"})).await;
    assert_eq!(out["stdout"], "here\n", "{out}");
    for (cwd, says) in [
        ("../up", "leaves the workspace"),
        ("/etc", "absolute"),
        ("escape", "leaves the workspace"),
        ("missing", "does not exist"),
        ("sub/dir/here", "not a directory"),
    ] {
        let (status, out) = agent.exec(json!({"argv": ["ls"], "cwd": cwd})).await;
        assert_eq!(status, 400, "{cwd}: {out}");
        let message = out["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("cwd") && message.contains(says), "{cwd}: {out}");
    }
}

/// Bodies that are not an exec request: 400 naming the field, never a 500.
pub async fn malformed_bodies(agent: &Agent) {
    let cases = [
        (json!({}), "argv"),
        (json!({"argv": []}), "argv"),
        (json!({"argv": "ls"}), "argv"),
        (json!({"argv": ["ls"], "timeout": "often"}), "timeout"),
        (json!({"argv": ["ls"], "timeout": "0s"}), "timeout"),
        (json!({"argv": ["ls"], "env": {"1A": "x"}}), "env"),
        (json!({"argv": ["ls"], "stdin": "a", "stdin_base64": "YQ=="}), "stdin"),
        (json!({"argv": ["ls"], "shell": true}), "shell"),
    ];
    for (body, field) in cases {
        let (status, out) = agent.exec(body.clone()).await;
        assert_eq!(status, 400, "{body}: {out}");
        assert!(
            out["error"]["message"].as_str().unwrap_or_default().contains(field),
            "{body}: {out}"
        );
    }
    let response = agent
        .client
        .request(reqwest::Method::POST, &agent.path("exec"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    for (endpoint, body) in [
        ("input", json!({"keys": ["Enter", "Hyper-x"]})),
        ("input", json!({})),
        ("wait", json!({"pattern": "("})),
        ("wait", json!({"pattern": "x".repeat(5000)})),
        ("wait", json!({"pattern": "x", "timeout": "99h"})),
    ] {
        let (status, out) = agent.client.post(&agent.path(endpoint), body.clone()).await;
        assert_eq!(status, 400, "{endpoint} {body}: {out}");
    }
    let (_, out) = agent.input(json!({"keys": ["Enter", "Hyper-x"]})).await;
    assert!(out["error"]["message"].as_str().unwrap().contains("\"Hyper-x\""), "{out}");
    for query in ["?format=html", "?scrollback=-1", "?scrollback=many"] {
        assert_eq!(agent.screen(query).await.0, 400, "{query}");
    }
}

/// `exec.max_output` cuts each stream; a timeout kills the command and what it started.
pub async fn caps_and_timeouts(agent: &Agent, max_output: usize) {
    let (_, out) = agent
        .exec(json!({"argv": ["sh", "-c", format!("head -c {} /dev/zero | tr '\\0' o; head -c 10 /dev/zero | tr '\\0' e >&2", max_output * 3)]}))
        .await;
    assert_eq!(out["stdout"].as_str().unwrap().len(), max_output, "cut at exec.max_output");
    assert_eq!(out["stderr"], "eeeeeeeeee");
    assert_eq!((out["truncated"].as_bool(), out["exit_code"].as_i64()), (Some(true), Some(0)));

    let (status, out) = agent
        .exec(json!({"argv": ["sh", "-c", "echo $$ > exec.pid; sleep 300 & echo $! > child.pid; echo started; wait"], "timeout": "1s"}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["timed_out"], true, "{out}");
    assert_eq!(out["exit_code"], Value::Null, "{out}");
    assert_eq!(out["stdout"], "started\n", "output before the kill is kept: {out}");
    assert!(out["duration_ms"].as_u64().unwrap() < 8000, "{out}");
    // The command and its child are gone, not merely disconnected.
    let gone = agent
        .sh("for p in $(cat exec.pid) $(cat child.pid); do s=; if [ -e /proc/$p/stat ]; then read -r s < /proc/$p/stat; s=${s##*) }; fi; case $s in ''|Z*) ;; *) echo alive $p $s;; esac; done; echo checked")
        .await;
    assert_eq!(gone.trim(), "checked", "{gone}");
}

/// `Accept: application/x-ndjson`: chunks as they come, then the exit line.
pub async fn streaming(agent: &Agent) {
    let response = agent
        .client
        .request(reqwest::Method::POST, &agent.path("exec"))
        .header("accept", "application/x-ndjson")
        .json(&json!({"argv": ["sh", "-c", "echo one; printf '\\377' >&2; echo two; exit 3"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let stdout: String =
        lines.iter().filter(|l| l["type"] == "stdout").filter_map(|l| l["data"].as_str()).collect();
    assert_eq!(stdout, "one\ntwo\n", "{text}");
    assert!(
        lines.iter().any(|l| l["type"] == "stderr" && l["data_base64"] == b64(b"\xff")),
        "{text}"
    );
    let last = lines.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["exit_code"].as_i64()),
        (Some("exit"), Some(3)),
        "{text}"
    );
}

/// An agent drives an interactive program: starts `sh` through `/input`, waits for its
/// prompt, sends a command, reads the answer from `/screen`.
pub async fn drives_an_interactive_shell(agent: &Agent) {
    let (status, _) = agent.input(json!({"text": "PS1='agent> ' sh", "keys": ["Enter"]})).await;
    assert_eq!(status, 204);
    let (status, found) = agent.wait("^agent>$", "10s").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        (found["matched"].as_bool(), found["source"].as_str()),
        (Some(true), Some("screen"))
    );
    agent.input(json!({"text": "echo answer=$((6*7))", "keys": ["Enter"]})).await;
    let (status, found) = agent.wait("^answer=(\\d+)$", "10s").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["groups"][0], "42");
    // The answer may be on the screen before the next prompt is: wait for that too (the first
    // prompt's line now holds the command, so only the new one is a bare prompt).
    let (status, found) = agent.wait("^agent>$", "10s").await;
    assert_eq!(status, 200, "{found}");
    let (status, screen) = agent.screen("").await;
    assert_eq!(status, 200, "{screen}");
    let lines: Vec<&str> =
        screen["lines"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let row = lines.iter().position(|l| *l == "answer=42").expect("the answer is on the screen");
    // Lines are trimmed of trailing blanks, as `tmux capture-pane` does; the cursor says more.
    assert_eq!(lines[row + 1], "agent>", "{lines:?}");
    assert_eq!(screen["cursor"]["row"], row + 1);
    assert_eq!(screen["cursor"]["col"], "agent> ".len());
    assert_eq!(screen["alternate_screen"], false);
    // Keys: C-c abandons a line, the shell is still there.
    agent.input(json!({"text": "sleep 100", "keys": ["Enter"]})).await;
    // The interrupt flushes what was typed meanwhile (the terminal's ISIG): interrupt and type
    // until seen. Each round interrupts again: a C-c that reached the shell before it had
    // started `sleep` (a slower sandbox) interrupted nothing.
    eventually("the shell answers after C-c", || async {
        agent.input(json!({"keys": ["C-c"]})).await;
        agent.input(json!({"text": "echo after-$((1+1))", "keys": ["Enter"]})).await;
        (agent.wait("^after-2$", "1s").await.0 == 200).then_some(())
    })
    .await;
    // A pattern that never shows: 408 at the timeout.
    let began = std::time::Instant::now();
    let (status, out) = agent.wait("never-shown-\\d{9}", "500ms").await;
    assert_eq!((status, error_code(&out)), (408, "timeout"), "{out}");
    assert!(began.elapsed() < Duration::from_secs(5));
}

/// The screen's size follows resizes; the alternate screen and scrollback are reported.
pub async fn screen_details(agent: &Agent) {
    let (status, _) =
        agent.client.post(&agent.path("resize"), json!({"cols": 60, "rows": 10})).await;
    assert_eq!(status, 204);
    agent.input(json!({"text": "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i; done", "keys": ["Enter"]})).await;
    agent.wait("^line12$", "10s").await;
    let (_, screen) = agent.screen("?scrollback=5").await;
    assert_eq!(
        (screen["cols"].as_u64(), screen["rows"].as_u64()),
        (Some(60), Some(10)),
        "{screen}"
    );
    assert_eq!(screen["lines"].as_array().unwrap().len(), 10);
    let scrollback = screen["scrollback"].as_array().unwrap();
    assert!(scrollback.len() <= 5 && !scrollback.is_empty(), "{screen}");
    agent
        .input(json!({"text": "printf '\\033[?1049h\\033[1;31mFULL\\033[0m'", "keys": ["Enter"]}))
        .await;
    agent.wait("^FULL", "10s").await;
    let (_, screen) = agent.screen("?format=ansi").await;
    assert_eq!(screen["alternate_screen"], true, "{screen}");
    assert!(
        screen["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("\u{1b}[0;1;31mFULL")),
        "{screen}"
    );
    agent.input(json!({"text": "printf '\\033[?1049l'", "keys": ["Enter"]})).await;
    eventually("the normal screen is back", || async {
        let (_, screen) = agent.screen("").await;
        (screen["alternate_screen"] == false).then_some(())
    })
    .await;
}

/// Another user's session is 404 on every endpoint, as an unknown one is.
pub async fn other_users_session(server: &TestServer, agent: &Agent) {
    let bob = server.bearer(BOB);
    for client_and_id in [
        (&bob, agent.id.clone()),
        (&agent.client, "00000000-0000-0000-0000-000000000000".to_string()),
    ] {
        let (client, id) = client_and_id;
        let base = format!("/api/v1/sessions/{id}");
        let (s1, _) = client.post(&format!("{base}/exec"), json!({"argv": ["true"]})).await;
        let (s2, _) = client.post(&format!("{base}/input"), json!({"text": "x"})).await;
        let (s3, _) = client.get(&format!("{base}/screen")).await;
        let (s4, _) =
            client.post(&format!("{base}/wait"), json!({"pattern": "x", "timeout": "1s"})).await;
        assert_eq!([s1, s2, s3, s4], [404; 4], "{id}");
    }
    // Nothing was typed into alice's session by bob.
    let (_, screen) = agent.screen("").await;
    assert!(!screen.to_string().contains("\"x\""), "{screen}");
}

/// An ended session: 409 with a sentence saying so.
pub async fn ended_session(agent: &Agent) {
    // Out of any shell a scenario started, then out of the session's own.
    agent.input(json!({"text": "exit\rexit\rexit\r"})).await;
    eventually("the session ends", || async {
        let (_, s) = agent.client.get(&format!("/api/v1/sessions/{}", agent.id)).await;
        (s["status"] != "running").then_some(())
    })
    .await;
    let (s1, out) = agent.exec(json!({"argv": ["true"]})).await;
    let (s2, _) = agent.input(json!({"text": "x"})).await;
    let (s3, _) = agent.wait("x", "1s").await;
    let (s4, _) = agent.screen("").await;
    assert_eq!([s1, s2, s3, s4], [409; 4], "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("has ended"), "{out}");
}
