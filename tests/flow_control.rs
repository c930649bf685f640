//! A client that stops reading must not grow the server's memory: the PTY is read more slowly
//! instead. Measured on the real binary's RSS and its own counters.

mod common;

use std::time::{Duration, Instant};

use common::{Event, RealServer};
use serde_json::json;

async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name}"))
}

/// Waits until `name` stops growing for `quiet`; returns its value.
async fn settled(http: &reqwest::Client, base: &str, name: &str, quiet: Duration) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = metric(http, base, name).await;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = metric(http, base, name).await;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
        assert!(Instant::now() < deadline, "{name} kept growing: the PTY was read without bound");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_leaves_memory_bounded() {
    let server = RealServer::start(
        "[sessions]\ncommand = [\"yes\", \"flow-control\"]\nscrollback = \"256k\"\n",
    );
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let before = server.rss_kib();

    let session = server.create_session(json!({})).await;
    let id = session["id"].as_str().unwrap();
    let url = format!("{}/api/v1/sessions/{id}/ws", base.replace("http://", "ws://"));
    let mut term = common::Terminal::connect(&url, None).await.unwrap();

    // Stop reading. Output fills the socket buffers, then the ring; then the pump must stop.
    let read_total =
        settled(&http, &base, "kterm_pty_read_bytes_total", Duration::from_secs(2)).await;
    let rss = server.rss_kib();
    eprintln!("stalled after {read_total} bytes read; RSS {before} KiB -> {rss} KiB");
    assert!(read_total > 0.0);
    assert!(rss < before + 32 * 1024, "RSS grew from {before} KiB to {rss} KiB");
    let later = metric(&http, &base, "kterm_pty_read_bytes_total").await;
    assert_eq!(later, read_total, "the PTY is not read while the client is not reading");

    // Reading again resumes the flow.
    let mut received = 0usize;
    while received < 4 * (read_total as usize) {
        match term.next().await {
            Event::Output(data) => received += data.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(metric(&http, &base, "kterm_pty_read_bytes_total").await > read_total);
    assert!(server.rss_kib() < before + 32 * 1024);
    drop(term);
}
