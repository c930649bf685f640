//! The exec WebSocket byte by byte, with a hand-written client as the recording used: the
//! handshake, the subprotocol choice, and every server frame of the recorded sessions
//! (`05-exec-websocket.json`) compared as hex, where nothing legitimately differs.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::common::kube_fake::ADMIN_TOKEN;
use super::*;

/// One frame as it crossed the wire.
#[derive(Debug, Clone)]
struct Frame {
    bytes: Vec<u8>,
    opcode: u8,
    payload: Vec<u8>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

struct RawSocket {
    tls: TlsStream<TcpStream>,
    buffer: Vec<u8>,
}

/// Opens the exec WebSocket by hand: `(HTTP head, socket if upgraded)`.
async fn open(
    fake: &FakeApiServer,
    query: &str,
    protocols: &[&str],
) -> (String, Option<RawSocket>) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(fake.ca_pem().as_bytes()).expect("the CA"))
        .expect("a root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(fake.addr()).await.expect("connect");
    let name = ServerName::IpAddress(fake.addr().ip().into());
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS with the fake's CA");
    let key = "sGCZppGK+uG/+Oq3xUeeCQ==";
    let request = format!(
        "GET /api/v1/namespaces/samples/pods/exec-target/exec?{query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n",
        fake.addr(),
        protocols.join(", ")
    );
    tls.write_all(request.as_bytes()).await.expect("handshake");
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, tls.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "the server closed before answering");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    if !head.starts_with("HTTP/1.1 101") {
        return (head, None);
    }
    let accept = derive_accept_key(key.as_bytes());
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("sec-websocket-accept: {}", accept.to_ascii_lowercase())),
        "{head}"
    );
    let rest = buffer[head_end..].to_vec();
    (head, Some(RawSocket { tls, buffer: rest }))
}

impl RawSocket {
    async fn fill(&mut self, want: usize) {
        while self.buffer.len() < want {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, self.tls.read(&mut chunk))
                .await
                .expect("a frame in time")
                .expect("read");
            assert!(n > 0, "the connection ended mid-frame");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next server frame (servers do not mask).
    async fn frame(&mut self) -> Frame {
        self.fill(2).await;
        let (mut header, mut len) = (2usize, (self.buffer[1] & 0x7f) as usize);
        if len == 126 {
            self.fill(4).await;
            len = u16::from_be_bytes([self.buffer[2], self.buffer[3]]) as usize;
            header = 4;
        } else if len == 127 {
            self.fill(10).await;
            len = u64::from_be_bytes(self.buffer[2..10].try_into().unwrap()) as usize;
            header = 10;
        }
        assert_eq!(self.buffer[1] & 0x80, 0, "server frames are not masked");
        self.fill(header + len).await;
        let bytes: Vec<u8> = self.buffer.drain(..header + len).collect();
        Frame { opcode: bytes[0] & 0x0f, payload: bytes[header..].to_vec(), bytes }
    }

    /// Every frame up to and including the server's close; answers the close as a client does.
    async fn frames_until_close(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = self.frame().await;
            let close = frame.opcode == 8;
            frames.push(frame);
            if close {
                self.send(0x8, &[0x03, 0xe8]).await;
                return frames;
            }
        }
    }

    /// Sends a masked client frame.
    async fn send(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0xa6, 0xe1, 0xda, 0x51];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let _ = self.tls.write_all(&frame).await;
    }
}

fn server_frames(session: &Value) -> Vec<String> {
    session["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["direction"] == "server->client")
        .map(|f| f["frame_hex"].as_str().unwrap().to_string())
        .collect()
}

/// A cluster with the recording's pod `exec-target` running, where short TTY execs lose their
/// output as they did on the recorded node (so those sessions compare exactly).
async fn exec_target(lossy: bool) -> Option<FakeApiServer> {
    let fake = sample_cluster_with(|o| {
        if lossy {
            o.lose_short_tty_output = Some(Duration::from_millis(150));
        }
    })?;
    let client = client(&fake).await;
    running_pod(&fake, &client, "exec-target").await;
    Some(fake)
}

#[tokio::test]
async fn tty_sessions_match_the_recording_frame_for_frame() {
    let recorded = sample("05-exec-websocket.json");
    let Some(fake) = exec_target(true).await else { return };
    let mut sessions: Vec<(&str, &Value)> = vec![
        ("exit7_tty", &recorded["exit7_tty"]),
        ("exit0_tty_sleep", &recorded["exit0_tty_sleep"]),
    ];
    let attempts = recorded["exit0_tty_attempts"].as_array().unwrap();
    // Attempts that lost their output, as the lossy fake does.
    sessions.extend(
        attempts
            .iter()
            .filter(|a| a["first_stdout_byte_ms"].is_null())
            .map(|a| ("exit0_tty_attempts", a)),
    );
    for (name, session) in sessions {
        let offered: Vec<&str> = session["subprotocols_offered"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let (head, socket) = open(&fake, session["query"].as_str().unwrap(), &offered).await;
        assert!(
            head.to_ascii_lowercase().contains("sec-websocket-protocol: v4.channel.k8s.io"),
            "{name}: {head}"
        );
        let frames = socket.expect("upgraded").frames_until_close().await;
        let ours: Vec<String> = frames.iter().map(|f| hex(&f.bytes)).collect();
        assert_eq!(ours, server_frames(session), "{name}: every server frame, byte for byte");
    }
}

#[tokio::test]
async fn a_tty_exec_keeps_its_output_unless_the_race_is_asked_for() {
    let recorded = &sample("05-exec-websocket.json")["exit7_tty"];
    let Some(fake) = exec_target(false).await else { return };
    let (_, socket) = open(
        &fake,
        recorded["query"].as_str().unwrap(),
        &["v5.channel.k8s.io", "v4.channel.k8s.io"],
    )
    .await;
    let frames = socket.expect("upgraded").frames_until_close().await;
    let recorded_frames = server_frames(recorded);
    assert_eq!(hex(&frames[0].bytes), recorded_frames[0], "the empty stdout frame first");
    let output: Vec<u8> =
        frames[1..frames.len() - 2].iter().flat_map(|f| f.payload[1..].to_vec()).collect();
    assert_eq!(String::from_utf8_lossy(&output), "about to fail\r\n");
    assert_eq!(hex(&frames[frames.len() - 2].bytes), recorded_frames[1], "the status frame");
    assert_eq!(hex(&frames[frames.len() - 1].bytes), recorded_frames[2], "the close frame");
}

#[tokio::test]
async fn a_non_tty_session_matches_the_recording() {
    let recorded = &sample("05-exec-websocket.json")["exit7_notty_stderr"];
    let Some(fake) = exec_target(false).await else { return };
    let offered = [
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
    ];
    let (_, socket) = open(&fake, recorded["query"].as_str().unwrap(), &offered).await;
    let ours: Vec<String> = socket
        .expect("upgraded")
        .frames_until_close()
        .await
        .iter()
        .map(|f| hex(&f.bytes))
        .collect();
    let theirs = server_frames(recorded);
    assert_eq!(ours.len(), theirs.len(), "{ours:?}");
    assert_eq!(ours[0], theirs[0], "the empty stdout frame");
    let mut our_data = ours[1..3].to_vec();
    let mut their_data = theirs[1..3].to_vec();
    // stdout and stderr are separate streams: their relative order is not fixed.
    our_data.sort();
    their_data.sort();
    assert_eq!(our_data, their_data, "stdout on 1, stderr on 2");
    assert_eq!(ours[3], theirs[3], "the status frame (Go's JSON escaping of > and &)");
    assert_eq!(ours[4], theirs[4], "the normal close");
}

#[tokio::test]
async fn the_interactive_session_resizes_and_takes_stdin_like_the_recording() {
    let recorded = &sample("05-exec-websocket.json")["interactive_tty_resize_stdin"];
    let Some(fake) = exec_target(false).await else { return };
    let offered: Vec<&str> = recorded["subprotocols_offered"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let (_, socket) = open(&fake, recorded["query"].as_str().unwrap(), &offered).await;
    let mut socket = socket.expect("upgraded");
    let mut frames = vec![socket.frame().await];
    assert_eq!(hex(&frames[0].bytes), "820101");
    let stdout = |frames: &[Frame]| -> String {
        let bytes: Vec<u8> = frames
            .iter()
            .filter(|f| f.payload.first() == Some(&1))
            .flat_map(|f| f.payload[1..].to_vec())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    // The recorded client's frames, as it sent them (resize JSON with spaces, typed lines),
    // each line's answer awaited as the recording did.
    let sent: Vec<&Value> = recorded["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["direction"] == "client->server" && f["opcode"] == "binary")
        .collect();
    for (frame, answer) in sent.iter().zip(["", "30 100\r\n", "", ""]) {
        socket.send(0x2, &unhex(frame["payload_hex"].as_str().unwrap())).await;
        while !stdout(&frames).contains(answer) {
            frames.push(socket.frame().await);
        }
    }
    frames.extend(socket.frames_until_close().await);
    let text = stdout(&frames);
    assert!(
        text.contains("30 100\r\n") && text.contains("43 132\r\n"),
        "both sizes took effect: {text:?}"
    );
    let theirs = server_frames(recorded);
    let ours: Vec<String> = frames.iter().map(|f| hex(&f.bytes)).collect();
    assert_eq!(
        ours[ours.len() - 2..],
        theirs[theirs.len() - 2..],
        "status (exit 7 of [sh]) and close, byte for byte"
    );
}

#[tokio::test]
async fn only_v5_is_refused_without_upgrade_and_base64_is_spoken() {
    let recorded = sample("05-exec-websocket.json");
    let Some(fake) = exec_target(true).await else { return };
    let only_v5 = &recorded["only_v5_offered"];
    let (head, socket) =
        open(&fake, only_v5["query"].as_str().unwrap(), &["v5.channel.k8s.io"]).await;
    assert!(socket.is_none());
    assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");

    let base64 = &recorded["base64_v4_offered"];
    let (head, socket) =
        open(&fake, base64["query"].as_str().unwrap(), &["v4.base64.channel.k8s.io"]).await;
    assert!(
        head.to_ascii_lowercase().contains("sec-websocket-protocol: v4.base64.channel.k8s.io"),
        "{head}"
    );
    let ours: Vec<String> = socket
        .expect("upgraded")
        .frames_until_close()
        .await
        .iter()
        .map(|f| hex(&f.bytes))
        .collect();
    assert_eq!(ours, server_frames(base64), "text frames, channel digit, base64 data");

    // A v1.30+ server would pick v5 from the same offer.
    fake.set_exec_protocols(common::kube_fake::ExecProtocols::WithV5);
    let (head, _) = open(
        &fake,
        only_v5["query"].as_str().unwrap(),
        &["v5.channel.k8s.io", "v4.channel.k8s.io"],
    )
    .await;
    assert!(
        head.to_ascii_lowercase().contains("sec-websocket-protocol: v5.channel.k8s.io"),
        "{head}"
    );
}
