//! kterm benchmark: prints figures (it asserts nothing about speed) comparing kterm's local
//! backend, driven through its real HTTP API and terminal WebSocket, with a raw PTY driven
//! directly in the same process and the same run.
//!
//!   cargo bench --bench kterm_bench                 # everything, about a minute on 2 cores
//!   cargo bench --bench kterm_bench -- echo memory  # only some parts
//!   KTERM_BENCH_QUICK=1 cargo bench --bench kterm_bench
//!
//! Parts: `throughput`, `echo`, `connect`, `memory`. Environment overrides (defaults in
//! parentheses, quick values after the slash):
//!   KTERM_BENCH_BYTES            bytes per throughput run      (200000000 / 50000000)
//!   KTERM_BENCH_RUNS             throughput runs per side      (3 / 3)
//!   KTERM_BENCH_ECHO_SAMPLES     keystrokes per side           (2000 / 500)
//!   KTERM_BENCH_CONNECT_SAMPLES  connects per side             (30 / 10)
//!   KTERM_BENCH_SESSIONS         idle sessions for memory      (1000 / 200)
//!   KTERM_BENCH_CONCURRENCY      parallel opens for memory     (20)
//!   KTERM_BENCH_ONLY             comma list of parts (same as the positional filters)
//!   KTERM_BENCH_LOG              tracing filter for the in-process servers (warn)
//!
//! The in-process servers run in the same tokio runtime as the clients and the raw-PTY
//! baseline; the memory part runs the real `kterm` binary as a child process.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kterm::sandbox::pty;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = std::result::Result<T, BoxError>;

const COLS: u16 = 80;
const ROWS: u16 = 24;
/// Upper bound on any single wait, so that a stall is reported instead of hanging the run.
const STALL: Duration = Duration::from_secs(20);

macro_rules! fail {
    ($($arg:tt)*) => { return Err(format!($($arg)*).into()) };
}

// ---------------------------------------------------------------------------------------------
// Options

struct Opts {
    quick: bool,
    bytes: u64,
    runs: usize,
    echo_samples: usize,
    connect_samples: usize,
    sessions: usize,
    concurrency: usize,
    parts: Vec<String>,
}

fn env_or<T: FromStr>(key: &str, default: T) -> T {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => match v.trim().replace('_', "").parse() {
            Ok(v) => v,
            Err(_) => {
                eprintln!("warning: ignoring {key}={v:?} (not a number)");
                default
            }
        },
        _ => default,
    }
}

impl Opts {
    fn from_env() -> Opts {
        let quick = std::env::var("KTERM_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let all = ["throughput", "echo", "connect", "memory"];
        let mut parts: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .flat_map(|a| a.split(',').map(str::to_string).collect::<Vec<_>>())
            .collect();
        if let Ok(only) = std::env::var("KTERM_BENCH_ONLY") {
            parts.extend(only.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
        }
        parts.retain(|p| {
            let known = all.contains(&p.as_str());
            if !known {
                eprintln!("warning: unknown part {p:?} ignored (parts: {})", all.join(", "));
            }
            known
        });
        if parts.is_empty() {
            parts = all.iter().map(|s| s.to_string()).collect();
        }
        Opts {
            quick,
            bytes: env_or("KTERM_BENCH_BYTES", if quick { 50_000_000 } else { 200_000_000 }),
            runs: env_or("KTERM_BENCH_RUNS", 3usize).max(1),
            echo_samples: env_or("KTERM_BENCH_ECHO_SAMPLES", if quick { 500 } else { 2000 }).max(1),
            connect_samples: env_or("KTERM_BENCH_CONNECT_SAMPLES", if quick { 10 } else { 30 })
                .max(1),
            sessions: env_or("KTERM_BENCH_SESSIONS", if quick { 200 } else { 1000 }).max(1),
            concurrency: env_or("KTERM_BENCH_CONCURRENCY", 20usize).max(1),
            parts,
        }
    }

    fn wants(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }
}

/// Things that looked wrong in kterm during the run; printed at the end.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("  !! {what}");
        self.0.push(what);
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and printing

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn ratio(kterm: f64, raw: f64) -> String {
    if raw > 0.0 && kterm.is_finite() && raw.is_finite() {
        format!("{:.2}x", kterm / raw)
    } else {
        "-".into()
    }
}

fn row(label: &str, kterm: String, raw: String, note: String) {
    println!("  {label:<24} {kterm:>14} {raw:>14}   {note}");
}

fn table_head() {
    println!("  {:<24} {:>14} {:>14}   kterm/raw", "", "kterm (ws)", "raw pty");
}

// ---------------------------------------------------------------------------------------------
// Environment shared by kterm's local backend and the raw PTY

/// What the local backend gives a shell (its base env plus the session variables that matter),
/// so that the raw baseline runs the same programs in the same surroundings.
fn raw_env() -> Vec<(String, String)> {
    let mut env = Vec::new();
    for key in ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ"] {
        if let Ok(value) = std::env::var(key) {
            env.push((key.to_string(), value));
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    if !env.iter().any(|(k, _)| k == "LANG") {
        env.push(("LANG".into(), "C.UTF-8".into()));
    }
    env.push(("TERM".into(), "xterm-256color".into()));
    env.push(("COLORTERM".into(), "truecolor".into()));
    env
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn sh_c(script: &str) -> Vec<String> {
    argv(&["sh", "-c", script])
}

/// Ends a raw PTY child's process group and waits for it.
async fn kill_raw(child: &pty::PtyChild) {
    if child.pid > 0 && child.exited.borrow().is_none() {
        // SAFETY: kill(2) on the child's process group (it called setsid).
        unsafe { libc::kill(-child.pid, libc::SIGKILL) };
    }
    let mut exited = child.exited.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), exited.wait_for(Option::is_some)).await;
}

// ---------------------------------------------------------------------------------------------
// kterm clients

struct Kterm {
    server: Option<kterm::Server>,
    addr: std::net::SocketAddr,
    http: reqwest::Client,
}

impl Kterm {
    async fn start(dir: &Path, command: Vec<String>) -> Res<Kterm> {
        std::fs::create_dir_all(dir)?;
        let mut config = kterm::Config::default();
        config.server.listen = "127.0.0.1:0".into();
        config.state.path = dir.join("kterm.db");
        config.local.root = dir.join("workspaces");
        config.sessions.max_per_user = 2000;
        config.sessions.command = command;
        config.validate().map_err(|e| format!("config: {e}"))?;
        let server =
            kterm::Server::start(config).await.map_err(|e| format!("starting kterm: {e}"))?;
        let addr = server.addr();
        Ok(Kterm { server: Some(server), addr, http: http_client()? })
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

fn http_client() -> Res<reqwest::Client> {
    Ok(reqwest::Client::builder().no_proxy().tcp_nodelay(true).build()?)
}

async fn create_session(http: &reqwest::Client, addr: std::net::SocketAddr) -> Res<String> {
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
    let value: serde_json::Value = serde_json::from_str(&body)?;
    match value["id"].as_str() {
        Some(id) => Ok(id.to_string()),
        None => fail!("POST /api/v1/sessions: no id in {body}"),
    }
}

async fn delete_session(http: &reqwest::Client, addr: std::net::SocketAddr, id: &str) -> Res<()> {
    let response = http.delete(format!("http://{addr}/api/v1/sessions/{id}")).send().await?;
    let status = response.status();
    if status.as_u16() != 204 {
        let body = response.text().await.unwrap_or_default();
        fail!("DELETE /api/v1/sessions/{id} answered {status}: {body}");
    }
    Ok(())
}

async fn ws_connect(addr: std::net::SocketAddr, id: &str) -> Res<Ws> {
    let url = format!("ws://{addr}/api/v1/sessions/{id}/ws");
    // Browsers use TCP_NODELAY on WebSockets; so does this client.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    Ok(ws)
}

enum Event {
    Output(bytes::Bytes),
    Control(serde_json::Value),
    Closed(Option<String>),
}

/// The next terminal event; pings are answered by tungstenite itself.
async fn ws_next(ws: &mut Ws) -> Res<Event> {
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
async fn expect_attached(ws: &mut Ws) -> Res<u64> {
    match ws_next(ws).await? {
        Event::Control(v) if v["type"] == "attached" => Ok(v["replay_bytes"].as_u64().unwrap_or(0)),
        Event::Control(v) => fail!("expected `attached` first, got {v}"),
        Event::Output(d) => fail!("expected `attached` first, got {} output bytes", d.len()),
        Event::Closed(c) => fail!("closed before `attached` ({c:?})"),
    }
}

async fn send_bytes(ws: &mut Ws, data: &[u8]) -> Res<()> {
    ws.send(Message::binary(data.to_vec())).await?;
    Ok(())
}

/// Reads output until `marker` has been seen; returns the output read.
async fn ws_read_until(ws: &mut Ws, marker: &[u8]) -> Res<Vec<u8>> {
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

async fn raw_read_until(master: &mut pty::PtyMaster, marker: &[u8]) -> Res<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(STALL, master.read(&mut buf)).await {
            Err(_) => fail!("raw pty: no output within {STALL:?}"),
            Ok(r) => r?,
        };
        if n == 0 {
            fail!("raw pty: end of file while waiting for {:?}", String::from_utf8_lossy(marker));
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(marker.len()).any(|w| w == marker) {
            return Ok(seen);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Header

fn header(opts: &Opts) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1048576.0))
        .unwrap_or_else(|| "?".into());
    let profile = if cfg!(debug_assertions) { "debug" } else { "optimized" };
    println!("kterm benchmark: kterm {} ({profile} build)", env!("CARGO_PKG_VERSION"));
    println!("machine: {cpus} CPUs, {model}, Linux {}, {mem} RAM", kernel.trim());
    println!(
        "mode: {}{}; client, in-process servers and raw-pty baseline share one tokio runtime",
        if opts.quick { "quick (KTERM_BENCH_QUICK)" } else { "full" },
        if opts.parts.len() < 4 {
            format!(", parts: {}", opts.parts.join(","))
        } else {
            String::new()
        }
    );
    println!();
}

// ---------------------------------------------------------------------------------------------
// 1. Output throughput

/// The program waits for one line of input (so no output is produced, and none lost, before the
/// client is attached), then writes `bytes` NUL bytes as fast as it can.
fn throughput_argv(bytes: u64) -> Vec<String> {
    sh_c(&format!("stty -echo; read _go; exec head -c {bytes} /dev/zero"))
}

async fn throughput_kterm(k: &Kterm, expected: u64) -> Res<(f64, u64, Duration)> {
    let id = create_session(&k.http, k.addr).await?;
    let mut ws = ws_connect(k.addr, &id).await?;
    expect_attached(&mut ws).await?;
    let started = Instant::now();
    send_bytes(&mut ws, b"\n").await?;
    let mut received = 0u64;
    let mut exit = None;
    loop {
        match ws_next(&mut ws).await? {
            Event::Output(d) => received += d.len() as u64,
            Event::Control(v) if v["type"] == "exit" => {
                exit = Some(v["code"].clone());
                break;
            }
            Event::Control(v) => fail!("unexpected control message {v}"),
            Event::Closed(c) => {
                eprintln!("  closed before `exit` ({c:?})");
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    if exit.is_none() {
        fail!("the session ended without an `exit` message after {received} bytes");
    }
    if exit != Some(serde_json::json!(0)) {
        fail!("the program's exit code was {:?}", exit);
    }
    // Wait for the close that follows `exit`.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let _ = expected;
    Ok((received as f64 / elapsed.as_secs_f64() / 1e6, received, elapsed))
}

async fn throughput_raw(
    argv: &[String],
    cwd: &Path,
    env: &[(String, String)],
) -> Res<(f64, u64, Duration)> {
    let child = pty::spawn(argv, env, cwd, COLS, ROWS)?;
    let mut master = child.master.clone();
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    master.write_all(b"\n").await?;
    let mut received = 0u64;
    loop {
        let n = match tokio::time::timeout(STALL, master.read(&mut buf)).await {
            Err(_) => fail!("raw pty stalled after {received} bytes"),
            Ok(r) => r?,
        };
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    let elapsed = started.elapsed();
    kill_raw(&child).await;
    Ok((received as f64 / elapsed.as_secs_f64() / 1e6, received, elapsed))
}

async fn bench_throughput(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    let n = opts.bytes;
    println!(
        "1. Output throughput: `head -c {n} /dev/zero` on an {COLS}x{ROWS} pty, started by a newline \
         once attached;\n   kterm: newline sent -> `exit` received, counting binary bytes; raw: newline \
         written -> EOF on the master.\n   MB = 10^6 bytes; {} runs each, interleaved; median.",
        opts.runs
    );
    let argv = throughput_argv(n);
    let k = Kterm::start(&tmp.join("throughput"), argv.clone()).await?;
    let cwd = tmp.join("raw-cwd");
    std::fs::create_dir_all(&cwd)?;
    let env = raw_env();
    let (mut kt, mut raw) = (Vec::new(), Vec::new());
    let (mut kt_runs, mut raw_runs) = (Vec::new(), Vec::new());
    for run in 0..opts.runs {
        match throughput_kterm(&k, n).await {
            Ok((mbs, bytes, took)) => {
                // Only the go newline's echo (if it beat `stty -echo`) may add to the count.
                if bytes < n || bytes > n + 2 {
                    problems.add(format!(
                        "throughput run {run}: kterm delivered {bytes} bytes, the program wrote {n}"
                    ));
                }
                kt.push(mbs);
                kt_runs.push(format!("{mbs:.0}/{:.2}s", took.as_secs_f64()));
            }
            Err(e) => problems.add(format!("throughput run {run} (kterm): {e}")),
        }
        match throughput_raw(&argv, &cwd, &env).await {
            Ok((mbs, bytes, took)) => {
                if bytes < n || bytes > n + 2 {
                    eprintln!("  note: raw pty delivered {bytes} bytes of {n}");
                }
                raw.push(mbs);
                raw_runs.push(format!("{mbs:.0}/{:.2}s", took.as_secs_f64()));
            }
            Err(e) => problems.add(format!("throughput run {run} (raw pty): {e}")),
        }
    }
    k.stop().await;
    table_head();
    let (km, rm) = (median(&kt), median(&raw));
    row("MB/s (median)", format!("{km:.1}"), format!("{rm:.1}"), ratio(km, rm));
    row(
        "MB/s (min..max)",
        format!("{:.0}..{:.0}", percentile(&kt, 0.0), percentile(&kt, 100.0)),
        format!("{:.0}..{:.0}", percentile(&raw, 0.0), percentile(&raw, 100.0)),
        String::new(),
    );
    println!("  runs (MB/s/time): kterm [{}]  raw [{}]", kt_runs.join(", "), raw_runs.join(", "));
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Keystroke echo latency

/// Raw mode, no tty echo: every byte goes through `cat` and back. `R` says raw mode is on.
fn echo_argv() -> Vec<String> {
    sh_c("stty raw -echo; printf R; exec cat")
}

const ECHO_WARMUP: usize = 50;

async fn echo_kterm(k: &Kterm, samples: usize, odd: &mut usize) -> Res<Vec<f64>> {
    let id = create_session(&k.http, k.addr).await?;
    let mut ws = ws_connect(k.addr, &id).await?;
    expect_attached(&mut ws).await?;
    ws_read_until(&mut ws, b"R").await?;
    let mut out = Vec::with_capacity(samples);
    for i in 0..ECHO_WARMUP + samples {
        let b = b'a' + (i % 26) as u8;
        let started = Instant::now();
        send_bytes(&mut ws, &[b]).await?;
        let mut got = Vec::new();
        loop {
            match ws_next(&mut ws).await? {
                Event::Output(d) => {
                    got.extend_from_slice(&d);
                    if got.contains(&b) {
                        break;
                    }
                }
                Event::Control(v) => fail!("unexpected control message {v}"),
                Event::Closed(c) => fail!("closed during echo test ({c:?})"),
            }
        }
        let took = started.elapsed();
        if got != [b] {
            *odd += 1;
        }
        if i >= ECHO_WARMUP {
            out.push(took.as_secs_f64() * 1e6);
        }
    }
    let _ = ws.close(None).await;
    delete_session(&k.http, k.addr, &id).await?;
    Ok(out)
}

async fn echo_raw(
    cwd: &Path,
    env: &[(String, String)],
    samples: usize,
    odd: &mut usize,
) -> Res<Vec<f64>> {
    let child = pty::spawn(&echo_argv(), env, cwd, COLS, ROWS)?;
    let mut master = child.master.clone();
    raw_read_until(&mut master, b"R").await?;
    let mut out = Vec::with_capacity(samples);
    let mut buf = [0u8; 256];
    for i in 0..ECHO_WARMUP + samples {
        let b = b'a' + (i % 26) as u8;
        let started = Instant::now();
        master.write_all(&[b]).await?;
        let mut got = Vec::new();
        while !got.contains(&b) {
            let n = match tokio::time::timeout(STALL, master.read(&mut buf)).await {
                Err(_) => fail!("raw pty: no echo within {STALL:?}"),
                Ok(r) => r?,
            };
            if n == 0 {
                fail!("raw pty: end of file during echo test");
            }
            got.extend_from_slice(&buf[..n]);
        }
        let took = started.elapsed();
        if got != [b] {
            *odd += 1;
        }
        if i >= ECHO_WARMUP {
            out.push(took.as_secs_f64() * 1e6);
        }
    }
    kill_raw(&child).await;
    Ok(out)
}

async fn bench_echo(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    println!(
        "2. Keystroke echo latency: `sh -c 'stty raw -echo; printf R; exec cat'`, after `R` and {ECHO_WARMUP} \
         warm-up keys,\n   {} samples of: send 1 byte -> the same byte is back (kterm: binary frame in, \
         binary frame out). Microseconds.",
        opts.echo_samples
    );
    let k = Kterm::start(&tmp.join("echo"), echo_argv()).await?;
    let cwd = tmp.join("raw-cwd");
    std::fs::create_dir_all(&cwd)?;
    let env = raw_env();
    let (mut kodd, mut rodd) = (0, 0);
    let kt = match echo_kterm(&k, opts.echo_samples, &mut kodd).await {
        Ok(v) => v,
        Err(e) => {
            problems.add(format!("echo (kterm): {e}"));
            Vec::new()
        }
    };
    let raw = match echo_raw(&cwd, &env, opts.echo_samples, &mut rodd).await {
        Ok(v) => v,
        Err(e) => {
            problems.add(format!("echo (raw pty): {e}"));
            Vec::new()
        }
    };
    k.stop().await;
    if kodd > 0 {
        problems.add(format!(
            "echo (kterm): {kodd} keystrokes came back with other bytes in the frame(s)"
        ));
    }
    if rodd > 0 {
        eprintln!("  note: raw pty: {rodd} keystrokes came back with other bytes");
    }
    table_head();
    for (label, p) in [("p50 µs", 50.0), ("p90 µs", 90.0), ("p99 µs", 99.0), ("max µs", 100.0)]
    {
        let (a, b) = (percentile(&kt, p), percentile(&raw, p));
        row(label, format!("{a:.0}"), format!("{b:.0}"), ratio(a, b));
    }
    let slow = kt.iter().filter(|&&us| us > 30_000.0).count();
    if slow > 0 {
        problems.add(format!(
            "echo (kterm): {slow} of {} keystrokes took over 30 ms (Nagle/delayed-ACK or a stall?)",
            kt.len()
        ));
    }
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Connect-to-prompt latency

struct ConnectSample {
    total_ms: f64,
    post_ms: f64,
    delete_ms: f64,
    first: Vec<u8>,
}

async fn connect_kterm(k: &Kterm) -> Res<ConnectSample> {
    let started = Instant::now();
    let id = create_session(&k.http, k.addr).await?;
    let post_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut ws = ws_connect(k.addr, &id).await?;
    let first = loop {
        match ws_next(&mut ws).await? {
            Event::Output(d) if !d.is_empty() => break d,
            Event::Output(_) => continue,
            Event::Control(v) if v["type"] == "attached" => continue,
            Event::Control(v) => fail!("unexpected control message {v}"),
            Event::Closed(c) => fail!("closed before the prompt ({c:?})"),
        }
    };
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    let _ = ws.close(None).await;
    let deleting = Instant::now();
    delete_session(&k.http, k.addr, &id).await?;
    let delete_ms = deleting.elapsed().as_secs_f64() * 1e3;
    Ok(ConnectSample { total_ms, post_ms, delete_ms, first: first.to_vec() })
}

async fn connect_raw(cwd: &Path, env: &[(String, String)]) -> Res<(f64, Vec<u8>)> {
    let started = Instant::now();
    let child = pty::spawn(&argv(&["bash", "-l"]), env, cwd, COLS, ROWS)?;
    let mut master = child.master.clone();
    let mut buf = [0u8; 4096];
    let n = match tokio::time::timeout(STALL, master.read(&mut buf)).await {
        Err(_) => fail!("raw pty: bash -l printed nothing within {STALL:?}"),
        Ok(r) => r?,
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    kill_raw(&child).await;
    if n == 0 {
        fail!("raw pty: bash -l ended without output");
    }
    Ok((ms, buf[..n].to_vec()))
}

fn shown(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes).chars().take(40).collect();
    format!("{text:?}")
}

async fn bench_connect(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    println!(
        "3. Connect-to-prompt latency: default shell (`bash -l`), {} samples each, alternating.\n   kterm: POST \
         /api/v1/sessions -> WebSocket -> first output byte, then DELETE; raw: spawn `bash -l`\n   on a pty -> \
         first byte, then SIGKILL. Milliseconds.",
        opts.connect_samples
    );
    let k = Kterm::start(&tmp.join("connect"), Vec::new()).await?;
    let cwd = tmp.join("raw-cwd");
    std::fs::create_dir_all(&cwd)?;
    let env = raw_env();
    let (mut kt, mut post, mut del, mut raw) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut kfirst, mut rfirst) = (None, None);
    for i in 0..opts.connect_samples {
        match connect_kterm(&k).await {
            Ok(s) => {
                kt.push(s.total_ms);
                post.push(s.post_ms);
                del.push(s.delete_ms);
                kfirst.get_or_insert(s.first);
            }
            Err(e) => problems.add(format!("connect sample {i} (kterm): {e}")),
        }
        match connect_raw(&cwd, &env).await {
            Ok((ms, first)) => {
                raw.push(ms);
                rfirst.get_or_insert(first);
            }
            Err(e) => problems.add(format!("connect sample {i} (raw pty): {e}")),
        }
    }
    k.stop().await;
    table_head();
    for (label, p) in [("p50 ms", 50.0), ("p99 ms", 99.0)] {
        let (a, b) = (percentile(&kt, p), percentile(&raw, p));
        row(label, format!("{a:.1}"), format!("{b:.1}"), ratio(a, b));
    }
    row(
        "  of which POST p50/p99",
        format!("{:.1}/{:.1}", percentile(&post, 50.0), percentile(&post, 99.0)),
        "-".into(),
        String::new(),
    );
    row(
        "  DELETE p50/p99 (after)",
        format!("{:.1}/{:.1}", percentile(&del, 50.0), percentile(&del, 99.0)),
        "-".into(),
        String::new(),
    );
    println!(
        "  first output: kterm {}  raw {}",
        kfirst.as_deref().map(shown).unwrap_or_default(),
        rfirst.as_deref().map(shown).unwrap_or_default()
    );
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Server memory with many attached idle sessions (the real binary)

fn proc_status(pid: i32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("Threads:")?))
}

fn fd_count(pid: i32) -> usize {
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

fn kterm_binary() -> PathBuf {
    // Cargo sets this for benches and integration tests; the bench build of the binary.
    PathBuf::from(env!("CARGO_BIN_EXE_kterm"))
}

fn free_port() -> Res<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn open_idle(http: &reqwest::Client, addr: std::net::SocketAddr) -> Res<Ws> {
    let id = create_session(http, addr).await?;
    let mut ws = ws_connect(addr, &id).await?;
    expect_attached(&mut ws).await?;
    // The `sh` prompt: the session is up and its output reaches the client.
    match ws_next(&mut ws).await? {
        Event::Output(_) => Ok(ws),
        Event::Control(v) => fail!("expected the prompt, got {v}"),
        Event::Closed(c) => fail!("closed before the prompt ({c:?})"),
    }
}

async fn bench_memory(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    let n = opts.sessions;
    let bin = kterm_binary();
    let dir = tmp.join("memory");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    println!(
        "4. Server memory: the real binary ({}),\n   sessions.command = [\"sh\"], {n} sessions opened \
         {} at a time, each with an attached WebSocket kept open.",
        bin.display(),
        opts.concurrency
    );
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path)?;
    let mut server = tokio::process::Command::new(&bin)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--state")
        .arg(dir.join("k.db"))
        .env("KTERM_SESSIONS__MAX_PER_USER", "2000")
        .env("KTERM_SESSIONS__COMMAND", r#"["sh"]"#)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let pid = server.id().map(|p| p as i32).ok_or("no server pid")?;
    let http = http_client()?;
    let ready = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if let Ok(Some(status)) = server.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            fail!("kterm exited at startup ({status}): {log}");
        }
        if ready.elapsed() > Duration::from_secs(15) {
            fail!("kterm did not answer /healthz within 15s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss0, threads0) = proc_status(pid).ok_or("no /proc status for the server")?;
    let fds0 = fd_count(pid);

    let started = Instant::now();
    let results: Vec<Res<Ws>> = futures_util::stream::iter(0..n)
        .map(|_| open_idle(&http, addr))
        .buffer_unordered(opts.concurrency)
        .collect()
        .await;
    let open_time = started.elapsed();
    let mut sockets = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(ws) => sockets.push(ws),
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
    let opened = sockets.len();
    // Keep reading (answers pings, notices closes) in the background.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for mut ws in sockets {
        let done = done_tx.clone();
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
    drop(done_tx);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss1, threads1) = proc_status(pid).ok_or("no /proc status for the server")?;
    let fds1 = fd_count(pid);
    let kids = children(pid);
    let kid_rss: u64 = kids.iter().filter_map(|&p| proc_status(p)).map(|(rss, _)| rss).sum();

    let per = if opened > 0 { (rss1 as f64 - rss0 as f64) / opened as f64 } else { f64::NAN };
    println!("  {:<34} {:>12} {:>12}", "", "before", format!("{opened} attached"));
    println!("  {:<34} {:>12} {:>12}", "server VmRSS (KiB)", rss0, rss1);
    println!("  {:<34} {:>12} {:>12}", "server threads", threads0, threads1);
    println!("  {:<34} {:>12} {:>12}", "server open fds", fds0, fds1);
    println!("  {:<34} {:>12.1}", "server RSS per session (KiB)", per);
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

    // Graceful stop with everything attached.
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

// ---------------------------------------------------------------------------------------------

fn main() {
    let opts = Opts::from_env();
    {
        use tracing_subscriber::EnvFilter;
        let filter = std::env::var("KTERM_BENCH_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    header(&opts);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let total = Instant::now();
    let problems = runtime.block_on(async {
        let tmp = tempfile::Builder::new().prefix("kterm-bench-").tempdir().expect("tempdir");
        let mut problems = Problems::default();
        type Part = for<'a> fn(
            &'a Opts,
            &'a Path,
            &'a mut Problems,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Res<()>> + 'a>,
        >;
        let parts: [(&str, Part); 4] = [
            ("throughput", |o, t, p| Box::pin(bench_throughput(o, t, p))),
            ("echo", |o, t, p| Box::pin(bench_echo(o, t, p))),
            ("connect", |o, t, p| Box::pin(bench_connect(o, t, p))),
            ("memory", |o, t, p| Box::pin(bench_memory(o, t, p))),
        ];
        for (name, run) in parts {
            if !opts.wants(name) {
                continue;
            }
            let started = Instant::now();
            if let Err(e) = run(&opts, tmp.path(), &mut problems).await {
                problems.add(format!("{name}: {e}"));
                println!();
            }
            eprintln!("  ({name} took {:.1}s)", started.elapsed().as_secs_f64());
        }
        problems
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    println!("total time {:.1}s", total.elapsed().as_secs_f64());
    if problems.0.is_empty() {
        println!("problems seen in kterm: none");
    } else {
        println!("problems seen ({}):", problems.0.len());
        for p in &problems.0 {
            println!("  - {p}");
        }
    }
}
