//! Abuse limits: sessions per user, sandboxes over all users, session creations per minute,
//! request body and header sizes. Each answers 429 (or 413/431) and the server stays healthy.

mod common;

use common::{error_code, eventually, TestServer};
use kterm::config::ByteSize;
use serde_json::json;

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789abc";

async fn start(adjust: impl FnOnce(&mut kterm::Config)) -> TestServer {
    TestServer::start_with(|c| {
        common::token_auth(c, &[("alice", ALICE), ("bob", BOB)], &[]);
        adjust(c);
    })
    .await
}

async fn healthy(server: &TestServer) {
    let response = server.http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_user_are_capped() {
    let server = start(|c| c.sessions.max_per_user = 2).await;
    let alice = server.bearer(ALICE);
    let first = alice.create_id().await;
    alice.create_id().await;
    let (status, body) = alice.post("/api/v1/sessions", json!({})).await;
    assert_eq!((status, error_code(&body)), (429, "limit_reached"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("sessions.max_per_user"));
    // Another user is not affected; ending one makes room again.
    server.bearer(BOB).create_id().await;
    assert_eq!(alice.delete(&format!("/api/v1/sessions/{first}")).await, 204);
    alice.create_id().await;
    healthy(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_are_capped_over_all_users() {
    let server = start(|c| c.sessions.max_sandboxes = 1).await;
    let (alice, bob) = (server.bearer(ALICE), server.bearer(BOB));
    let a1 = alice.create_id().await;
    let a2 = alice.create_id().await; // the same sandbox: no new one needed
    let (status, body) = bob.post("/api/v1/sessions", json!({})).await;
    assert_eq!((status, error_code(&body)), (429, "limit_reached"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("sessions.max_sandboxes"));
    for id in [a1, a2] {
        assert_eq!(alice.delete(&format!("/api/v1/sessions/{id}")).await, 204);
    }
    // Alice's sandbox is gone with her last session: Bob gets one now.
    let id = bob.create_id().await;
    let mut term = bob.attach(&id).await;
    term.send("echo bob-in\n").await;
    term.read_until("bob-in").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_creation_is_rate_limited_per_user_with_retry_after() {
    let server = start(|c| {
        c.sessions.create_per_minute = 2;
        c.sessions.max_per_user = 10;
    })
    .await;
    let alice = server.bearer(ALICE);
    let id = alice.create_id().await;
    alice.create_id().await;
    let response = alice
        .request(reqwest::Method::POST, "/api/v1/sessions")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("sessions.create_per_minute"));
    // Bob has his own budget; Alice's sessions still work; the server is fine.
    server.bearer(BOB).create_id().await;
    let mut term = alice.attach(&id).await;
    term.send("echo still-here\n").await;
    term.read_until("still-here").await;
    healthy(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_headers_have_limits() {
    let server = start(|c| {
        c.server.max_request_body = ByteSize(4096);
        c.server.max_request_headers = ByteSize(4096);
    })
    .await;
    let alice = server.bearer(ALICE);
    let (status, body) =
        alice.post("/api/v1/sessions", json!({"context": {"run_id": "x".repeat(5000)}})).await;
    assert_eq!(status, 413, "{body}");
    let response = alice
        .request(reqwest::Method::GET, "/api/v1/me")
        .header("x-padding", "p".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "too_large");
    let response = alice
        .request(reqwest::Method::GET, &format!("/api/v1/me?q={}", "q".repeat(5000)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431, "the request line counts");
    // Many requests over the limits later, normal ones still work.
    for _ in 0..50 {
        let _ = alice
            .request(reqwest::Method::GET, "/api/v1/me")
            .header("x-padding", "p".repeat(5000))
            .send()
            .await;
    }
    let (status, _) = alice.get("/api/v1/me").await;
    assert_eq!(status, 200);
    healthy(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_none_off_loopback_needs_consent_and_warns_on_every_response() {
    let mut refused = common::test_config(std::path::Path::new("/tmp/unused"));
    refused.server.listen = "0.0.0.0:0".into();
    refused.local.allow_remote = true;
    let err = refused.validate().unwrap_err();
    assert!(err.0.contains("auth.mode") && err.0.contains("allow_none_remote"), "{err}");

    let mut server = TestServer::start_with(|c| {
        c.server.listen = "0.0.0.0:0".into();
        c.local.allow_remote = true;
        c.auth.allow_none_remote = true;
    })
    .await;
    // Talk to it over loopback only.
    let port = server.server.as_ref().unwrap().addr().port();
    server.base = format!("http://127.0.0.1:{port}");
    for path in ["/healthz", "/api/v1/me", "/", "/api/v1/nope"] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        let warning =
            response.headers().get("x-kterm-warning").map(|v| v.to_str().unwrap().to_string());
        assert!(warning.as_deref().is_some_and(|w| w.contains("anyone")), "{path}: {warning:?}");
    }
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    eventually("the session to run", || async {
        let (_, s) = server.get(&format!("/api/v1/sessions/{id}")).await;
        (s["status"] == "running").then_some(())
    })
    .await;
    server.stop().await;
}

/// Peak resident memory of a process, in KiB (VmHWM).
fn peak_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_failed_logins_is_bounded_in_memory_and_answered_fast() {
    // 200 clients at once (distinct addresses through a trusted proxy), each with a wrong
    // password: argon2id takes 19 MiB per check, so only a few may run at once.
    let server = common::RealServer::start(
        "[backend]\nkind = \"local\"\n[auth]\nmode = \"local\"\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let before = peak_kib(server.pid());
    let http = reqwest::Client::new();
    let logins = (0..200).map(|i| {
        http.post(format!("{}/api/v1/auth/login", server.base))
            .header("x-forwarded-for", format!("203.0.{}.{}", i / 250, i % 250))
            .json(&json!({"username": format!("user{i}"), "password": "wrong-password"}))
            .send()
    });
    let answers = futures_util::future::join_all(logins).await;
    let (mut checked, mut busy) = (0, 0);
    for answer in answers {
        let answer = answer.expect("an answer");
        match answer.status().as_u16() {
            401 => checked += 1,
            503 => {
                let retry = answer.headers().get("retry-after").expect("Retry-After on 503");
                assert!(retry.to_str().unwrap().parse::<u64>().unwrap() >= 1);
                let body: serde_json::Value = answer.json().await.unwrap();
                assert_eq!(error_code(&body), "busy", "{body}");
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let peak = peak_kib(server.pid());
    eprintln!("{checked} checked, {busy} refused at once; peak RSS {before} KiB -> {peak} KiB");
    assert!(checked >= 1 && busy >= 1, "{checked} checked, {busy} busy");
    assert!(peak < before + 128 * 1024, "peak RSS grew from {before} KiB to {peak} KiB");
    // The refusals are audited, and the server answers as before.
    let store = kterm::store::Store::open(&server.dir.path().join("kterm.db")).unwrap();
    let filter = kterm::store::AuditFilter {
        action: Some("denied".into()),
        limit: 1000,
        ..Default::default()
    };
    let rows = store.list_audit(filter).await.unwrap();
    assert!(
        rows.iter().filter(|r| r.detail.contains("too many password checks")).count() >= 1,
        "{rows:?}"
    );
    let response = http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "nobody", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_share_a_memory_budget() {
    let server =
        common::RealServer::start("[backend]\nkind = \"local\"\n[files]\nmemory = \"24m\"\n");
    let session = server.create_session(json!({})).await;
    let id = session["id"].as_str().unwrap().to_string();
    let before = peak_kib(server.pid());
    let http = reqwest::Client::new();
    let body = vec![b'u'; 9 << 20];
    let uploads = (0..40).map(|i| {
        http.put(format!("{}/api/v1/sessions/{id}/files/content?path=up-{i}.bin", server.base))
            .body(body.clone())
            .send()
    });
    let answers = futures_util::future::join_all(uploads).await;
    let (mut written, mut busy) = (0, 0);
    for answer in answers {
        // A refused upload may see its connection closed before the whole body was sent.
        let Ok(answer) = answer else { continue };
        match answer.status().as_u16() {
            204 => written += 1,
            503 => {
                assert!(answer.headers().contains_key("retry-after"));
                busy += 1;
            }
            other => panic!("unexpected {other}: {:?}", answer.text().await),
        }
    }
    let peak = peak_kib(server.pid());
    eprintln!("{written} written, {busy} refused; peak RSS {before} KiB -> {peak} KiB");
    assert!(written >= 1 && busy >= 1, "{written} written, {busy} busy");
    assert!(peak < before + 96 * 1024, "peak RSS grew from {before} KiB to {peak} KiB");
    // With room again, an upload goes through.
    let response = http
        .put(format!("{}/api/v1/sessions/{id}/files/content?path=last.bin", server.base))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}
