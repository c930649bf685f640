//! Abuse limits: sessions per user, sandboxes over all users, session creations per minute,
//! request body and header sizes. Each answers 429 (or 413/431) and the server stays healthy.

mod common;

use common::{error_code, eventually, TestServer};
use kterm::config::{AuthMode, ByteSize, TokenEntry};
use serde_json::json;

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789abc";

async fn start(adjust: impl FnOnce(&mut kterm::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.auth.mode = AuthMode::Token;
        c.auth.tokens = vec![
            TokenEntry { user: "alice".into(), token: Some(ALICE.into()), token_sha256: None },
            TokenEntry { user: "bob".into(), token: Some(BOB.into()), token_sha256: None },
        ];
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
