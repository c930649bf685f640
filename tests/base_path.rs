//! kterm behind a reverse proxy at a path (`server.public_url = "http://proxy.example/tools/kterm"`):
//! every route answers both under the prefix (a proxy that forwards it) and at the root (one
//! that strips it). The tests talk to kterm directly, as the proxy would.

mod common;

use common::{Client, TestServer};
use kterm::config::{AuthMode, TokenEntry};
use serde_json::json;

const PUBLIC: &str = "http://proxy.example/tools/kterm";
const ORIGIN: &str = "http://proxy.example";
const TOKEN: &str = "alice-token-0123456789";

async fn start(adjust: impl FnOnce(&mut kterm::config::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.server.public_url = PUBLIC.into();
        adjust(c);
    })
    .await
}

/// A client without redirects followed, so a redirect itself can be seen.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn assert_page(server: &TestServer, path: &str) {
    let page = server.http.get(server.url(path)).send().await.unwrap();
    assert_eq!(page.status(), 200, "GET {path}");
    let kind = page.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/html"), "GET {path}: {kind}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_under_the_prefix_and_at_the_root() {
    let server = start(|_| {}).await;
    // A proxy that forwards the prefix, and one that strips it.
    assert_page(&server, "/tools/kterm/").await;
    assert_page(&server, "/").await;
    let js = server.http.get(server.url("/tools/kterm/favicon.svg")).send().await.unwrap();
    assert_eq!(js.status(), 200);

    // The bare prefix redirects to the prefix with a slash, keeping the page's launch query.
    let http = no_redirects();
    for (path, location) in [
        ("/tools/kterm", "/tools/kterm/"),
        (
            "/tools/kterm?ctx.run_id=r1&namespace=default",
            "/tools/kterm/?ctx.run_id=r1&namespace=default",
        ),
    ] {
        let response = http.get(server.url(path)).send().await.unwrap();
        assert!(
            matches!(response.status().as_u16(), 301 | 308),
            "GET {path}: {}",
            response.status()
        );
        assert_eq!(response.headers()["location"], location, "GET {path}");
    }

    // The API under the prefix, with URLs the browser can use through the proxy.
    let response = server
        .http
        .post(server.url("/tools/kterm/api/v1/sessions"))
        .header("origin", ORIGIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let session: serde_json::Value = response.json().await.unwrap();
    let id = session["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/tools/kterm/api/v1/sessions/{id}"));
    assert_eq!(
        session["websocket_url"],
        format!("ws://proxy.example/tools/kterm/api/v1/sessions/{id}/ws")
    );
    let (status, got) = server.get(&format!("/tools/kterm/api/v1/sessions/{id}")).await;
    assert_eq!((status, got["id"].as_str()), (200, Some(id.as_str())));
    assert_eq!(
        server.http.get(server.url("/tools/kterm/healthz")).send().await.unwrap().status(),
        200
    );

    // The terminal under the prefix, opened from the proxy's origin.
    let url =
        format!("{}/tools/kterm/api/v1/sessions/{id}/ws", server.base.replace("http://", "ws://"));
    let mut term = server.anonymous().connect(&url, Some(ORIGIN)).await.expect("attach");
    term.send("echo base-$((40+2))\n").await;
    term.read_until("base-42").await;
    term.close().await;
    // A foreign page still may not open it.
    assert_eq!(server.anonymous().ws_refused(&url, Some("http://evil.example")).await, 403);

    // The prefix matches whole segments only.
    for path in
        ["/tools/kternel/api/v1/sessions", "/tools/kternel", "/tools/kterm/tools/kterm/api/v1/me"]
    {
        let status = server.http.get(server.url(path)).send().await.unwrap().status();
        assert_eq!(status, 404, "GET {path}");
    }
    let status = server
        .http
        .post(server.url("/tools/kternel/api/v1/sessions"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_under_the_prefix_sets_a_cookie_for_the_prefix() {
    let server = start(|c| {
        c.auth.mode = AuthMode::Token;
        c.auth.tokens = vec![TokenEntry {
            user: "alice".into(),
            token: Some(TOKEN.into()),
            token_sha256: None,
        }];
    })
    .await;
    let browser = Client { header: Some(("origin".into(), ORIGIN.into())), ..server.anonymous() };
    let (status, _) = browser.get("/tools/kterm/api/v1/auth/login").await;
    assert_eq!(status, 200, "the login form's description needs no credentials");
    let login = Client { base: format!("{}/tools/kterm", server.base), ..browser };
    let (status, cookie, set_cookie) = login.login(json!({"token": TOKEN})).await;
    assert_eq!(status, 204);
    assert!(set_cookie.contains("Path=/tools/kterm"), "{set_cookie}");
    let me = server.cookie(&cookie.expect("a session cookie"));
    let (status, body) = me.get("/tools/kterm/api/v1/me").await;
    assert_eq!((status, body["user"].as_str()), (200, Some("alice")));
    server.stop().await;
}
