//! Mode `proxy`: identity from a header, believed only from trusted proxy addresses; groups and
//! per-user and per-group namespaces; the client address from X-Forwarded-For.

mod common;

use std::collections::BTreeMap;

use common::{audited, error_code, TestServer};
use kterm::config::{AddrRange, AuthMode};
use serde_json::json;

const USER: &str = "kubeflow-userid";
const GROUPS: &str = "kubeflow-groups";

async fn start(trusted: &[&str]) -> TestServer {
    let trusted: Vec<AddrRange> = trusted.iter().map(|t| AddrRange::parse(t).unwrap()).collect();
    TestServer::start_with(move |c| {
        c.auth.mode = AuthMode::Proxy;
        c.auth.trusted_proxies = trusted;
        c.auth.proxy_groups_header = GROUPS.into();
        c.auth.proxy_user_prefix = "accounts.google.com:".into();
        c.auth.admins = vec!["root@example.com".into()];
        c.auth.namespaces = vec!["default".into()];
        c.auth.user_namespaces =
            BTreeMap::from([("alice@example.com".into(), vec!["team-a".into()])]);
        c.auth.group_namespaces = BTreeMap::from([("ml".into(), vec!["ml-team".into()])]);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_says_who_and_what_they_may_use() {
    let server = start(&["10.0.0.0/8", "127.0.0.1"]).await;
    let alice = server.with_header(USER, "accounts.google.com:alice@example.com");
    let (status, me) = alice.get("/api/v1/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"user": "alice@example.com", "admin": false, "groups": [], "namespaces": ["default", "team-a"]})
    );

    let id = alice.create_id().await;
    let (status, session) = alice.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!((status, session["namespace"].as_str()), (200, Some("default")));
    let (status, body) = alice.post("/api/v1/sessions", json!({"namespace": "team-a"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = alice.post("/api/v1/sessions", json!({"namespace": "ml-team"})).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    let (status, body) = alice.post("/api/v1/sessions", json!({"namespace": "../etc"})).await;
    assert_eq!(status, 400, "{body}");

    // Groups come from the groups header.
    let mut bob = server.with_header(USER, "bob@example.com");
    bob.http = reqwest::Client::builder()
        .default_headers(
            [(GROUPS.parse().unwrap(), " ml , ,\tops ".parse().unwrap())].into_iter().collect(),
        )
        .build()
        .unwrap();
    let (_, me) = bob.get("/api/v1/me").await;
    assert_eq!(me["groups"], json!(["ml", "ops"]));
    assert_eq!(me["namespaces"], json!(["default", "ml-team"]));
    let (status, body) = bob.post("/api/v1/sessions", json!({"namespace": "ml-team"})).await;
    assert_eq!(status, 201, "{body}");
    // Another user's session is 404, over REST and the WebSocket.
    assert_eq!(bob.get(&format!("/api/v1/sessions/{id}")).await.0, 404);
    assert_eq!(bob.ws_refused(&bob.ws_url(&id), None).await, 404);
    let mut term = alice.attach(&id).await;
    term.send("echo via-proxy\n").await;
    term.read_until("via-proxy").await;

    // The admin sees the refused namespace in the audit log, with the client from X-Forwarded-For.
    let mut root = server.with_header(USER, "root@example.com");
    root.http = reqwest::Client::builder()
        .default_headers(
            [("x-forwarded-for".parse().unwrap(), "203.0.113.9, 10.1.2.3".parse().unwrap())]
                .into_iter()
                .collect(),
        )
        .build()
        .unwrap();
    let row =
        audited(&root, "denied", |r| r["detail"].as_str().unwrap_or("").contains("ml-team")).await;
    assert_eq!(row["user"], "alice@example.com");
    // A cookie from the proxy identity works on its own (for clients behind the proxy).
    let (status, cookie, _) = alice.login(json!({})).await;
    assert_eq!(status, 204);
    let (status, me) = server.cookie(&cookie.unwrap()).get("/api/v1/me").await;
    assert_eq!((status, me["user"].as_str()), (200, Some("alice@example.com")));
    root.create_id().await;
    audited(&root, "session_create", |r| {
        r["user"] == "root@example.com" && r["client"] == "10.1.2.3"
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_from_an_untrusted_address_is_ignored() {
    // 127.0.0.1, where the test connects from, is not a trusted proxy.
    let server = start(&["10.0.0.0/8", "::1"]).await;
    let spoofed = server.with_header(USER, "root@example.com");
    let (status, body) = spoofed.get("/api/v1/me").await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");
    assert_eq!(spoofed.post("/api/v1/sessions", json!({})).await.0, 401);
    assert_eq!(spoofed.ws_refused(&spoofed.ws_url("any"), None).await, 401);
    let (status, _, _) = spoofed.login(json!({})).await;
    assert_eq!(status, 401, "no cookie for a spoofed header");
    let rows = server
        .state()
        .store
        .list_audit(kterm::store::AuditFilter {
            limit: 100,
            action: Some("denied".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        rows.iter().any(|r| r.detail.contains("not in auth.trusted_proxies")
            && r.client.as_deref() == Some("127.0.0.1")),
        "{rows:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_identities_from_a_trusted_proxy_are_401() {
    let server = start(&["127.0.0.0/8"]).await;
    let long = "x".repeat(300);
    for value in ["", "accounts.google.com:", long.as_str()] {
        let (status, body) = server.with_header(USER, value).get("/api/v1/me").await;
        assert_eq!(status, 401, "{value:?}: {body}");
    }
    // Odd but printable names are data: SQL metacharacters and all.
    let odd = "o'brien\"; DROP TABLE sessions; --@example.com";
    let client = server.with_header(USER, odd);
    let (status, me) = client.get("/api/v1/me").await;
    assert_eq!((status, me["user"].as_str()), (200, Some(odd)));
    let id = client.create_id().await;
    let (_, session) = client.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(session["user"], odd);
    let mut term = client.attach(&id).await;
    term.send("printf '%s|' \"$KTERM_USER\"\n").await;
    term.read_until(&format!("{odd}|")).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_header_sent_twice_is_refused_not_first_wins() {
    let server = start(&["127.0.0.0/8"]).await;
    let twice = |name: &'static str, first: &'static str, second: &'static str| {
        server
            .http
            .get(server.url("/api/v1/me"))
            .header(USER, "alice@example.com")
            .header(name, first)
            .header(name, second)
            .send()
    };
    // A client's own header, and the one the proxy added after it.
    let response = twice(USER, "root@example.com", "alice@example.com").await.unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("more than once"), "{body}");
    let response = twice(GROUPS, "admins", "ml").await.unwrap();
    assert_eq!(response.status(), 401, "the groups header too");
    // Values a proxy may have joined into one header, and hidden characters, are refused too.
    for value in ["root@example.com, alice@example.com", "alice\u{202e}moc.elpmaxe@toor"] {
        let (status, _) = server.with_header(USER, value).get("/api/v1/me").await;
        assert_eq!(status, 401, "{value:?}");
    }
    let (status, me) = server.with_header(USER, "alice@example.com").get("/api/v1/me").await;
    assert_eq!((status, me["user"].as_str()), (200, Some("alice@example.com")));
    let rows = server
        .state()
        .store
        .list_audit(kterm::store::AuditFilter {
            limit: 100,
            action: Some("denied".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(rows.iter().any(|r| r.detail.contains("more than once")), "{rows:?}");
    server.stop().await;
}
