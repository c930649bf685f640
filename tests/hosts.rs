//! DNS rebinding and cross-site requests: a page on another site must not reach kterm, even in
//! auth mode `none` on loopback, whatever name it re-points at 127.0.0.1 and whatever it posts.
//! Forwarding headers count only from trusted proxies.

mod common;

use common::raw_ws::RawWs;
use common::TestServer;
use kterm::config::{AddrRange, BackendKind};
use serde_json::{json, Value};

async fn start(adjust: impl FnOnce(&mut kterm::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.backend.kind = BackendKind::Local;
        adjust(c);
    })
    .await
}

/// Every route, by method, with a body where it takes one.
fn routes(id: &str) -> Vec<(reqwest::Method, String, Option<Value>)> {
    use reqwest::Method;
    let s = format!("/api/v1/sessions/{id}");
    vec![
        (Method::GET, "/".into(), None),
        (Method::GET, "/login.html".into(), None),
        (Method::GET, "/favicon.svg".into(), None),
        (Method::GET, "/healthz".into(), None),
        (Method::GET, "/readyz".into(), None),
        (Method::GET, "/metrics".into(), None),
        (Method::GET, "/no/such/page".into(), None),
        (Method::GET, "/api/v1/me".into(), None),
        (Method::GET, "/api/v1/sessions".into(), None),
        (Method::POST, "/api/v1/sessions".into(), Some(json!({}))),
        (Method::GET, s.clone(), None),
        (Method::POST, format!("{s}/resize"), Some(json!({"cols": 80, "rows": 24}))),
        (Method::POST, format!("{s}/ticket"), None),
        (Method::GET, format!("{s}/files?path="), None),
        (Method::PUT, format!("{s}/files/content?path=x.txt"), None),
        (Method::GET, "/api/v1/auth/login".into(), None),
        (Method::POST, "/api/v1/auth/login".into(), Some(json!({}))),
        (Method::POST, "/api/v1/auth/logout".into(), None),
        (Method::GET, "/api/v1/audit".into(), None),
        (Method::GET, "/api/v1/pool".into(), None),
        (Method::GET, "/api/v1/profiles".into(), None),
        (Method::DELETE, s, None),
    ]
}

async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: &Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = server.http.request(method, server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_on_every_route_before_any_handler() {
    let server = start(|_| {}).await;
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    for (method, path, body) in routes(&id) {
        for host in ["evil.example", "EVIL.example:8080", "127.0.0.1.evil.example", "[::2]:80"] {
            let (status, text) =
                send(&server, method.clone(), &path, &body, &[("host", host)]).await;
            assert_eq!(status, 403, "{method} {path} with Host {host}: {text}");
            assert!(
                text.contains("server.allowed_hosts")
                    && text.to_ascii_lowercase().contains(&host.to_ascii_lowercase()),
                "{method} {path}: the answer names the key to set: {text}"
            );
        }
    }
    // The WebSocket upgrade too.
    let addr = server.base.trim_start_matches("http://").to_string();
    let path = format!("/api/v1/sessions/{id}/ws");
    let refused = RawWs::connect(&addr, &path, &[("host", "evil.example")]).await.err();
    assert!(refused.as_deref().is_some_and(|r| r.starts_with("HTTP/1.1 403")), "{refused:?}");
    // Nothing was done: the one session is still the only one, and still running.
    let (_, list) = server.get("/api/v1/sessions").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["sessions"][0]["status"], "running");
    // The refusals are audited.
    let rows = server
        .state()
        .store
        .list_audit(kterm::store::AuditFilter {
            action: Some("denied".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(rows.iter().any(|r| r.detail.contains("evil.example")), "{rows:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_public_url_and_allowed_hosts_pass() {
    let server = start(|c| {
        c.server.public_url = "https://dash.example.com/tools/kterm".into();
        c.server.allowed_hosts = vec!["kterm.lan".into(), "*.corp.example".into()];
    })
    .await;
    let port = server.server.as_ref().unwrap().addr().port();
    let allowed = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".into(),
        "app.localhost".into(),
        "127.0.0.2".into(),
        "[::1]:8080".into(),
        "dash.example.com".into(),
        "Dash.Example.com:443".into(),
        "kterm.lan:8080".into(),
        "shell.corp.example".into(),
    ];
    for host in &allowed {
        let (status, text) =
            send(&server, reqwest::Method::GET, "/api/v1/me", &None, &[("host", host)]).await;
        assert_eq!(status, 200, "Host {host}: {text}");
        let (status, _) =
            send(&server, reqwest::Method::GET, "/tools/kterm/healthz", &None, &[("host", host)])
                .await;
        assert_eq!(status, 200, "Host {host} under the base path");
    }
    for host in ["kterm.lan.evil.example", "corp.example", "example.com"] {
        let (status, _) =
            send(&server, reqwest::Method::GET, "/healthz", &None, &[("host", host)]).await;
        assert_eq!(status, 403, "Host {host}");
    }
    // A request without any Host (HTTP/1.0) passes: browsers always send one.
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_writes_are_refused_in_mode_none() {
    let server = start(|_| {}).await;
    let own = server.base.clone();
    let sessions = "/api/v1/sessions";
    let post = |kind: &'static str, origin: Option<&'static str>| {
        let mut request = server.http.post(server.url(sessions)).header("content-type", kind);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move {
            let response = request.body("{}").send().await.unwrap();
            response.status().as_u16()
        }
    };
    // What a page on another site can send without a preflight: a form, or text/plain.
    for kind in
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
    {
        assert_eq!(post(kind, Some("https://evil.example")).await, 403, "{kind} from evil");
        assert_eq!(post(kind, Some("null")).await, 403, "{kind} from a sandboxed frame");
        assert_eq!(post(kind, None).await, 415, "{kind} without an Origin");
    }
    assert_eq!(post("application/json", Some("https://evil.example")).await, 403);
    let (_, list) = server.get(sessions).await;
    assert_eq!(list["sessions"], json!([]), "no session was made");
    // The page itself, and tools such as curl, still can.
    let response = server
        .http
        .post(server.url(sessions))
        .header("origin", own.as_str())
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(post("application/json", None).await, 201);

    // File uploads take raw bytes: an allowed Origin, or no Origin and no form type.
    let put = |kind: Option<&'static str>, origin: Option<String>| {
        let mut request =
            server.http.put(server.url(&format!("{sessions}/{id}/files/content?path=f.txt")));
        if let Some(kind) = kind {
            request = request.header("content-type", kind);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { request.body("data").send().await.unwrap().status().as_u16() }
    };
    assert_eq!(put(Some("text/plain"), Some("https://evil.example".into())).await, 403);
    assert_eq!(put(Some("text/plain"), None).await, 415);
    assert_eq!(put(Some("text/plain"), Some(own.clone())).await, 204);
    assert_eq!(put(Some("application/octet-stream"), None).await, 204);
    assert_eq!(put(None, None).await, 204);
    // A delete from another site too.
    let response = server
        .http
        .delete(server.url(&format!("{sessions}/{id}")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let (status, _) = server.get(&format!("{sessions}/{id}")).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    // 127.0.0.1, where the test connects from, is not trusted here.
    let untrusted =
        start(|c| c.auth.trusted_proxies = vec![AddrRange::parse("10.0.0.1").unwrap()]).await;
    let id = untrusted.create(json!({})).await["id"].as_str().unwrap().to_string();
    let spoofed = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "proto=https;host=evil.example"),
    ];
    // The Origin of a page that names itself through the forwarding headers is still foreign.
    let addr = untrusted.base.trim_start_matches("http://").to_string();
    let path = format!("/api/v1/sessions/{id}/ws");
    for (name, value) in spoofed {
        let headers = [("origin", "http://evil.example"), (name, value)];
        let refused = RawWs::connect(&addr, &path, &headers).await.err();
        assert!(refused.as_deref().is_some_and(|r| r.starts_with("HTTP/1.1 403")), "{name}");
    }
    // Nor do they change the session's websocket_url or the cookie's Secure flag.
    let (status, body) = session_with(&untrusted, &id, &spoofed).await;
    assert_eq!(status, 200);
    assert!(
        body["websocket_url"].as_str().unwrap().starts_with(&format!("ws://{addr}/")),
        "{body}"
    );
    let (status, cookie) = login_with(&untrusted, &spoofed).await;
    assert_eq!(status, 204);
    assert!(!cookie.contains("Secure"), "{cookie}");
    untrusted.stop().await;

    // From a trusted proxy they count (and the forwarded host must be an allowed one).
    let trusted = start(|c| {
        c.auth.trusted_proxies = vec![AddrRange::parse("127.0.0.1").unwrap()];
        c.server.allowed_hosts = vec!["kterm.example".into()];
    })
    .await;
    let id = trusted.create(json!({})).await["id"].as_str().unwrap().to_string();
    let forwarded = [("x-forwarded-host", "kterm.example"), ("x-forwarded-proto", "https")];
    let (status, body) = session_with(&trusted, &id, &forwarded).await;
    assert_eq!(status, 200);
    let url = body["websocket_url"].as_str().unwrap();
    assert!(url.starts_with("wss://kterm.example/api/v1/sessions/"), "{url}");
    let (_, cookie) = login_with(&trusted, &forwarded).await;
    assert!(cookie.contains("Secure"), "{cookie}");
    let (status, _) = session_with(&trusted, &id, &[("x-forwarded-host", "evil.example")]).await;
    assert_eq!(status, 403, "a forwarded host is checked like Host");
    trusted.stop().await;
}

async fn session_with(server: &TestServer, id: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = server.http.get(server.url(&format!("/api/v1/sessions/{id}")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn login_with(server: &TestServer, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = server.http.post(server.url("/api/v1/auth/login")).json(&json!({}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (response.status().as_u16(), cookie)
}
