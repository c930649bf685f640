//! Part 4, server memory: the real `kterm` binary with many attached idle sessions (RSS, threads,
//! fds, open rate), then a graceful stop with everything attached (close codes, leftovers).

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::client::{
    create_session, delete_session, drain, expect_attached, first_output, kterm_binary,
    proc_status, rss_parts, ws_connect, Kterm, Ws,
};
use crate::{Opts, Problems, Res};

/// Sessions attached for the graceful stop at the end.
const STOP_SESSIONS: usize = 50;

pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Direct children of `pid` (all threads).
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let path = task.path().join("children");
            if let Ok(text) = std::fs::read_to_string(path) {
                out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

async fn open_idle(http: &reqwest::Client, addr: std::net::SocketAddr) -> Res<(String, Ws)> {
    let id = create_session(http, addr).await?;
    let mut ws = ws_connect(addr, &id).await?;
    expect_attached(&mut ws).await?;
    // The `sh` prompt: the session is up and its output reaches the client.
    first_output(&mut ws).await?;
    Ok((id, ws))
}

/// Opens `n` attached idle sessions, `concurrency` at a time; the open ones and the time it took.
async fn open_many(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    n: usize,
    concurrency: usize,
    problems: &mut Problems,
) -> (Vec<(String, Ws)>, Duration) {
    let started = Instant::now();
    let results: Vec<Res<(String, Ws)>> = futures_util::stream::iter(0..n)
        .map(|_| open_idle(http, addr))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let took = started.elapsed();
    let mut open = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(pair) => open.push(pair),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        problems.add(format!(
            "memory: {} of {n} sessions failed to open; first: {}",
            errors.len(),
            errors[0]
        ));
    }
    (open, took)
}

/// Closes the WebSockets and deletes the sessions, `concurrency` at a time.
async fn close_all(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    open: Vec<(String, Ws)>,
    concurrency: usize,
    problems: &mut Problems,
) {
    let results: Vec<Res<()>> = futures_util::stream::iter(open)
        .map(|(id, mut ws)| async move {
            let _ = ws.close(None).await;
            delete_session(http, addr, &id).await
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        problems.add(format!("memory: closing sessions: {e}"));
    }
}

pub async fn bench(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    let n = opts.sessions;
    let dir = tmp.join("memory");
    std::fs::create_dir_all(&dir)?;
    println!(
        "4. Server memory: the real binary ({}), local backend,\n   sessions.command = [\"sh\"], \
         {n} sessions opened {} at a time, each with an attached WebSocket kept open;\n   then all \
         closed and deleted, and what the server gives back; then a graceful stop with {} attached.",
        kterm_binary().display(),
        opts.concurrency,
        STOP_SESSIONS.min(n),
    );
    // For the cost of the terminal emulator: a smaller ring, and output that wraps it.
    let scrollback = std::env::var("KTERM_BENCH_MEMORY_SCROLLBACK").ok();
    let output: usize =
        std::env::var("KTERM_BENCH_MEMORY_OUTPUT").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let script;
    let command: Vec<&str> = if output > 0 {
        println!(
            "   each session first prints {output} bytes of text (sessions.scrollback = {})",
            scrollback.as_deref().unwrap_or("default")
        );
        script = format!("yes 'a line of output to fill the ring' | head -c {output}; exec sh");
        vec!["sh", "-c", &script]
    } else {
        vec!["sh"]
    };
    let env: Vec<(&str, String)> =
        scrollback.map(|s| ("KTERM_SESSIONS__SCROLLBACK", format!("{s:?}"))).into_iter().collect();
    let mut k = Kterm::spawn(&dir, &command, &env).await?;
    let addr = k.addr;
    let http = k.http.clone();
    let log_path = dir.join("server.log");
    let pid = k.pid().ok_or("no server pid")?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss0, threads0) = proc_status(pid).ok_or("no /proc status for the server")?;
    let parts0 = rss_parts(pid).unwrap_or_default();
    let fds0 = fd_count(pid);

    let (open, open_time) = open_many(&http, addr, n, opts.concurrency, problems).await;
    let opened = open.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss1, threads1) = proc_status(pid).ok_or("no /proc status for the server")?;
    let parts1 = rss_parts(pid).unwrap_or_default();
    let fds1 = fd_count(pid);
    let kids = children(pid);
    let kid_rss: u64 = kids.iter().filter_map(|&p| proc_status(p)).map(|(rss, _)| rss).sum();

    let per = if opened > 0 { (rss1 as f64 - rss0 as f64) / opened as f64 } else { f64::NAN };
    println!("  {:<34} {:>12} {:>12}", "", "before", format!("{opened} attached"));
    println!("  {:<34} {:>12} {:>12}", "server VmRSS (KiB)", rss0, rss1);
    println!("  {:<34} {:>12} {:>12}", "  of it anonymous (heap, stacks)", parts0.0, parts1.0);
    println!("  {:<34} {:>12} {:>12}", "  of it file-backed (code pages)", parts0.1, parts1.1);
    println!("  {:<34} {:>12} {:>12}", "server threads", threads0, threads1);
    println!("  {:<34} {:>12} {:>12}", "server open fds", fds0, fds1);
    println!("  {:<34} {:>12.1}", "server RSS per session (KiB)", per);
    if opened > 0 {
        let anon = (parts1.0 as f64 - parts0.0 as f64) / opened as f64;
        println!("  {:<34} {:>12.1}", "  of it anonymous (KiB)", anon);
    }
    println!(
        "  {:<34} {:>12}   ({} processes; the raw-pty cost of the shells themselves)",
        "child shells' VmRSS total (KiB)",
        kid_rss,
        kids.len()
    );
    println!(
        "  {:<34} {:>12.2}   ({:.0} sessions/s at concurrency {})",
        "time to open + attach all (s)",
        open_time.as_secs_f64(),
        opened as f64 / open_time.as_secs_f64(),
        opts.concurrency
    );

    // Everything closed and deleted: what comes back, waiting up to 20 s for idle threads and
    // freed memory to go.
    close_all(&http, addr, open, opts.concurrency, problems).await;
    let closed = Instant::now();
    let (mut rss2, mut threads2) = (rss1, threads1);
    while closed.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        (rss2, threads2) = proc_status(pid).ok_or("no /proc status for the server")?;
        let live = children(pid).len();
        if live == 0 && threads2 <= threads0 + threads0 / 10 && rss2 <= rss0 + rss0 / 10 {
            break;
        }
    }
    println!(
        "  {:<34} {:>12} {:>12}   ({:.1}s after the last close; before: {} / {})",
        "after closing: VmRSS, threads",
        rss2,
        threads2,
        closed.elapsed().as_secs_f64(),
        rss0,
        threads0
    );
    let parts2 = rss_parts(pid).unwrap_or_default();
    println!(
        "  {:<34} {:>12} {:>12}   (before: {} / {})",
        "  anonymous, file-backed", parts2.0, parts2.1, parts0.0, parts0.1
    );
    if rss2 > rss0 + rss0 / 10 || threads2 > threads0 + threads0 / 10 {
        problems.add(format!(
            "memory: after closing, RSS {rss2} KiB / {threads2} threads, before {rss0} / {threads0}"
        ));
    }

    // Graceful stop with some attached.
    let (open, _) = open_many(&http, addr, STOP_SESSIONS.min(n), opts.concurrency, problems).await;
    let kids = children(pid);
    // Keep reading (answers pings, notices closes) in the background.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for (_, ws) in open {
        drain(ws, done_tx.clone());
    }
    drop(done_tx);
    let mut server = k.take_process().ok_or("no server process")?;
    let stopping = Instant::now();
    // SAFETY: kill(2) on the server we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = match tokio::time::timeout(Duration::from_secs(30), server.wait()).await {
        Ok(status) => Some(status?),
        Err(_) => {
            problems.add("memory: kterm did not exit within 30s of SIGTERM; killed".to_string());
            let _ = server.kill().await;
            None
        }
    };
    let stop_time = stopping.elapsed();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    let collect = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(code) = done_rx.recv().await {
            *codes
                .entry(code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()))
                .or_default() += 1;
        }
    });
    if collect.await.is_err() {
        problems
            .add("memory: some WebSockets were still open 5s after the server exited".to_string());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let survivors: Vec<i32> = kids.iter().copied().filter(|&p| alive(p)).collect();
    println!(
        "  {:<34} {:>12.2}   ({}; WebSocket close codes {:?})",
        "SIGTERM -> exit (s)",
        stop_time.as_secs_f64(),
        status.map(|s| s.to_string()).unwrap_or_else(|| "killed".into()),
        codes
    );
    println!("  {:<34} {:>12}   of {}", "child shells left running", survivors.len(), kids.len());
    if let Some(s) = status {
        if !s.success() {
            problems.add(format!("memory: kterm exited with {s} after SIGTERM"));
        }
    }
    if codes.keys().any(|c| c != "1001") {
        problems.add(format!("memory: close codes at shutdown were {codes:?}, expected all 1001"));
    }
    if !survivors.is_empty() {
        problems.add(format!(
            "memory: {} of {} session processes survived the server (e.g. pid {}); killing them",
            survivors.len(),
            kids.len(),
            survivors[0]
        ));
        for &p in &survivors {
            // SAFETY: kill(2) on processes our server started and left behind.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let bad: Vec<&str> =
        log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    if !bad.is_empty() {
        problems.add(format!(
            "memory: the server logged {} warnings/errors; first: {}",
            bad.len(),
            bad[0].trim()
        ));
    }
    println!();
    Ok(())
}
