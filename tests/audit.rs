//! The audit log: a row for each login (ok and failed), session create, attach, detach, end
//! (with its reason), file write and delete, and denial; admin-only paging over it; terminal
//! input only when opted in; hostile strings kept as data.

mod common;

use common::{audit_rows, audited, error_code, eventually, TestServer};
use kterm::audit::{Action, Event, Outcome};

use serde_json::{json, Value};

const ALICE: &str = "alice-token-0123456789";
const ROOT: &str = "root-token-0123456789abc";

async fn start(adjust: impl FnOnce(&mut kterm::Config)) -> TestServer {
    TestServer::start_with(|c| {
        common::token_auth(c, &[("alice", ALICE), ("root", ROOT)], &["root"]);
        c.auth.namespaces = vec!["default".into()];
        adjust(c);
    })
    .await
}

fn detail(row: &Value) -> &str {
    row["detail"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_has_a_row() {
    // Four attempts a minute: the refused namespace counts as one.
    let server = start(|c| c.sessions.create_per_minute = 4).await;
    let (alice, root) = (server.bearer(ALICE), server.bearer(ROOT));
    let nobody = server.anonymous();
    assert_eq!(nobody.login(json!({"token": "wrong-token-0123456789"})).await.0, 401);
    assert_eq!(nobody.login(json!({"token": ALICE})).await.0, 204);

    let id = alice.create_id().await;
    let mut term = alice.attach(&id).await;
    term.send("echo audited\n").await;
    term.read_until("audited").await;
    term.close().await;
    assert_eq!(alice.ws_refused(&alice.ws_url(&id), Some("https://evil.example")).await, 403);
    let (status, _) = alice.post("/api/v1/sessions", json!({"namespace": "secret-ns"})).await;
    assert_eq!(status, 403);
    alice.create_id().await;
    alice.create_id().await;
    let (status, _) = alice.post("/api/v1/sessions", json!({})).await;
    assert_eq!(status, 429);
    assert_eq!(alice.delete(&format!("/api/v1/sessions/{id}")).await, 204);
    // The file API (when it lands) records through the same call.
    let audit = &server.state().audit;
    for action in [Action::FileWrite, Action::FileDelete] {
        let event =
            Event::new(action, Outcome::Ok).user("alice").session(&id).detail("path=notes.txt");
        audit.record(event).await;
    }

    let is = |row: &Value, user: &str| row["user"] == user && row["client"] == "127.0.0.1";
    audited(&root, "login", |r| r["outcome"] == "failed" && detail(r) == "invalid token").await;
    audited(&root, "login", |r| is(r, "alice") && r["outcome"] == "ok").await;
    let created = audited(&root, "session_create", |r| r["session"] == id.as_str()).await;
    assert!(is(&created, "alice") && detail(&created).contains("namespace=default"), "{created}");
    audited(&root, "attach", |r| r["session"] == id.as_str() && is(r, "alice")).await;
    audited(&root, "detach", |r| r["session"] == id.as_str() && is(r, "alice")).await;
    audited(&root, "session_end", |r| {
        r["session"] == id.as_str() && detail(r).contains("reason=deleted")
    })
    .await;
    audited(&root, "file_write", |r| r["session"] == id.as_str()).await;
    audited(&root, "file_delete", |r| r["session"] == id.as_str()).await;
    audited(&root, "denied", |r| detail(r).contains("Origin https://evil.example")).await;
    audited(&root, "denied", |r| is(r, "alice") && detail(r).contains("secret-ns")).await;
    audited(&root, "denied", |r| is(r, "alice") && detail(r).contains("create_per_minute")).await;
    // Nobody types into an audit log by default.
    assert!(audit_rows(&root, "input").await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_pages_for_admins_only() {
    let server = start(|_| {}).await;
    let (alice, root) = (server.bearer(ALICE), server.bearer(ROOT));
    for _ in 0..5 {
        assert_eq!(server.anonymous().login(json!({"token": ALICE})).await.0, 204);
    }
    let (status, body) = alice.get("/api/v1/audit").await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    audited(&root, "denied", |r| r["user"] == "alice" && detail(r).contains("/api/v1/audit")).await;
    let (status, body) = alice.get("/api/v1/pool").await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    audited(&root, "denied", |r| r["user"] == "alice" && detail(r).contains("/api/v1/pool")).await;
    for bad in ["limit=0", "limit=1001", "limit=x", "before=abc", "colour=red"] {
        let (status, body) = root.get(&format!("/api/v1/audit?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let mut seen = Vec::new();
    let mut query = "/api/v1/audit?action=login&limit=2".to_string();
    loop {
        let (status, page) = root.get(&query).await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 2);
        seen.extend(events.iter().map(|e| e["id"].as_i64().unwrap()));
        match page["next"].as_i64() {
            Some(next) => query = format!("/api/v1/audit?action=login&limit=2&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats: {seen:?}");
    let (_, filtered) = root.get("/api/v1/audit?user=nobody-at-all").await;
    assert_eq!(filtered["events"], json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_input_is_recorded_only_when_opted_in() {
    let server = start(|c| c.audit.record_input = true).await;
    let (alice, root) = (server.bearer(ALICE), server.bearer(ROOT));
    let id = alice.create_id().await;
    let mut term = alice.attach(&id).await;
    term.send("echo recorded-$((40+2))\n").await;
    term.read_until("recorded-42").await;
    let row = audited(&root, "input", |r| detail(r).contains("echo recorded-$((40+2))")).await;
    assert_eq!((row["user"].as_str(), row["session"].as_str()), (Some("alice"), Some(id.as_str())));
    // A partial line is kept until the connection ends.
    term.send("partial-line").await;
    term.close().await;
    audited(&root, "input", |r| detail(r) == "partial-line").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_are_stored_and_shown_as_data() {
    let server = start(|_| {}).await;
    let (alice, root) = (server.bearer(ALICE), server.bearer(ROOT));
    let hostile = [
        "'; DELETE FROM sessions; --",
        "\"quoted\" \\ back\\slash",
        "\u{1b}]0;pwned\u{7}\u{1b}[2J\r\n",
        "<script>alert(1)</script>",
        "ünïcødé ✓ 𝄞",
    ];
    let long = "v".repeat(1024);
    let mut context: serde_json::Map<String, Value> =
        hostile.iter().enumerate().map(|(i, v)| (format!("k{i}"), json!(v))).collect();
    context.insert("long".into(), json!(long));
    let created = alice.create(json!({"context": context})).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["context"], Value::Object(context.clone()));
    let (_, fetched) = alice.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(fetched["context"], Value::Object(context.clone()), "stored and read back as given");
    let mut term = alice.attach(id).await;
    term.send("printf '[%s]' \"$KTERM_CTX_K0\"\n").await;
    term.read_until("['; DELETE FROM sessions; --]").await;
    // Bad fields are refused without touching anything.
    for body in [
        json!({"namespace": "x'; DROP TABLE sessions; --"}),
        json!({"namespace": "n".repeat(10_000)}),
        json!({"context": {"k": "\u{0}"}}),
        json!({"context": {"'; --": "v"}}),
    ] {
        let (status, _) = alice.post("/api/v1/sessions", body).await;
        assert_eq!(status, 400);
    }
    let (_, list) = alice.get("/api/v1/sessions").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "the sessions table is intact");
    let denied = eventually("a bad token's denial", || async {
        server.bearer(hostile[0]).get("/api/v1/me").await;
        audit_rows(&root, "denied").await.into_iter().find(|r| detail(r).contains("invalid bearer"))
    })
    .await;
    assert_eq!(denied["client"], "127.0.0.1");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invisible_characters_in_names_are_escaped_in_the_audit_api() {
    let server = start(|_| {}).await;
    let root = server.bearer(ROOT);
    // A name that shows as "admin" followed by reversed text, with zero-width and tag characters.
    let name = "admin\u{202e}nimda\u{200b}\u{2066}x\u{7f}\u{85}\u{e0041}";
    let event = Event::new(Action::Login, Outcome::Failed).user(name).detail("a \u{202e} detail");
    server.state().audit.record(event).await;
    let response =
        root.request(reqwest::Method::GET, "/api/v1/audit?action=login").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for hidden in ['\u{202e}', '\u{200b}', '\u{2066}', '\u{7f}', '\u{85}', '\u{e0041}'] {
        assert!(!text.contains(hidden), "{hidden:?} is sent as itself: {text}");
    }
    assert!(
        text.contains("admin\\u202enimda\\u200b\\u2066x\\u007f\\u0085\\udb40\\udc41"),
        "{text}"
    );
    // The value, as JSON, is still the name as it was given.
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["events"][0]["user"], name);
    assert_eq!(body["events"][0]["detail"], "a \u{202e} detail");
    server.stop().await;
}
