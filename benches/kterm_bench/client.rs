//! A kterm server (the real binary as a child process, or in-process for the Docker part) and a
//! small client for its REST API and terminal WebSocket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::{Res, COLS, ROWS, STALL};

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Kterm {
    server: Option<kterm::Server>,
    /// The `kterm` binary serving, when it is a child process.
    process: Option<tokio::process::Child>,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
}

impl Kterm {
    /// The real `kterm` binary as users run it, as a child process: local backend, auth `none`
    /// on 127.0.0.1, running `command` (JSON array; empty: the default shell) in every
    /// session, with `env` added (`KTERM_...` config keys). Its log goes to `dir/server.log`.
    pub async fn spawn(dir: &Path, command: &[&str], env: &[(&str, String)]) -> Res<Kterm> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = tokio::process::Command::new(kterm_binary());
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--state")
            .arg(dir.join("k.db"))
            .env("KTERM_AUTH__MODE", "none")
            .env("KTERM_LOCAL__ROOT", dir.join("workspaces"))
            .env("KTERM_SESSIONS__MAX_PER_USER", "2000")
            // The bench opens sessions far faster than a person: lift the abuse limits.
            .env("KTERM_SESSIONS__CREATE_PER_MINUTE", "1000000")
            .env("KTERM_SESSIONS__MAX_SANDBOXES", "100000")
            // Not `auto`: the local parts must not turn into Docker runs.
            .env("KTERM_BACKEND__KIND", "local")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if !command.is_empty() {
            cmd.env("KTERM_SESSIONS__COMMAND", serde_json::to_string(command)?);
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut process = cmd.spawn()?;
        let http = http_client()?;
        let ready = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if let Ok(Some(status)) = process.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                fail!("kterm exited at startup ({status}): {log}");
            }
            if ready.elapsed() > Duration::from_secs(15) {
                fail!("kterm did not answer /healthz within 15s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Kterm { server: None, process: Some(process), addr, http })
    }

    /// The server's process id when it is the binary.
    pub fn pid(&self) -> Option<i32> {
        self.process.as_ref().and_then(|p| p.id()).map(|p| p as i32)
    }

    /// The binary's child process, for the memory part's own stop.
    pub fn take_process(&mut self) -> Option<tokio::process::Child> {
        self.process.take()
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
        Ok(Kterm { server: Some(server), process: None, addr, http: http_client()? })
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        if let Some(mut process) = self.process.take() {
            if let Some(pid) = process.id() {
                // SAFETY: kill(2) on the server this bench started.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            if tokio::time::timeout(Duration::from_secs(10), process.wait()).await.is_err() {
                let _ = process.kill().await;
            }
        }
    }
}

/// The binary measured: `KTERM_BENCH_KTERM` (another build, to compare), else the bench build.
pub fn kterm_binary() -> PathBuf {
    match std::env::var_os("KTERM_BENCH_KTERM") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        // Cargo sets this for benches and integration tests.
        _ => PathBuf::from(env!("CARGO_BIN_EXE_kterm")),
    }
}

pub fn free_port() -> Res<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// VmRSS (KiB) and thread count of a process.
pub fn proc_status(pid: i32) -> Option<(u64, u64)> {
    status_fields(pid, "VmRSS:", "Threads:")
}

/// Of a process's RSS, the anonymous part (heap, stacks) and the file-backed part (the
/// binary's and libraries' pages it has touched: clean, shared, reclaimable), in KiB.
pub fn rss_parts(pid: i32) -> Option<(u64, u64)> {
    status_fields(pid, "RssAnon:", "RssFile:")
}

/// Two numeric fields of one read of `/proc/PID/status`.
fn status_fields(pid: i32, a: &str, b: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field(a)?, field(b)?))
}

/// CPU time (user + system, all threads) a process has used, in seconds.
pub fn proc_cpu(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) / ticks)
}

/// CPU time (user + system, all threads) this process has used, in seconds.
pub fn own_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
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
            // `status`: a cold sandbox is starting (the session is pending).
            Event::Control(v) if v["type"] == "attached" || v["type"] == "status" => continue,
            Event::Control(v) => fail!("unexpected control message {v}"),
            Event::Closed(c) => fail!("closed before the prompt ({c:?})"),
        }
    }
}

pub async fn send_bytes(ws: &mut Ws, data: &[u8]) -> Res<()> {
    ws.send(Message::binary(data.to_vec())).await?;
    Ok(())
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
