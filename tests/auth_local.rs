//! Mode `local`: users managed with `kterm user`, argon2id passwords, the login form's API,
//! cookies that die with a password change or a disabled user, and throttled brute force.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{audit_rows, audited, error_code, Client, TestServer};
use kterm::config::AuthMode;
use serde_json::json;

async fn start(adjust: impl FnOnce(&mut kterm::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.auth.mode = AuthMode::Local;
        c.auth.admins = vec!["root".into()];
        adjust(c);
    })
    .await
}

async fn add_user(server: &TestServer, name: &str, password: &str) {
    kterm::auth::users::add(&server.state().store, name, password).await.expect("user added");
}

async fn login(server: &TestServer, name: &str, password: &str) -> (u16, Option<String>) {
    let (status, cookie, _) =
        server.anonymous().login(json!({"username": name, "password": password})).await;
    (status, cookie)
}

async fn admin(server: &TestServer) -> Client {
    add_user(server, "root", "root-password-1").await;
    let (status, cookie) = login(server, "root", "root-password-1").await;
    assert_eq!(status, 204);
    server.cookie(&cookie.unwrap())
}

/// Runs `kterm` with `stdin` as its standard input.
fn kterm(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kterm"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kterm");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_from_the_command_line_log_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kterm.db");
    let state = db.to_str().unwrap();
    let (code, _, err) = kterm(&["user", "add", "alice", "--state", state], "s3cret-pass\n");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = kterm(&["user", "add", "alice", "--state", state], "s3cret-pass\n");
    assert_eq!(code, 1, "a second add is refused: {err}");
    let (code, _, err) =
        kterm(&["user", "add", "x'; DROP TABLE users; --", "--state", state], "s3cret-pass\n");
    assert_eq!(code, 2, "bad names are bad arguments: {err}");
    let (code, _, err) = kterm(&["user", "add", "bob", "--state", state], "short\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least 8"), "{err}");
    let (code, out, _) = kterm(&["user", "list", "--state", state], "");
    assert_eq!(code, 0);
    assert!(out.contains("alice") && out.contains("enabled") && !out.contains("bob"), "{out}");
    let (code, _, err) = kterm(&["user", "passwd", "nobody", "--state", state], "whatever-1\n");
    assert_eq!(code, 1, "{err}");
    // The password is stored as argon2id, never in clear.
    let store = kterm::store::Store::open(&db).unwrap();
    let alice = store.get_user("alice").await.unwrap().unwrap();
    assert!(
        alice.password_hash.starts_with("$argon2id$") && !alice.password_hash.contains("s3cret")
    );
    drop(store);

    let server = TestServer::start_with(|c| {
        c.state.path = db.clone();
        c.auth.mode = AuthMode::Local;
    })
    .await;
    let (_, form) = server.anonymous().get("/api/v1/auth/login").await;
    assert_eq!(form, json!({"mode": "local", "fields": ["username", "password"]}));
    let (status, cookie) = login(&server, "alice", "s3cret-pass").await;
    assert_eq!(status, 204);
    let alice = server.cookie(&cookie.unwrap());
    let (status, me) = alice.get("/api/v1/me").await;
    assert_eq!(
        (status, me["user"].as_str(), me["admin"].as_bool()),
        (200, Some("alice"), Some(false))
    );
    let id = alice.create_id().await;
    let mut term = alice.attach(&id).await;
    term.send("echo $KTERM_USER-logged-in\n").await;
    term.read_until("alice-logged-in").await;
    term.close().await;

    // A password change from the command line ends the login at once.
    let (code, _, err) = kterm(&["user", "passwd", "alice", "--state", state], "n3w-password\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(alice.get("/api/v1/me").await.0, 401);
    assert_eq!(login(&server, "alice", "s3cret-pass").await.0, 401);
    let (status, cookie) = login(&server, "alice", "n3w-password").await;
    assert_eq!(status, 204);
    let alice = server.cookie(&cookie.unwrap());
    // So does disabling the user; enabling lets them log in again.
    let (code, _, _) = kterm(&["user", "disable", "alice", "--state", state], "");
    assert_eq!(code, 0);
    assert_eq!(alice.get("/api/v1/me").await.0, 401);
    assert_eq!(login(&server, "alice", "n3w-password").await.0, 401);
    let (code, out, _) = kterm(&["user", "list", "--state", state], "");
    assert!(code == 0 && out.contains("disabled"), "{out}");
    let (code, _, _) = kterm(&["user", "enable", "alice", "--state", state], "");
    assert_eq!(code, 0);
    let (status, cookie) = login(&server, "alice", "n3w-password").await;
    assert_eq!(status, 204);
    let alice = server.cookie(&cookie.unwrap());
    assert_eq!(alice.post("/api/v1/auth/logout", json!({})).await.0, 204);
    assert_eq!(alice.get("/api/v1/me").await.0, 401);
    server.stop().await;
}

/// A login from the client address `client` (through the trusted proxy 127.0.0.1).
async fn login_from(
    server: &TestServer,
    client: &str,
    name: &str,
    password: &str,
) -> reqwest::Response {
    server
        .anonymous()
        .request(reqwest::Method::POST, "/api/v1/auth/login")
        .header("x-forwarded-for", client)
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_on_a_user_backs_off_per_client_with_retry_after() {
    let server = start(|c| {
        c.auth.login_backoff_after = 3;
        c.auth.trusted_proxies = vec![kterm::config::AddrRange::parse("127.0.0.1").unwrap()];
    })
    .await;
    add_user(&server, "alice", "right-password").await;
    add_user(&server, "bob", "bobs-password").await;
    let attacker = "203.0.113.66";
    for attempt in 0..3 {
        let response = login_from(&server, attacker, "alice", &format!("guess-{attempt}")).await;
        assert_eq!(response.status(), 401);
    }
    // Now that client waits, even with the right password, and is told how long.
    let response = login_from(&server, attacker, "alice", "right-password").await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry, 1, "the first wait is a second, not a wall");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "limit_reached");
    // Alice from her own address is not locked out by it, nor is another user.
    assert_eq!(login_from(&server, "198.51.100.7", "alice", "right-password").await.status(), 204);
    assert_eq!(login_from(&server, attacker, "bob", "bobs-password").await.status(), 204);
    // Once the wait is over, the right password works from there too.
    common::eventually("the backoff to pass", || async {
        let response = login_from(&server, attacker, "alice", "right-password").await;
        (response.status() == 204).then_some(())
    })
    .await;
    let root = admin(&server).await;
    let throttled = audit_rows(&root, "login").await;
    assert!(
        throttled.iter().any(|r| r["outcome"] == "denied" && r["user"] == "alice"),
        "{throttled:?}"
    );
    assert_eq!(
        throttled.iter().filter(|r| r["outcome"] == "failed" && r["user"] == "alice").count(),
        3
    );
    server.stop().await;
}

/// Waits for `detached`/`logged_out` and close 4001 on `term`.
async fn assert_logged_out(term: &mut common::Terminal, what: &str) {
    let message = term.next_control().await;
    assert_eq!(message, json!({"type": "detached", "reason": "logged_out"}), "{what}");
    assert_eq!(term.closed().await, Some(4001), "{what}");
}

/// A ticket for `id` issued to `client`, as its WebSocket URL.
async fn ticket(client: &Client, id: &str) -> String {
    let (status, body) = client.post(&format!("/api/v1/sessions/{id}/ticket"), json!({})).await;
    assert_eq!(status, 201, "{body}");
    body["websocket_url"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_what_the_login_opened_and_nothing_else() {
    let server = start(|_| {}).await;
    add_user(&server, "alice", "alice-password").await;
    let first = server.cookie(&login(&server, "alice", "alice-password").await.1.unwrap());
    let second = server.cookie(&login(&server, "alice", "alice-password").await.1.unwrap());
    let (x, y, z) = (first.create_id().await, first.create_id().await, second.create_id().await);
    let mut by_cookie = first.attach(&x).await;
    let mut by_ticket = common::Terminal::connect(&ticket(&first, &y).await, None).await.unwrap();
    let unused = ticket(&first, &x).await;
    let mut other_login = second.attach(&z).await;

    assert_eq!(first.post("/api/v1/auth/logout", json!({})).await.0, 204);
    assert_logged_out(&mut by_cookie, "the WebSocket opened with the cookie").await;
    assert_logged_out(&mut by_ticket, "the WebSocket opened with its ticket").await;
    let refused = first.ws_refused(&unused, None).await;
    assert_eq!(refused, 401, "a ticket issued before the logout");
    // The other login of the same user goes on.
    other_login.send("echo still-$((1+1))\n").await;
    other_login.read_until("still-2").await;
    assert_eq!(second.get("/api/v1/me").await.0, 200);
    // The shells themselves are left running for the user's next login.
    let third = server.cookie(&login(&server, "alice", "alice-password").await.1.unwrap());
    let mut again = third.attach(&x).await;
    again.send("echo back-$((2+2))\n").await;
    again.read_until("back-4").await;
    let rows = server
        .state()
        .store
        .list_audit(kterm::store::AuditFilter {
            action: Some("detach".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    for id in [&x, &y] {
        assert!(
            rows.iter().any(|r| r.session_id.as_deref() == Some(id) && r.detail == "logged out"),
            "{rows:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwd_and_disable_from_another_process_end_the_logins_connections() {
    let server = start(|_| {}).await;
    let db = server.dir.path().join("kterm.db");
    let state = db.to_str().unwrap().to_string();
    add_user(&server, "alice", "alice-password").await;
    let alice = server.cookie(&login(&server, "alice", "alice-password").await.1.unwrap());
    let (x, y) = (alice.create_id().await, alice.create_id().await);
    for change in ["passwd", "disable"] {
        let alice = server.cookie(&login(&server, "alice", "alice-password").await.1.unwrap());
        let mut by_cookie = alice.attach(&x).await;
        let mut by_ticket =
            common::Terminal::connect(&ticket(&alice, &y).await, None).await.unwrap();
        let unused = ticket(&alice, &x).await;
        // The command line changes the state file the server uses, from its own process.
        let (code, _, err) =
            kterm(&["user", change, "alice", "--state", &state], "alice-password\n");
        assert_eq!(code, 0, "{err}");
        assert_logged_out(&mut by_cookie, change).await;
        assert_logged_out(&mut by_ticket, change).await;
        assert_eq!(alice.ws_refused(&unused, None).await, 401, "{change}: an earlier ticket");
        assert_eq!(alice.get("/api/v1/me").await.0, 401);
        // The shells go on, for the user's next login.
        let owner = kterm::session::Caller::user("alice");
        for id in [&x, &y] {
            assert!(server.state().registry.live(&owner, id).is_ok(), "{change}: {id}");
        }
    }
    let rows = server
        .state()
        .store
        .list_audit(kterm::store::AuditFilter {
            action: Some("logout".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        rows.iter().filter(|r| r.detail.contains("connections were closed")).count() >= 2,
        "{rows:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_from_one_address_is_throttled_across_user_names() {
    let server = start(|c| c.auth.login_max_failures_per_client = 4).await;
    add_user(&server, "carol", "carols-password").await;
    for name in ["u1", "u2", "u3", "u4"] {
        assert_eq!(login(&server, name, "guess-guess").await.0, 401);
    }
    assert_eq!(login(&server, "carol", "carols-password").await.0, 429);
    assert_eq!(login(&server, "u5", "guess-guess").await.0, 429);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_login_fields_are_refused_and_stored_as_data() {
    let server = start(|c| c.auth.login_max_failures_per_client = 1000).await;
    let root = admin(&server).await;
    let long = "n".repeat(20_000);
    let hostile = [
        "robert'); DROP TABLE users; --",
        "a\"b\\c\u{0}d",
        "\u{1b}[2J\r\nFAKE LOG LINE level=error",
        "%s%n%x${jndi:ldap://x}",
        long.as_str(),
    ];
    for name in hostile {
        let (status, cookie) = login(&server, name, "' OR '1'='1").await;
        assert_eq!((status, cookie), (401, None), "{:?}", &name[..name.len().min(40)]);
    }
    // Wrong shapes are 400, a huge body 413; none of it hurts.
    let (status, _, _) = server.anonymous().login(json!({"username": "a"})).await;
    assert_eq!(status, 400);
    let (status, _, _) =
        server.anonymous().login(json!({"username": "a", "password": "b", "x": 1})).await;
    assert_eq!(status, 400);
    let (status, _, _) =
        server.anonymous().login(json!({"username": "a", "password": "p".repeat(100_000)})).await;
    assert_eq!(status, 413);
    let rows = audit_rows(&root, "login").await;
    for name in &hostile[..4] {
        assert!(
            rows.iter().any(|r| r["user"] == *name && r["outcome"] == "failed"),
            "{name:?} is in the audit log as given"
        );
    }
    let cut =
        rows.iter().find_map(|r| r["user"].as_str().filter(|u| u.starts_with("nnnn"))).unwrap();
    assert!(cut.chars().count() <= 257 && cut.ends_with('…'), "long values are cut: {}", cut.len());
    assert_eq!(
        server.state().store.list_users().await.unwrap().len(),
        1,
        "the users table is intact"
    );
    audited(&root, "login", |r| r["user"] == "root" && r["outcome"] == "ok").await;
    server.stop().await;
}
