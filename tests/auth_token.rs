//! Mode `token`: bearer tokens (from the config and a file, plain or SHA-256), the login cookie
//! it trades for, and how every endpoint treats missing, wrong and other users' credentials.

mod common;

use common::{audited, error_code, Client, TestServer};
use kterm::config::{AuthMode, TokenEntry};
use serde_json::{json, Value};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789abc";
const ROOT: &str = "root-token-0123456789abc";

async fn start() -> TestServer {
    TestServer::start_with(|c| {
        c.auth.mode = AuthMode::Token;
        c.auth.tokens = vec![
            TokenEntry { user: "alice".into(), token: Some(ALICE.into()), token_sha256: None },
            TokenEntry {
                user: "bob".into(),
                token: None,
                token_sha256: Some(kterm::auth::secret::sha256_hex(BOB)),
            },
            TokenEntry { user: "root".into(), token: Some(ROOT.into()), token_sha256: None },
        ];
        c.auth.admins = vec!["root".into()];
        // Many wrong tokens below; throttling them has its own test.
        c.auth.login_max_failures_per_client = 1000;
    })
    .await
}

/// Every endpoint that needs a caller, with a body where it takes one.
fn endpoints(id: &str) -> Vec<(reqwest::Method, String, Option<Value>)> {
    use reqwest::Method;
    vec![
        (Method::POST, "/api/v1/sessions".into(), Some(json!({}))),
        (Method::GET, "/api/v1/sessions".into(), None),
        (Method::GET, format!("/api/v1/sessions/{id}"), None),
        (
            Method::POST,
            format!("/api/v1/sessions/{id}/resize"),
            Some(json!({"cols": 90, "rows": 30})),
        ),
        (Method::POST, format!("/api/v1/sessions/{id}/ticket"), None),
        (Method::GET, "/api/v1/me".into(), None),
        (Method::GET, "/api/v1/audit".into(), None),
        (Method::POST, "/api/v1/auth/logout".into(), None),
        (Method::DELETE, format!("/api/v1/sessions/{id}"), None),
    ]
}

async fn status_of(
    client: &Client,
    method: reqwest::Method,
    path: &str,
    body: &Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, path);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_or_with_wrong_credentials_everything_is_401() {
    let server = start().await;
    let alice = server.bearer(ALICE);
    let id = alice.create_id().await;
    let nobody = server.anonymous();
    let wrong = server.bearer("alice-token-0123456780");
    let garbage = server.with_header("authorization", "Bearer x'; DROP TABLE users; --");
    let long = server.bearer(&"t".repeat(8000));
    let basic = server.with_header("authorization", "Basic YWxpY2U6cGFzc3dvcmQ=");
    for client in [&nobody, &wrong, &garbage, &long, &basic] {
        for (method, path, body) in endpoints(&id) {
            let (status, value) = status_of(client, method.clone(), &path, &body).await;
            assert_eq!(
                (status, error_code(&value)),
                (401, "unauthorized"),
                "{method} {path}: {value}"
            );
        }
        assert_eq!(client.ws_refused(&client.ws_url(&id), None).await, 401);
    }
    // Health, readiness, the UI and the login form stay open; metrics do not.
    for path in ["/healthz", "/readyz", "/", "/login.html", "/api/v1/auth/login"] {
        let response = nobody.request(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    for client in [&nobody, &wrong] {
        let response = client.request(reqwest::Method::GET, "/metrics").send().await.unwrap();
        assert_eq!(response.status(), 401);
    }
    // Credentials are checked before a body is read: a bad or huge body without them is 401.
    let huge = "x".repeat(200_000);
    for (path, body) in [
        (format!("/api/v1/sessions/{id}/resize"), "{\"cols\": \"x\"}".to_string()),
        (format!("/api/v1/sessions/{id}/resize"), huge.clone()),
        (format!("/api/v1/sessions/{id}/files/rename"), "{not json".to_string()),
        (format!("/api/v1/sessions/{id}/files/rename"), huge.clone()),
        ("/api/v1/sessions".to_string(), huge.clone()),
    ] {
        for client in [&nobody, &wrong] {
            let response = client
                .request(reqwest::Method::POST, &path)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "POST {path} with a bad body, no credentials");
        }
    }
    let (_, form) = nobody.get("/api/v1/auth/login").await;
    assert_eq!(form, json!({"mode": "token", "fields": ["token"]}));
    // The wrong token is audited as a denial.
    let root = server.bearer(ROOT);
    audited(&root, "denied", |r| {
        r["detail"].as_str().unwrap_or("").contains("invalid bearer token")
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_session_is_404_everywhere() {
    let server = start().await;
    let (alice, bob) = (server.bearer(ALICE), server.bearer(BOB));
    let id = alice.create_id().await;
    let (status, me) = bob.get("/api/v1/me").await;
    assert_eq!((status, me["user"].as_str()), (200, Some("bob")), "the SHA-256 token works");
    for (method, path, body) in endpoints(&id).into_iter().filter(|(_, p, _)| p.contains(&id)) {
        let (status, value) = status_of(&bob, method.clone(), &path, &body).await;
        assert_eq!((status, error_code(&value)), (404, "not_found"), "{method} {path}: {value}");
    }
    assert_eq!(bob.ws_refused(&bob.ws_url(&id), None).await, 404);
    let (_, list) = bob.get("/api/v1/sessions").await;
    assert_eq!(list["sessions"], json!([]));
    // Still alice's and alive; an admin sees it.
    let (status, _) = alice.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 200);
    let (_, all) = server.bearer(ROOT).get("/api/v1/sessions").await;
    assert_eq!(all["sessions"].as_array().unwrap().len(), 1);
    let (status, body) = alice.get("/api/v1/audit").await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "the audit log is for admins");
    let mut term = alice.attach(&id).await;
    term.send("echo mine-$((6*7))\n").await;
    term.read_until("mine-42").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_login_sets_a_strict_cookie_that_logout_ends() {
    let server = start().await;
    let nobody = server.anonymous();
    let (status, _, _) = nobody.login(json!({"token": "not-a-token-at-all"})).await;
    assert_eq!(status, 401);
    let (status, cookie, header) = nobody.login(json!({"token": ALICE})).await;
    assert_eq!(status, 204, "{header}");
    let cookie = cookie.expect("a kterm_session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(header.contains(attribute), "{attribute} missing: {header}");
    }
    assert!(!header.contains("Secure"), "plain http: {header}");
    let alice = server.cookie(&cookie);
    let (status, me) = alice.get("/api/v1/me").await;
    assert_eq!((status, me["user"].as_str()), (200, Some("alice")));
    let id = alice.create_id().await;
    alice.attach(&id).await.close().await;

    // A write carried by the cookie from a foreign page is refused.
    let response = alice
        .request(reqwest::Method::POST, "/api/v1/sessions")
        .header("origin", "https://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    let (status, _) = alice.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(status, 204);
    let (status, _) = alice.get("/api/v1/me").await;
    assert_eq!(status, 401, "the cookie died with the logout");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_cookies_are_401() {
    let server = start().await;
    let forged = "ab".repeat(32);
    for value in [forged.as_str(), "short", "'; DROP TABLE login_sessions; --", "%00%0a"] {
        let (status, body) = server.cookie(value).get("/api/v1/me").await;
        assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{value}");
    }
    // A cookie whose login session expired a second ago.
    let token = "cd".repeat(32);
    let now = chrono::Utc::now();
    let record = kterm::store::LoginSessionRecord {
        token_hash: kterm::auth::secret::sha256_hex(&token),
        user: "alice".into(),
        method: "token".into(),
        credential: kterm::auth::secret::sha256_hex(ALICE),
        groups: vec![],
        created_at: now - chrono::Duration::hours(13),
        expires_at: now - chrono::Duration::seconds(1),
        user_enabled: true,
    };
    server.state().store.insert_login_session(&record).await.unwrap();
    let (status, _) = server.cookie(&token).get("/api/v1/me").await;
    assert_eq!(status, 401, "expired");
    // The same row unexpired works: the test's cookie is otherwise right.
    let fresh = kterm::store::LoginSessionRecord {
        token_hash: kterm::auth::secret::sha256_hex(&"ef".repeat(32)),
        expires_at: now + chrono::Duration::hours(1),
        ..record
    };
    server.state().store.insert_login_session(&fresh).await.unwrap();
    let (status, _) = server.cookie(&"ef".repeat(32)).get("/api/v1/me").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_opens_one_websocket_once() {
    let server = start().await;
    let (alice, bob) = (server.bearer(ALICE), server.bearer(BOB));
    let id = alice.create_id().await;
    let other = alice.create_id().await;
    let (status, body) = bob.post(&format!("/api/v1/sessions/{id}/ticket"), json!({})).await;
    assert_eq!(status, 404, "no tickets for another user's session: {body}");

    let (status, ticket) = alice.post(&format!("/api/v1/sessions/{id}/ticket"), json!({})).await;
    assert_eq!(status, 201, "{ticket}");
    assert_eq!(ticket["expires_in"], 30);
    let url = ticket["websocket_url"].as_str().unwrap().to_string();
    assert!(url.contains(&format!("/api/v1/sessions/{id}/ws?ticket=")), "{url}");
    let nobody = server.anonymous();
    // A foreign Origin is refused before the ticket is looked at; the ticket survives it.
    assert_eq!(nobody.ws_refused(&url, Some("https://evil.example")).await, 403);
    let mut term = nobody.connect(&url, None).await.expect("the ticket works");
    term.send("echo ticket-$((1+1))\n").await;
    term.read_until("ticket-2").await;
    term.close().await;
    assert_eq!(nobody.ws_refused(&url, None).await, 401, "and never again");

    // A ticket is for its session only, and a wrong try burns it.
    let (_, ticket) = alice.post(&format!("/api/v1/sessions/{id}/ticket"), json!({})).await;
    let token = ticket["ticket"].as_str().unwrap();
    let elsewhere = format!("{}?ticket={token}", nobody.ws_url(&other));
    assert_eq!(nobody.ws_refused(&elsewhere, None).await, 401);
    assert_eq!(
        nobody.ws_refused(&format!("{}?ticket={token}", nobody.ws_url(&id)), None).await,
        401
    );
    let forged = format!("{}?ticket={}", nobody.ws_url(&id), "0".repeat(64));
    assert_eq!(nobody.ws_refused(&forged, None).await, 401);
    audited(&server.bearer(ROOT), "denied", |r| {
        r["session"] == json!(id) && r["detail"].as_str().unwrap_or("").contains("ticket")
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_a_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let carol = "carol-token-0123456789";
    std::fs::write(
        &file,
        format!(
            "# users\ndave:dave-token-0123456789\ncarol:sha256:{}\n",
            kterm::auth::secret::sha256_hex(carol)
        ),
    )
    .unwrap();
    let server = TestServer::start_with(|c| {
        c.auth.mode = AuthMode::Token;
        c.auth.tokens_file = file.clone();
    })
    .await;
    for (token, user) in [("dave-token-0123456789", "dave"), (carol, "carol")] {
        let (status, me) = server.bearer(token).get("/api/v1/me").await;
        assert_eq!((status, me["user"].as_str()), (200, Some(user)));
    }
    let (status, _) = server.bearer("sha256:whatever-0123456789").get("/api/v1/me").await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let server = TestServer::start_with(|c| {
        c.auth.mode = AuthMode::Token;
        c.auth.tokens = vec![TokenEntry {
            user: "alice".into(),
            token: Some(ALICE.into()),
            token_sha256: None,
        }];
        c.server.frame_ancestors = vec!["'self'".into(), "https://dash.example.com".into()];
    })
    .await;
    let nobody = server.anonymous();
    for path in ["/", "/favicon.svg", "/api/v1/me", "/api/v1/nope", "/healthz"] {
        let response = nobody.request(reqwest::Method::GET, path).send().await.unwrap();
        let headers = response.headers();
        let csp = headers.get("content-security-policy").expect("CSP").to_str().unwrap();
        assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval';"), "{path}: {csp}");
        assert!(!csp.split(';').any(|d| d.contains("script-src") && d.contains("unsafe-inline")));
        assert!(csp.contains("frame-ancestors 'self' https://dash.example.com"), "{csp}");
        assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff", "{path}");
        assert_eq!(headers.get("referrer-policy").unwrap(), "no-referrer", "{path}");
        assert!(headers.get("x-kterm-warning").is_none(), "{path}");
    }
    // The pages load no inline script.
    for page in ["/", "/login.html"] {
        let html =
            nobody.request(reqwest::Method::GET, page).send().await.unwrap().text().await.unwrap();
        for tag in html.split("<script").skip(1) {
            let open = tag.split('>').next().unwrap_or_default();
            assert!(open.contains(" src="), "{page} has an inline script: {tag}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_bearer_tokens_is_throttled_but_valid_tokens_always_pass() {
    let server = TestServer::start_with(|c| {
        c.auth.mode = AuthMode::Token;
        c.auth.tokens = vec![TokenEntry {
            user: "alice".into(),
            token: Some(ALICE.into()),
            token_sha256: None,
        }];
        c.auth.login_max_failures_per_client = 3;
    })
    .await;
    for guess in 0..3 {
        let (status, _) =
            server.bearer(&format!("guess-{guess}-0123456789")).get("/api/v1/me").await;
        assert_eq!(status, 401);
    }
    // The guesser waits now...
    let response = server
        .bearer("guess-4-0123456789")
        .request(reqwest::Method::GET, "/api/v1/me")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let (status, _, _) = server.anonymous().login(json!({"token": "another-guess-0123"})).await;
    assert_eq!(status, 429, "and so do its logins with wrong tokens");
    // ...but from the same address (a shared proxy) a valid token is never refused.
    let (status, me) = server.bearer(ALICE).get("/api/v1/me").await;
    assert_eq!((status, me["user"].as_str()), (200, Some("alice")));
    let (status, cookie, _) = server.anonymous().login(json!({"token": ALICE})).await;
    assert_eq!(status, 204, "a valid token logs in");
    let (status, _) = server.cookie(&cookie.unwrap()).get("/api/v1/me").await;
    assert_eq!(status, 200);
    let health = server.http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_an_admin_or_the_metrics_token() {
    const SCRAPER: &str = "scraper-token-0123456789";
    let server = TestServer::start_with(|c| {
        c.auth.mode = AuthMode::Token;
        c.auth.tokens = vec![
            TokenEntry { user: "alice".into(), token: Some(ALICE.into()), token_sha256: None },
            TokenEntry { user: "root".into(), token: Some(ROOT.into()), token_sha256: None },
        ];
        c.auth.admins = vec!["root".into()];
        c.server.metrics_token = SCRAPER.into();
    })
    .await;
    let status = |client: Client| async move {
        client.request(reqwest::Method::GET, "/metrics").send().await.unwrap().status().as_u16()
    };
    assert_eq!(status(server.anonymous()).await, 401);
    assert_eq!(status(server.bearer("scraper-token-012345678X")).await, 401);
    assert_eq!(status(server.bearer(ALICE)).await, 403, "a user is not an admin");
    assert_eq!(status(server.bearer(ROOT)).await, 200);
    assert_eq!(status(server.bearer(SCRAPER)).await, 200);
    let text = server
        .bearer(SCRAPER)
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("kterm_sessions_active"), "{text}");
    audited(&server.bearer(ROOT), "denied", |r| {
        r["user"] == "alice" && r["detail"].as_str().unwrap_or("").contains("/metrics")
    })
    .await;
    server.stop().await;
}
