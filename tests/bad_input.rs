//! Bad input gets a clear error, loses nothing, and never takes the server down.

mod common;

use common::{error_code, Terminal, TestServer};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_errors_follow_the_spec() {
    let server = TestServer::start().await;
    for path in
        ["/api/v1/sessions/nope", "/api/v1/sessions/..%2F..%2Fetc%2Fpasswd", "/api/v1/nothing-here"]
    {
        let (status, body) = server.get(path).await;
        assert_eq!((status, error_code(&body)), (404, "not_found"), "{path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let raw = |body: &'static str| {
        server
            .http
            .post(server.url("/api/v1/sessions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["{bad", "[]", "{\"cols\": -1}", "{\"cols\": \"wide\"}", "{\"unknown\": 1}"] {
        let response = raw(body).await.unwrap();
        let status = response.status().as_u16();
        let value: serde_json::Value = response.json().await.unwrap();
        assert_eq!((status, error_code(&value)), (400, "bad_request"), "{body}: {value}");
    }
    let bad_requests = [
        json!({"cols": 0, "rows": 10}),
        json!({"namespace": "Not A Namespace"}),
        json!({"context": {"BadKey": "v"}}),
        json!({"context": {"k": "x".repeat(1025)}}),
    ];
    for body in bad_requests {
        let (status, value) = server.post("/api/v1/sessions", body.clone()).await;
        assert_eq!((status, error_code(&value)), (400, "bad_request"), "{body}: {value}");
    }
    let huge = "x".repeat(200_000);
    let response =
        server.http.post(server.url("/api/v1/sessions")).body(huge).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let (status, body) =
        server.post("/api/v1/sessions/nope/resize", json!({"cols": 1, "rows": 1})).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let (status, body) =
        server.post(&format!("/api/v1/sessions/{id}/resize"), json!({"cols": "x"})).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    let (status, body) =
        server.post(&format!("/api/v1/sessions/{id}/resize"), json!({"cols": 0, "rows": 5})).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    // Nothing was lost: the session still works.
    let mut term = server.attach(&id).await;
    term.send("echo alive-$((2+2))\n").await;
    term.read_until("alive-4").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_errors_follow_the_spec() {
    let server = TestServer::start().await;
    // Unknown session: 404 before the upgrade.
    match Terminal::connect(&server.ws_url("nope"), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 404),
        other => panic!("expected 404, got {:?}", other.map(|t| t.attached)),
    }
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    // A foreign Origin: 403 before the upgrade; our own origin is fine.
    match Terminal::connect(&server.ws_url(&id), Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 403),
        other => panic!("expected 403, got {:?}", other.map(|t| t.attached)),
    }
    let own = server.base.clone();
    let mut term = Terminal::connect(&server.ws_url(&id), Some(&own)).await.expect("own origin");

    // Malformed control messages get an error message; the connection and shell stay.
    for bad in
        ["{not json", "{\"type\":\"explode\"}", "{\"type\":\"resize\",\"cols\":0,\"rows\":0}"]
    {
        term.ws.send(Message::Text(bad.into())).await.unwrap();
        let reply = term.next_control().await;
        assert_eq!(reply["type"], "error", "{bad}: {reply}");
    }
    term.send("echo still-$((3*3))\n").await;
    term.read_until("still-9").await;

    // An input frame over 1 MiB closes with 1009; the session survives it.
    let big = vec![b'a'; (1 << 20) + 1];
    let _ = term.ws.send(Message::Binary(big.into())).await;
    assert_eq!(term.closed().await, Some(1009));
    let mut again = server.attach(&id).await;
    again.send("echo survived\n").await;
    again.read_until("survived").await;
    let (status, _) = server.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 200);
    server.stop().await;
}
