//! A client that stops reading must not grow the server's memory: the PTY is read more slowly
//! instead. And a shell that stops reading must not either: input waits, and so does the
//! client. Measured on the real binary's RSS and on the shell's own I/O counters.

mod common;

use std::time::{Duration, Instant};

use common::{Event, RealServer};
use serde_json::json;

/// The pid of the server's child process named `name`.
fn child_named(parent: i32, name: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent && comm == name).then_some(pid)
    })
}

/// Bytes the process `pid` has written (its `/proc/PID/io` wchar): what the PTY took from it.
fn written(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:").and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no wchar in /proc/{pid}/io: {io}"))
}

/// Waits until what `pid` has written stops growing for `quiet`; returns it.
async fn settled(pid: i32, quiet: Duration) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = written(pid);
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = written(pid);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the shell kept writing: the PTY was read without bound"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_leaves_memory_bounded() {
    let server = RealServer::start(
        "[sessions]\ncommand = [\"yes\", \"flow-control\"]\nscrollback = \"256k\"\n",
    );
    let base = server.base.clone();
    let before = server.rss_kib();

    let session = server.create_session(json!({})).await;
    let id = session["id"].as_str().unwrap();
    let url = format!("{}/api/v1/sessions/{id}/ws", base.replace("http://", "ws://"));
    let mut term = common::Terminal::connect(&url, None).await.unwrap();
    let yes =
        common::eventually("the shell process", || async { child_named(server.pid(), "yes") })
            .await;

    // Stop reading. Output fills the socket buffers, then the ring; then the pump must stop,
    // and the program blocks on its own output.
    let stalled = settled(yes, Duration::from_secs(2)).await;
    let rss = server.rss_kib();
    eprintln!("stalled after the shell wrote {stalled} bytes; RSS {before} KiB -> {rss} KiB");
    assert!(stalled > 0);
    assert!(rss < before + 32 * 1024, "RSS grew from {before} KiB to {rss} KiB");
    assert_eq!(written(yes), stalled, "the PTY is not read while the client is not reading");

    // Reading again resumes the flow.
    let mut received = 0usize;
    while received < 4 * (stalled as usize) {
        match term.next().await {
            Event::Output(data) => received += data.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(written(yes) > stalled);
    assert!(server.rss_kib() < before + 32 * 1024);
    drop(term);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_that_stops_reading_stops_the_client_not_memory() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    // `sleep` never reads its terminal: input fills the PTY, then kterm's input queue, then
    // the client must wait.
    let server = RealServer::start(
        "[backend]\nkind = \"local\"\n[sessions]\ncommand = [\"sleep\", \"1000\"]\n",
    );
    let session = server.create_session(json!({})).await;
    let id = session["id"].as_str().unwrap();
    let url = format!("{}/api/v1/sessions/{id}/ws", server.base.replace("http://", "ws://"));
    let mut term = common::Terminal::connect(&url, None).await.unwrap();
    let before = server.rss_kib();
    let frame = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    // Sends 1 MiB frames until one has not gone out after two seconds: the server stopped
    // reading (its socket buffers and the kernel's are full).
    loop {
        let send = term.ws.send(Message::Binary(frame.clone().into()));
        match tokio::time::timeout(Duration::from_secs(2), send).await {
            Ok(result) => {
                result.expect("send");
                sent += 1;
            }
            Err(_) => break,
        }
        assert!(sent < 64, "the server took {sent} MiB of input the shell never read");
    }
    let rss = server.rss_kib();
    eprintln!("the client was held after {sent} MiB; RSS {before} KiB -> {rss} KiB");
    // What is held: the input queue (256 KiB), one frame waiting for room, one being read.
    assert!(rss < before + 16 * 1024, "RSS grew from {before} KiB to {rss} KiB");
    // The server itself is fine.
    let health = reqwest::get(format!("{}/healthz", server.base)).await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A client that stops reading does not pin its connection: once nothing has gone out to it
/// for three ping intervals it is dropped (it answers no ping either; it may attach again and
/// get the screen replayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped() {
    let server = RealServer::start(
        "[server]\nping_interval = \"1s\"\n[backend]\nkind = \"local\"\n\
         [sessions]\ncommand = [\"yes\", \"stalled\"]\n",
    );
    let admin =
        common::Client { base: server.base.clone(), http: reqwest::Client::new(), header: None };
    let session = server.create_session(json!({})).await;
    let id = session["id"].as_str().unwrap().to_string();
    // A raw connection that never reads a byte: output fills the socket buffers, then the
    // bridge's send waits.
    let path = format!("/api/v1/sessions/{id}/ws");
    let _stalled = common::raw_ws::RawWs::connect(&server.addr(), &path, &[]).await.unwrap();
    let row = common::audited(&admin, "detach", |r| r["session"] == id.as_str()).await;
    assert_eq!(row["detail"], "client stopped reading", "{row}");
    // The session itself goes on, and a client that reads gets it.
    let url = format!("{}{path}", server.base.replace("http://", "ws://"));
    let mut term = common::Terminal::connect(&url, None).await.unwrap();
    term.read_until("stalled").await;
}

/// A shutdown ends a connection whose send waits for a client that reads nothing, at once:
/// it does not wait for `server.shutdown_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_up_no_shutdown() {
    let mut server = RealServer::start(
        "[server]\nshutdown_timeout = \"20s\"\n[backend]\nkind = \"local\"\n\
         [sessions]\ncommand = [\"yes\", \"stalled\"]\n",
    );
    let session = server.create_session(json!({})).await;
    let id = session["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/sessions/{id}/ws");
    let _stalled = common::raw_ws::RawWs::connect(&server.addr(), &path, &[]).await.unwrap();
    let yes =
        common::eventually("the shell process", || async { child_named(server.pid(), "yes") })
            .await;
    // The shell stops writing once the bridge's send waits (flow control).
    settled(yes, Duration::from_secs(1)).await;
    let stopping = Instant::now();
    server.sigterm();
    assert_eq!(server.wait_exit(), Some(0));
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the stop waited {took:?} for a client that reads nothing (shutdown_timeout is 20 s)"
    );
}
