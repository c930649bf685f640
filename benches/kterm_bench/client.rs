//! An in-process kterm server and a small client for its REST API and terminal WebSocket.

use std::net::SocketAddr;
use std::path::Path;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::{Res, COLS, ROWS, STALL};

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Kterm {
    server: Option<kterm::Server>,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
}

impl Kterm {
    /// A server on the local backend running `command` in every session (empty: the default
    /// shell).
    pub async fn start(dir: &Path, command: Vec<String>) -> Res<Kterm> {
        Self::start_with(dir, |config| config.sessions.command = command).await
    }

    /// A server on loopback port 0 with its state in `dir` on the local backend, after `adjust`
    /// has had its say.
    pub async fn start_with(dir: &Path, adjust: impl FnOnce(&mut kterm::Config)) -> Res<Kterm> {
        std::fs::create_dir_all(dir)?;
        let mut config = kterm::Config::default();
        config.server.listen = "127.0.0.1:0".into();
        config.state.path = dir.join("kterm.db");
        config.local.root = dir.join("workspaces");
        config.sessions.max_per_user = 2000;
        // The bench opens sessions far faster than a person: lift the abuse limits.
        config.sessions.create_per_minute = 1_000_000;
        config.sessions.max_sandboxes = 100_000;
        // Not `auto`: the local parts must not turn into Docker runs when an image is there.
        config.backend.kind = kterm::config::BackendKind::Local;
        adjust(&mut config);
        config.validate().map_err(|e| format!("config: {e}"))?;
        let server =
            kterm::Server::start(config).await.map_err(|e| format!("starting kterm: {e}"))?;
        let addr = server.addr();
        Ok(Kterm { server: Some(server), addr, http: http_client()? })
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

pub fn http_client() -> Res<reqwest::Client> {
    Ok(reqwest::Client::builder().no_proxy().tcp_nodelay(true).build()?)
}

/// POST /api/v1/sessions ({COLS}x{ROWS}); the new session's id.
pub async fn create_session(http: &reqwest::Client, addr: SocketAddr) -> Res<String> {
    let value = create_session_record(http, addr).await?;
    match value["id"].as_str() {
        Some(id) => Ok(id.to_string()),
        None => fail!("POST /api/v1/sessions: no id in {value}"),
    }
}

/// POST /api/v1/sessions ({COLS}x{ROWS}); the whole session record.
pub async fn create_session_record(
    http: &reqwest::Client,
    addr: SocketAddr,
) -> Res<serde_json::Value> {
    let response = http
        .post(format!("http://{addr}/api/v1/sessions"))
        .json(&serde_json::json!({"cols": COLS, "rows": ROWS}))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    if status.as_u16() != 201 {
        fail!("POST /api/v1/sessions answered {status}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

pub async fn delete_session(http: &reqwest::Client, addr: SocketAddr, id: &str) -> Res<()> {
    let response = http.delete(format!("http://{addr}/api/v1/sessions/{id}")).send().await?;
    let status = response.status();
    if status.as_u16() != 204 {
        let body = response.text().await.unwrap_or_default();
        fail!("DELETE /api/v1/sessions/{id} answered {status}: {body}");
    }
    Ok(())
}

pub async fn ws_connect(addr: SocketAddr, id: &str) -> Res<Ws> {
    let url = format!("ws://{addr}/api/v1/sessions/{id}/ws");
    // Browsers use TCP_NODELAY on WebSockets; so does this client.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    Ok(ws)
}

pub enum Event {
    Output(bytes::Bytes),
    Control(serde_json::Value),
    Closed(Option<String>),
}

/// The next terminal event; pings are answered by tungstenite itself.
pub async fn ws_next(ws: &mut Ws) -> Res<Event> {
    loop {
        let message = match tokio::time::timeout(STALL, ws.next()).await {
            Err(_) => fail!("no WebSocket message within {STALL:?}"),
            Ok(None) => return Ok(Event::Closed(None)),
            Ok(Some(Err(e))) => fail!("WebSocket error: {e}"),
            Ok(Some(Ok(m))) => m,
        };
        match message {
            Message::Binary(data) => return Ok(Event::Output(data)),
            Message::Text(text) => return Ok(Event::Control(serde_json::from_str(text.as_str())?)),
            Message::Close(frame) => {
                return Ok(Event::Closed(
                    frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)),
                ))
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        }
    }
}

/// Reads the first message, which must be `attached`; returns `replay_bytes`.
pub async fn expect_attached(ws: &mut Ws) -> Res<u64> {
    match ws_next(ws).await? {
        Event::Control(v) if v["type"] == "attached" => Ok(v["replay_bytes"].as_u64().unwrap_or(0)),
        Event::Control(v) => fail!("expected `attached` first, got {v}"),
        Event::Output(d) => fail!("expected `attached` first, got {} output bytes", d.len()),
        Event::Closed(c) => fail!("closed before `attached` ({c:?})"),
    }
}

/// Skips `attached` and returns the first non-empty output (the prompt, for a shell).
pub async fn first_output(ws: &mut Ws) -> Res<bytes::Bytes> {
    loop {
        match ws_next(ws).await? {
            Event::Output(d) if !d.is_empty() => return Ok(d),
            Event::Output(_) => continue,
            Event::Control(v) if v["type"] == "attached" => continue,
            Event::Control(v) => fail!("unexpected control message {v}"),
            Event::Closed(c) => fail!("closed before the prompt ({c:?})"),
        }
    }
}

pub async fn send_bytes(ws: &mut Ws, data: &[u8]) -> Res<()> {
    ws.send(Message::binary(data.to_vec())).await?;
    Ok(())
}

/// Reads output until `marker` has been seen; returns the output read.
pub async fn ws_read_until(ws: &mut Ws, marker: &[u8]) -> Res<Vec<u8>> {
    let mut seen = Vec::new();
    loop {
        match ws_next(ws).await? {
            Event::Output(d) => {
                seen.extend_from_slice(&d);
                if seen.windows(marker.len()).any(|w| w == marker) {
                    return Ok(seen);
                }
            }
            Event::Control(v) => {
                fail!("waiting for {:?}, got {v}", String::from_utf8_lossy(marker))
            }
            Event::Closed(c) => fail!("closed while waiting for output ({c:?})"),
        }
    }
}

/// Keeps reading `ws` in the background (answering pings, noticing the close); the close code
/// (if any) is sent on `done` when it ends.
pub fn drain(mut ws: Ws, done: tokio::sync::mpsc::UnboundedSender<Option<u16>>) {
    tokio::spawn(async move {
        let mut code = None;
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => code = frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = done.send(code);
    });
}
