//! Part 7, load: many attached sessions working at once, and what is left after them.
//! - Local: the real binary with `KTERM_BENCH_LOAD_SESSIONS` (500) sessions on the local
//!   backend, each attached and echoing its own numbered tokens through `cat` for
//!   `KTERM_BENCH_LOAD_SECS` (60 s); every byte each client gets is checked against what it
//!   sent (nothing lost, repeated or mixed up between sessions); the server's RSS at its peak
//!   and after all are closed, and its file descriptors and threads before and after.
//! - Docker: `KTERM_BENCH_LOAD_USERS` (50) users opening 2 tabs each at once against one daemon
//!   (default pool), each user identified by a trusted proxy's header; time until each tab is
//!   ready (POST -> WebSocket -> first output byte), errors, and that each user's tabs share
//!   one sandbox that no other user has.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kterm::config::{AuthMode, BackendKind, PullPolicy};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::client::{
    create_session, delete_session, expect_attached, first_output, proc_status, send_bytes,
    ws_connect, ws_next, Event, Kterm, Ws,
};
use crate::docker_cli::{self, Cleanup, IMAGE};
use crate::memory::fd_count;
use crate::{ms_since, p50_p99, percentile, Opts, Problems, Res};

/// What a load session runs: no echo, a marker once that holds, then every line back.
const ECHO_BACK: &str = "stty -echo; echo load-ready; exec cat";

pub async fn bench(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    local(opts, tmp, problems).await?;
    docker(opts, tmp, problems).await
}

/// The lines one session got back, checked byte for byte, and its round trips.
struct Echoed {
    round_trips: Vec<f64>,
}

async fn open(addr: SocketAddr, http: &reqwest::Client) -> Res<(String, Ws)> {
    let id = create_session(http, addr).await?;
    let mut ws = ws_connect(addr, &id).await?;
    expect_attached(&mut ws).await?;
    let mut seen = Vec::new();
    while !seen.windows(12).any(|w| w == b"load-ready\r\n") {
        match ws_next(&mut ws).await? {
            Event::Output(data) => seen.extend_from_slice(&data),
            Event::Control(v) => fail!("session {id}: unexpected {v} before it was ready"),
            Event::Closed(c) => fail!("session {id}: closed before it was ready ({c:?})"),
        }
    }
    Ok((id, ws))
}

/// Sends numbered tokens one at a time until `until`; each answer must be exactly the token
/// and its line end, and nothing else may arrive.
async fn echo_tokens(n: usize, ws: &mut Ws, until: Instant) -> Res<Echoed> {
    let mut round_trips = Vec::new();
    let mut k = 0u64;
    while Instant::now() < until {
        let token = format!("load-{n}-{k}");
        let expected = format!("{token}\r\n");
        let sent = Instant::now();
        send_bytes(ws, format!("{token}\n").as_bytes()).await?;
        let mut got = Vec::new();
        while got.len() < expected.len() {
            match ws_next(ws).await? {
                Event::Output(data) => got.extend_from_slice(&data),
                Event::Control(v) => fail!("session {n}: unexpected {v}"),
                Event::Closed(c) => fail!("session {n}: closed ({c:?})"),
            }
        }
        if got != expected.as_bytes() {
            fail!(
                "session {n}: sent {token:?}, got back {:?} (a byte lost, repeated or another's)",
                String::from_utf8_lossy(&got)
            );
        }
        round_trips.push(ms_since(sent));
        k += 1;
    }
    Ok(Echoed { round_trips })
}

/// Peak RSS (KiB) of `pid` while `running` is not yet set, sampled every 200 ms.
fn sample_peak(pid: i32, done: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !*done.borrow() {
            peak = peak.max(proc_status(pid).map_or(0, |(rss, _)| rss));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        peak
    })
}

async fn local(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    let n = opts.load_sessions;
    let secs = opts.load_secs;
    println!(
        "7. Load, local backend: the real binary, {n} attached sessions at once, each echoing its \
         own numbered\n   tokens through `cat` (tty echo off) for {secs} s, one in flight per \
         session; every byte checked."
    );
    let k = Kterm::spawn(&tmp.join("load"), &["sh", "-c", ECHO_BACK], &[]).await?;
    let Some(pid) = k.pid() else { fail!("the kterm child has no pid") };
    let (rss0, threads0) = proc_status(pid).unwrap_or_default();
    let fds0 = fd_count(pid);
    let opened = Instant::now();
    let results: Vec<Res<(String, Ws)>> = futures_util::stream::iter(0..n)
        .map(|_| open(k.addr, &k.http))
        .buffer_unordered(opts.concurrency)
        .collect()
        .await;
    let open_secs = opened.elapsed().as_secs_f64();
    let mut sessions = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(pair) => sessions.push(pair),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let peak = sample_peak(pid, done_rx);
    let until = Instant::now() + Duration::from_secs(secs);
    let runs: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, (id, mut ws))| {
            tokio::spawn(async move {
                let echoed = echo_tokens(i, &mut ws, until).await;
                let _ = ws.close(None).await;
                (id, echoed)
            })
        })
        .collect();
    let mut round_trips = Vec::new();
    let mut ids = Vec::new();
    for run in runs {
        match run.await {
            Ok((id, Ok(echoed))) => {
                round_trips.extend(echoed.round_trips);
                ids.push(id);
            }
            Ok((id, Err(e))) => {
                errors.push(e.to_string());
                ids.push(id);
            }
            Err(e) => errors.push(format!("a client task failed: {e}")),
        }
    }
    let (rss_busy, threads_busy) = proc_status(pid).unwrap_or_default();
    let fds_busy = fd_count(pid);
    let http = k.http.clone();
    let addr = k.addr;
    let deleted: Vec<Res<()>> = futures_util::stream::iter(ids)
        .map(|id| {
            let http = http.clone();
            async move { delete_session(&http, addr, &id).await }
        })
        .buffer_unordered(opts.concurrency)
        .collect()
        .await;
    errors.extend(deleted.into_iter().filter_map(Result::err).map(|e| e.to_string()));
    // What the server gives back once nothing is open (its idle worker threads time out).
    let settled = Instant::now() + Duration::from_secs(10);
    let (mut rss1, mut threads1, mut fds1) = (0, 0, 0);
    while Instant::now() < settled {
        (rss1, threads1) = proc_status(pid).unwrap_or_default();
        fds1 = fd_count(pid);
        if fds1 <= fds0 && threads1 <= threads0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = done_tx.send(true);
    let peak = peak.await.unwrap_or(0).max(rss_busy);
    println!(
        "  opened {n} in {open_secs:.1} s; {} round trips in {secs} s ({:.0}/s), round trip \
         p50/p99 {} ms, p99.9 {:.1} ms",
        round_trips.len(),
        round_trips.len() as f64 / secs as f64,
        p50_p99(&round_trips),
        percentile(&round_trips, 99.9)
    );
    println!(
        "  server RSS {:.1} MiB idle -> {:.1} MiB peak -> {:.1} MiB after all closed",
        rss0 as f64 / 1024.0,
        peak as f64 / 1024.0,
        rss1 as f64 / 1024.0
    );
    println!(
        "  fds {fds0} -> {fds_busy} -> {fds1}; threads {threads0} -> {threads_busy} -> {threads1}"
    );
    println!("  errors (lost, repeated or foreign bytes included): {}", errors.len());
    if let Some(first) = errors.first() {
        problems.add(format!("load: {} errors; first: {first}", errors.len()));
    }
    if fds1 > fds0 || threads1 > threads0 {
        problems.add(format!(
            "load: after closing, fds {fds0} -> {fds1} and threads {threads0} -> {threads1}"
        ));
    }
    k.stop().await;
    println!();
    Ok(())
}

/// A ready tab: its session, its sandbox, its WebSocket, and how long it took (ms).
type Tab = (String, String, Ws, f64);

/// One tab of a user: POST -> WebSocket -> first output byte.
async fn tab(k: &Kterm, user: &str) -> Res<Tab> {
    let started = Instant::now();
    let response = k
        .http
        .post(format!("http://{}/api/v1/sessions", k.addr))
        .header("x-load-user", user)
        .json(&serde_json::json!({"cols": crate::COLS, "rows": crate::ROWS}))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    if status.as_u16() != 201 {
        fail!("{user}: POST /api/v1/sessions answered {status}: {body}");
    }
    let record: serde_json::Value = serde_json::from_str(&body)?;
    let (Some(id), Some(sandbox)) = (record["id"].as_str(), record["sandbox_id"].as_str()) else {
        fail!("{user}: no id or sandbox_id in {record}");
    };
    let mut request = format!("ws://{}/api/v1/sessions/{id}/ws", k.addr).into_client_request()?;
    request.headers_mut().insert("x-load-user", user.parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
    first_output(&mut ws).await?;
    Ok((id.to_string(), sandbox.to_string(), ws, ms_since(started)))
}

/// A user's two tabs, one after the other; their ready times and sandboxes.
async fn user_tabs(k: &Kterm, user: String) -> (String, Vec<Res<Tab>>) {
    let first = tab(k, &user).await;
    let second = tab(k, &user).await;
    (user, vec![first, second])
}

async fn docker(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    let users = opts.load_users;
    print!("7b. Load, Docker backend: ");
    if let Err(why) = docker_cli::daemon_version().await {
        println!("skipped: no Docker daemon answers ({why})\n");
        return Ok(());
    }
    if let Some(why) = docker_cli::busybox_missing() {
        println!("skipped: cannot build the sandbox image: {why}\n");
        return Ok(());
    }
    docker_cli::build_image(&tmp.join("load-image")).await?;
    println!(
        "{users} users at once, each opening 2 tabs (one after the other), default pool;\n   \
         ready = POST -> WebSocket -> first output byte, milliseconds."
    );
    let mut cleanup = Cleanup::new();
    let run_id = cleanup.run_id.clone();
    let result = async {
        let k = Kterm::start_with(&tmp.join("load-docker"), |config| {
            config.backend.kind = BackendKind::Docker;
            config.docker.image = IMAGE.into();
            config.docker.pull = PullPolicy::Never;
            config.docker.labels.insert(docker_cli::LABEL.into(), run_id);
            config.sessions.command = Vec::new();
            config.auth.mode = AuthMode::Proxy;
            config.auth.proxy_user_header = "x-load-user".into();
            config.auth.trusted_proxies =
                kterm::config::AddrRange::parse("127.0.0.1").into_iter().collect();
        })
        .await?;
        let started = Instant::now();
        let all: Vec<(String, Vec<Res<Tab>>)> =
            futures_util::future::join_all((0..users).map(|u| user_tabs(&k, format!("user{u}"))))
                .await;
        let took = started.elapsed().as_secs_f64();
        let (mut firsts, mut seconds, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        let mut owner: HashMap<String, HashSet<String>> = HashMap::new();
        let mut open = Vec::new();
        for (user, tabs) in all {
            for (i, t) in tabs.into_iter().enumerate() {
                match t {
                    Ok((id, sandbox, ws, ms)) => {
                        if i == 0 {
                            firsts.push(ms)
                        } else {
                            seconds.push(ms)
                        }
                        owner.entry(sandbox).or_default().insert(user.clone());
                        open.push((user.clone(), id, ws));
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        let shared = owner.values().filter(|users| users.len() > 1).count();
        println!(
            "  all ready in {took:.1} s; first tab p50/p99 {} ms, second tab p50/p99 {} ms; \
             {} sandboxes for {users} users, {shared} shared between users; errors {}",
            p50_p99(&firsts),
            p50_p99(&seconds),
            owner.len(),
            errors.len()
        );
        if let Some(first) = errors.first() {
            problems.add(format!("load (docker): {} errors; first: {first}", errors.len()));
        }
        if shared > 0 || (errors.is_empty() && owner.len() != users) {
            problems.add(format!("load (docker): {} sandboxes, {shared} shared", owner.len()));
        }
        for (user, id, mut ws) in open {
            let _ = ws.close(None).await;
            let _ = k
                .http
                .delete(format!("http://{}/api/v1/sessions/{id}", k.addr))
                .header("x-load-user", user)
                .send()
                .await;
        }
        k.stop().await;
        Res::Ok(())
    }
    .await;
    let removed = cleanup.remove_all().await?;
    println!("  containers labelled {} removed at the end: {removed}\n", cleanup.label());
    result
}
