//! The OpenAPI document: it lists exactly the routes the server registers, it is served and
//! well formed (every reference resolves, every answer is an error schema or documented), and
//! real answers carry the documented keys.

mod common;

use std::collections::BTreeSet;

use common::TestServer;
use serde_json::{json, Value};

fn document() -> Value {
    let config = kterm::config::Config::default();
    kterm::http::openapi::document(&config)
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

#[test]
fn every_registered_route_is_documented_and_nothing_else() {
    let registered: BTreeSet<(String, String)> = kterm::http::routes::registered()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path))
        .collect();
    let doc = documented(&document());
    let undocumented: Vec<_> = registered.difference(&doc).collect();
    let unserved: Vec<_> = doc.difference(&registered).collect();
    assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
    assert!(unserved.is_empty(), "documented routes the server does not register: {unserved:?}");
    assert!(registered.len() >= 26, "{registered:?}");
}

/// Every `$ref` in `value` names a schema in `components.schemas`.
fn check_refs(value: &Value, schemas: &serde_json::Map<String, Value>, at: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let name = reference
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("{at}: unexpected reference {reference}"));
                assert!(schemas.contains_key(name), "{at}: {reference} does not resolve");
            }
            for (key, inner) in map {
                check_refs(inner, schemas, &format!("{at}/{key}"));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(v, schemas, at)),
        _ => {}
    }
}

#[test]
fn the_document_is_well_formed() {
    let doc = document();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    check_refs(&doc, schemas, "#");
    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    for scheme in ["bearer", "cookie", "proxy", "ticket"] {
        assert!(schemes.contains_key(scheme), "{scheme} missing: {schemes:?}");
    }
    assert_eq!(schemes["proxy"]["name"], "kubeflow-userid");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            let responses = operation["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path}: no responses");
            for (status, response) in responses {
                let code: u16 = status.parse().unwrap_or_else(|_| panic!("{path}: {status}"));
                assert!(response["description"].as_str().is_some_and(|d| !d.is_empty()));
                if code >= 400 {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{method} {path} {status}: errors are the error object"
                    );
                }
            }
            // Every route but the probes, the login and this document's own needs credentials.
            let open = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())));
            let may_be_open = ["/healthz", "/readyz", "/metrics", "/api/v1/auth/login"];
            assert!(!open || may_be_open.contains(&path.as_str()), "{method} {path} is open");
        }
    }
}

/// The property names of `schema` (following one `$ref`).
fn properties(doc: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = &doc["components"]["schemas"][name];
    let all = schema["properties"].as_object().expect(name).keys().cloned().collect();
    let required = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    (all, required)
}

fn assert_shape(doc: &Value, name: &str, answer: &Value) {
    let (all, required) = properties(doc, name);
    let keys: BTreeSet<String> =
        answer.as_object().unwrap_or_else(|| panic!("{name}: {answer}")).keys().cloned().collect();
    let unknown: Vec<_> = keys.difference(&all).collect();
    let missing: Vec<_> = required.difference(&keys).collect();
    assert!(unknown.is_empty(), "{name}: undocumented keys {unknown:?} in {answer}");
    assert!(missing.is_empty(), "{name}: required keys {missing:?} missing from {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_document_and_real_answers_match() {
    let server = TestServer::start().await;
    let (status, served) = server.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200, "{served}");
    assert_eq!(documented(&served), documented(&document()));
    let doc = served;

    let session = server.create(json!({"context": {"run_id": "r-1"}})).await;
    assert_shape(&doc, "Session", &session);
    let id = session["id"].as_str().expect("id").to_string();
    let (_, list) = server.get("/api/v1/sessions").await;
    assert_shape(&doc, "SessionList", &list);
    assert_shape(&doc, "Session", &list["sessions"][0]);
    let (_, me) = server.get("/api/v1/me").await;
    assert_shape(&doc, "Me", &me);
    let (_, profiles) = server.get("/api/v1/profiles").await;
    assert_shape(&doc, "ProfileList", &profiles);
    assert_shape(&doc, "Profile", &profiles["profiles"][0]);
    let (_, pool) = server.get("/api/v1/pool").await;
    assert_shape(&doc, "PoolStatus", &pool);
    let (_, audit) = server.get("/api/v1/audit").await;
    assert_shape(&doc, "AuditPage", &audit);
    assert_shape(&doc, "AuditEvent", &audit["events"][0]);
    let (_, form) = server.get("/api/v1/auth/login").await;
    assert_shape(&doc, "LoginForm", &form);
    let (status, ticket) = server.post(&format!("/api/v1/sessions/{id}/ticket"), json!({})).await;
    assert_eq!(status, 201, "{ticket}");
    assert_shape(&doc, "Ticket", &ticket);
    let (status, made) =
        server.post(&format!("/api/v1/sessions/{id}/files/mkdir?path=d"), json!(null)).await;
    assert_eq!(status, 201, "{made}");
    assert_shape(&doc, "CreatedPath", &made);
    let (_, files) = server.get(&format!("/api/v1/sessions/{id}/files")).await;
    assert_shape(&doc, "FileList", &files);
    assert_shape(&doc, "FileEntry", &files["entries"][0]);
    let (_, stat) = server.get(&format!("/api/v1/sessions/{id}/files/stat?path=d")).await;
    assert_shape(&doc, "FileStat", &stat);
    let (status, ran) = server
        .post(&format!("/api/v1/sessions/{id}/exec"), json!({"argv": ["printf", "\\377"]}))
        .await;
    assert_eq!(status, 200, "{ran}");
    assert_shape(&doc, "ExecResult", &ran);
    let (_, screen) = server.get(&format!("/api/v1/sessions/{id}/screen?scrollback=2")).await;
    assert_shape(&doc, "Screen", &screen);
    assert_shape(&doc, "ScreenCursor", &screen["cursor"]);
    let (status, _) = server
        .post(
            &format!("/api/v1/sessions/{id}/input"),
            json!({"text": "echo shape-ok", "keys": ["Enter"]}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, found) =
        server.post(&format!("/api/v1/sessions/{id}/wait"), json!({"pattern": "^shape-ok$"})).await;
    assert_eq!(status, 200, "{found}");
    assert_shape(&doc, "WaitMatch", &found);
    let (status, error) = server.get("/api/v1/sessions/nope").await;
    assert_eq!(status, 404);
    assert_shape(&doc, "ErrorBody", &error);
    assert_shape(&doc, "ErrorDetail", &error["error"]);

    // Every documented route is routed: none answers "no such endpoint".
    for (method, path) in documented(&doc) {
        let path = path.replace("{id}", "not-a-session");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = server.http.request(method.clone(), server.url(&path)).send().await.unwrap();
        let body = response.text().await.unwrap_or_default();
        assert!(!body.contains("no such endpoint"), "{method} {path}: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_needs_credentials_like_every_endpoint() {
    let server = TestServer::start_with(|config| {
        config.auth.mode = kterm::config::AuthMode::Token;
        config.auth.tokens = vec![kterm::config::TokenEntry {
            user: "alice".into(),
            token: Some("secret-token-0123456789".into()),
            token_sha256: None,
        }];
    })
    .await;
    let (status, _) = server.anonymous().get("/api/v1/openapi.json").await;
    assert_eq!(status, 401);
    let (status, doc) = server.bearer("secret-token-0123456789").get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/api/v1/sessions"].is_object());
    server.stop().await;
}

/// Found by the contract fuzzer: a known path with another method was 404, and a flag that is
/// not one was read as "off".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_are_405_and_flags_are_checked() {
    let server = TestServer::start().await;
    let trace = reqwest::Method::from_bytes(b"TRACE").expect("method");
    for (method, path, allow) in [
        (trace, "/healthz", "GET"),
        (reqwest::Method::PATCH, "/api/v1/sessions", "POST, GET"),
        (reqwest::Method::PUT, "/api/v1/sessions/x/resize", "POST"),
    ] {
        let response = server.http.request(method.clone(), server.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    }
    let id = server.create(json!({})).await["id"].as_str().expect("id").to_string();
    let (status, body) = server
        .post(&format!("/api/v1/sessions/{id}/files/mkdir?path=a/b&parents=-0.5"), json!(null))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.get(&format!("/api/v1/sessions/{id}/files/stat?path=a")).await;
    assert_eq!(status, 404, "nothing was made: {body}");
    let (status, body) = server
        .post(&format!("/api/v1/sessions/{id}/files/mkdir?path=a/b&parents=yes"), json!(null))
        .await;
    assert_eq!(status, 201, "{body}");
    server.stop().await;
}
