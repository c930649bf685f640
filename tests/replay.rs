//! Scrollback replay and takeover: a numbered output stream proves that replay and live output
//! meet with no byte lost or repeated, across many reconnects, and that a client that keeps up
//! gets every byte even when the ring is much smaller than the output.

mod common;

use common::TestServer;
use serde_json::json;

/// Checks that `text` is `n1\r\n n2\r\n ...` from 1 with no gap or repeat (the last line may be
/// cut); returns the last complete number.
fn assert_contiguous(text: &str) -> u64 {
    let mut expected = 1;
    let lines: Vec<&str> = text.split("\r\n").collect();
    for (i, line) in lines.iter().enumerate() {
        let last = i == lines.len() - 1;
        if last {
            // A partial line: a prefix of the next number's line.
            assert!(
                format!("n{expected}").starts_with(line),
                "bad tail {line:?} after n{}",
                expected - 1
            );
            break;
        }
        assert_eq!(*line, format!("n{expected}"), "line {i} breaks the sequence");
        expected += 1;
    }
    expected - 1
}

const PRODUCER: &str = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo n$i; \
    if [ $((i % 5000)) -eq 0 ]; then sleep 0.05; fi; done; sleep 60";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_live_output_meet_without_gap_or_repeat() {
    let server = TestServer::start_with(|c| {
        c.sessions.command = vec!["sh".into(), "-c".into(), PRODUCER.into()];
        c.sessions.scrollback = kterm::config::ByteSize(4 << 20);
    })
    .await;
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();

    // Reconnect again and again while the producer runs; every attach must see the whole
    // stream so far (it all fits in the ring) and then continue it seamlessly. Each round reads
    // on to a line number ahead of the last round's, whatever the producer's pace.
    let mut seen = 0;
    for round in 0..8 {
        let mut term = server.attach(&id).await;
        let target = (seen + 10_000).min(100_000);
        let text = term.read_until(&format!("\r\nn{target}\r\n")).await;
        let last = assert_contiguous(&text);
        assert!(last >= target, "round {round}: the stream stopped at n{last}");
        seen = last;
        term.close().await;
    }
    let mut term = server.attach(&id).await;
    let text = term.read_until("n100000\r\n").await;
    assert_eq!(assert_contiguous(&text), 100_000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_up_gets_every_byte_through_a_small_ring() {
    let server = TestServer::start_with(|c| {
        let script = format!("read go; {PRODUCER}");
        c.sessions.command = vec!["sh".into(), "-c".into(), script];
        c.sessions.scrollback = kterm::config::ByteSize(16 << 10);
    })
    .await;
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let mut term = server.attach(&id).await;
    term.send("\n").await;
    let text = term.read_until("n100000\r\n").await;
    let stream = text.trim_start_matches("\r\n");
    assert_eq!(assert_contiguous(stream), 100_000, "700 KB through a 16 KB ring, nothing lost");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_attach_takes_over() {
    let server = TestServer::start().await;
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let mut first = server.attach(&id).await;
    first.send("echo one\n").await;
    first.read_until("one").await;

    let mut second = server.attach(&id).await;
    assert_eq!(first.next_control().await, json!({"type": "detached", "reason": "taken_over"}));
    assert_eq!(first.closed().await, Some(4000));
    second.send("echo two-$((1+1))\n").await;
    let out = second.read_until("two-2").await;
    assert!(out.contains("one"), "the newcomer got the replay: {out}");
    server.stop().await;
}

/// A full-screen program that asks the terminal questions, sets modes and then updates its
/// screen while the ring wraps many times over: a client attaching afterwards is sent its screen
/// (on the alternate screen, with the modes it set) and no query, and when it quits the shell's
/// normal screen is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_ring_replays_the_screen_and_modes_without_queries() {
    const PROGRAM: &str = "read go; echo before-the-program; \
        printf '\\033[c\\033[>c\\033[6n\\033]11;?\\007\\033[?2004$p'; \
        printf '\\033[?1049h\\033[?1000;1006h\\033[?2004h\\033]2;clock-demo\\007\\033[H\\033[2J'; \
        i=0; while [ $i -lt 3000 ]; do i=$((i+1)); printf '\\033[1;1Hclock %05d' $i; done; \
        printf '\\033[5;3Hready'; read quit; printf '\\033[?1049l'; echo back-$((1+1)); sleep 60";
    let server = TestServer::start_with(|c| {
        c.sessions.command = vec!["sh".into(), "-c".into(), PROGRAM.into()];
        c.sessions.scrollback = kterm::config::ByteSize(1024);
    })
    .await;
    let id = server.create(json!({})).await["id"].as_str().unwrap().to_string();
    let mut first = server.attach(&id).await;
    first.send("\n").await;
    first.read_until("ready").await;
    first.close().await;

    let mut term = server.attach(&id).await;
    let replay_bytes = term.replay_bytes();
    while term.output.len() < replay_bytes {
        match term.next().await {
            common::Event::Output(data) => term.output.extend(data),
            other => panic!("expected the replay, got {other:?}"),
        }
    }
    assert_eq!(term.output.len(), replay_bytes, "the replay is what `attached` announced");
    let replay = String::from_utf8_lossy(&term.output).into_owned();
    for query in ["\x1b[c", "\x1b[>c", "\x1b[6n", "\x1b]11;?", "$p"] {
        assert!(!replay.contains(query), "the replay holds the query {query:?}: {replay:?}");
    }
    let mut screen = avt::Terminal::new(80, 24).unwrap();
    screen.feed(replay.as_str());
    assert_eq!(screen.active_screen_kind(), avt::ScreenKind::Alternate, "{replay:?}");
    let line = |s: &avt::Terminal, n: usize| s.screen().line(n).unwrap().text();
    assert_eq!(line(&screen, 0).trim_end(), "clock 03000");
    assert_eq!(line(&screen, 4).trim_end(), "  ready");
    for mode in ["\x1b[?1000;1006;2004h", "\x1b]2;clock-demo\x07"] {
        assert!(replay.contains(mode), "the replay restores {mode:?}: {replay:?}");
    }

    // Quitting the program shows the shell's screen from before it.
    term.send("\n").await;
    let all = term.read_until("back-2").await;
    screen.feed(&all[replay.len()..]);
    assert_eq!(screen.active_screen_kind(), avt::ScreenKind::Primary);
    let text = screen.screen().text().join("\n");
    assert!(text.contains("before-the-program") && text.contains("back-2"), "{text}");
    server.stop().await;
}
