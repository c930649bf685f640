//! Hostile WebSocket frames, sent over raw TCP to the real binary: each malformed frame ends
//! its own connection with 1002 (1009 when too large) and nothing else. After each, `/healthz`
//! answers within a second, the server's CPU time stays flat (no worker spins on a frame it
//! cannot decode), another session keeps echoing, and at the end SIGTERM still stops it.

mod common;

use std::time::{Duration, Instant};

use common::raw_ws::{declared, frame, Frame, RawWs};
use common::{RealServer, Terminal};
use serde_json::json;

const CONFIG: &str =
    "[backend]\nkind = \"local\"\n[sessions]\ncommand = [\"sh\"]\nmax_per_user = 10\n";

/// The frames that must be refused, and the close code each gets.
fn malformed() -> Vec<(&'static str, Vec<u8>, u16)> {
    let mut cases: Vec<(&'static str, Vec<u8>, u16)> = vec![
        ("RSV1 on binary (0xC2)", frame(0xC2, b"x"), 1002),
        ("RSV2 on binary", frame(0xA2, b"x"), 1002),
        ("RSV3 on binary", frame(0x92, b"x"), 1002),
        ("RSV1 on text", frame(0xC1, b"{}"), 1002),
        ("RSV1 on ping", frame(0xC9, b""), 1002),
        ("fragmented ping", frame(0x09, b"p"), 1002),
        ("fragmented close", frame(0x08, &[0x03, 0xE8]), 1002),
        ("ping of 126 bytes", frame(0x89, &[b'p'; 126]), 1002),
        ("close of 126 bytes", frame(0x88, &[b'c'; 126]), 1002),
        ("continuation with no start", frame(0x80, b"x"), 1002),
        ("unfinished continuation with no start", frame(0x00, b"x"), 1002),
        (
            "a new message inside a fragmented one",
            [frame(0x01, b"{"), frame(0x82, b"x")].concat(),
            1002,
        ),
        ("close code 999", frame(0x88, &[0x03, 0xE7]), 1002),
        ("close code 1005", frame(0x88, &[0x03, 0xED]), 1002),
        ("close code 1006", frame(0x88, &[0x03, 0xEE]), 1002),
        ("close code 2999", frame(0x88, &[0x0B, 0xB7]), 1002),
        ("close code 5000", frame(0x88, &[0x13, 0x88]), 1002),
        ("close payload of one byte", frame(0x88, &[0x03]), 1002),
        ("invalid UTF-8 in a text frame", frame(0x81, &[0xC3, 0x28]), 1002),
        (
            "invalid UTF-8 across text fragments",
            [frame(0x01, &[0xE2, 0x82]), frame(0x80, &[0x28])].concat(),
            1002,
        ),
        ("invalid UTF-8 in a close reason", frame(0x88, &[0x03, 0xE8, 0xFF, 0xFE]), 1002),
        ("an unmasked frame", vec![0x82, 0x01, b'x'], 1002),
        ("a 64-bit length of 2^40", declared(0x82, 1 << 40), 1009),
        ("a 64-bit length with its top bit set", declared(0x82, 1 << 63), 1009),
        ("a 64-bit length of u64::MAX", declared(0x82, u64::MAX), 1009),
        ("a control frame declaring 2^40", declared(0x89, 1 << 40), 1002),
        (
            "a message over 1 MiB in fragments",
            {
                let piece = vec![b'a'; 600 * 1024];
                [frame(0x02, &piece), frame(0x80, &piece)].concat()
            },
            1009,
        ),
    ];
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        cases.push(("a reserved opcode", frame(0x80 | opcode, b"x"), 1002));
    }
    cases
}

/// `/healthz` within a second, CPU time flat, and the witness session still echoing.
async fn still_serving(server: &RealServer, witness: &mut Terminal, what: &str, n: usize) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let health = http.get(format!("{}/healthz", server.base)).send().await;
    assert!(
        health.as_ref().is_ok_and(|r| r.status() == 200),
        "after {what}: /healthz did not answer within a second: {health:?}"
    );
    // A measurement window, not a wait for anything: a spinning worker would use all of it.
    let (before, started) = (server.cpu_ticks(), Instant::now());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let used = server.cpu_ticks() - before;
    assert!(
        used <= 10,
        "after {what}: the server used {used} ticks of CPU in {:?} while idle",
        started.elapsed()
    );
    witness.send(&format!("echo witness-$(({n}+1000))\n")).await;
    witness.read_until(&format!("witness-{}", n + 1000)).await;
}

async fn attach_raw(server: &RealServer, id: &str) -> RawWs {
    let mut raw = RawWs::connect(&server.addr(), &format!("/api/v1/sessions/{id}/ws"), &[])
        .await
        .expect("upgrade");
    match raw.next().await {
        Frame::Text(text) if text.contains("\"attached\"") => raw,
        other => panic!("expected the attached message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_end_only_their_connection() {
    let mut server = RealServer::start(CONFIG);
    let target = server.create_session(json!({})).await["id"].as_str().unwrap().to_string();
    let other = server.create_session(json!({})).await["id"].as_str().unwrap().to_string();
    let ws = |id: &str| format!("{}/api/v1/sessions/{id}/ws", server.base.replace("http", "ws"));
    let mut witness = Terminal::connect(&ws(&other), None).await.unwrap();

    let mut ended = Vec::new();
    for (n, (what, bytes, code)) in malformed().into_iter().enumerate() {
        let mut raw = attach_raw(&server, &target).await;
        raw.send(&bytes).await;
        assert_eq!(raw.close_code().await, Some(code), "{what}: the close code");
        // After its close frame the server lingers up to a second for the client's close
        // (actix's client_disconnect_timeout), then ends the TCP connection; checked meanwhile.
        let closed = tokio::spawn(async move { raw.closes_within(Duration::from_secs(5)).await });
        ended.push((what, closed));
        still_serving(&server, &mut witness, what, n).await;
    }
    for (what, closed) in ended {
        assert!(closed.await.unwrap(), "{what}: the connection ends");
    }

    // Lengths that promise more than is sent: the server waits for the rest without spinning
    // (and without reserving the declared size), and the connection ends normally later.
    let mut lying = Vec::new();
    for (n, (what, len)) in
        [("a frame declaring 1000 bytes", 1000u64), ("a frame declaring 1 MiB", 1 << 20)]
            .into_iter()
            .enumerate()
    {
        let mut raw = attach_raw(&server, &target).await;
        let mut bytes = declared(0x82, len);
        bytes.extend_from_slice(&[b'x'; 10]);
        raw.send(&bytes).await;
        still_serving(&server, &mut witness, what, 100 + n).await;
        lying.push(raw);
    }
    drop(lying);

    // The session the frames were aimed at is intact too.
    let mut term = Terminal::connect(&ws(&target), None).await.unwrap();
    term.send("echo target-$((6*7))\n").await;
    term.read_until("target-42").await;

    // And SIGTERM still stops the server promptly.
    server.sigterm();
    assert_eq!(server.wait_exit(), Some(0), "SIGTERM stops the server");
}

/// One malformed frame per worker at once, and then some: nothing freezes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_frames_freezes_nothing() {
    let server = RealServer::start(CONFIG);
    let target = server.create_session(json!({})).await["id"].as_str().unwrap().to_string();
    let other = server.create_session(json!({})).await["id"].as_str().unwrap().to_string();
    let ws = format!("{}/api/v1/sessions/{other}/ws", server.base.replace("http", "ws"));
    let mut witness = Terminal::connect(&ws, None).await.unwrap();
    let mut connections = Vec::new();
    for _ in 0..16 {
        let mut raw = attach_raw(&server, &target).await;
        raw.send(&frame(0xC2, b"x")).await;
        connections.push(raw);
    }
    for raw in &mut connections {
        // Each gets its 1002 (or, taken over by the next attach first, its 4000).
        let code = raw.close_code().await;
        assert!(matches!(code, Some(1002 | 4000)), "{code:?}");
    }
    still_serving(&server, &mut witness, "16 frames with RSV1", 0).await;
}
