//! Test harness: a kterm server started in-process on port 0 with its own temporary state, and a
//! small WebSocket client that speaks the terminal protocol. Every wait has a deadline.

#![allow(dead_code)]

pub mod agent;
pub mod docker;
pub mod files;
pub mod kube_fake;
pub mod raw_ws;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kterm::config::{Config, HumanDuration};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

pub const WAIT: Duration = Duration::from_secs(15);

pub struct TestServer {
    pub server: Option<kterm::Server>,
    pub base: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// A header every helper request carries (credentials), if set.
    pub auth: Option<(String, String)>,
}

/// A client of a [`TestServer`] that sends one credential header on every request.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub header: Option<(String, String)>,
}

/// The config every test starts from: loopback, temp state, a plain predictable shell.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.server.ping_interval = HumanDuration(Duration::from_secs(5));
    config.state.path = dir.join("kterm.db");
    // Tests say the backend they mean: a machine with the sandbox image must not silently run
    // a "local" test on Docker (Docker tests set it in `docker::configure`).
    config.backend.kind = kterm::config::BackendKind::Local;
    config.local.root = dir.join("workspaces");
    config.sessions.command = vec!["bash".into(), "--noprofile".into(), "--norc".into()];
    config.sessions.env.insert("PS1".into(), "$ ".into());
    // Tests that make many sessions quickly are not about the rate limit (tests/limits.rs is).
    config.sessions.create_per_minute = 1000;
    // Sandboxes go with their last session unless a test is about lingering (tests/linger.rs):
    // the others count sandboxes and containers.
    config.sandboxes.idle_timeout = HumanDuration(Duration::ZERO);
    config
}

/// Token auth with a plain token per `(user, token)`, and `admins`.
pub fn token_auth(config: &mut Config, users: &[(&str, &str)], admins: &[&str]) {
    config.auth.mode = kterm::config::AuthMode::Token;
    config.auth.tokens = users
        .iter()
        .map(|(user, token)| kterm::config::TokenEntry {
            user: (*user).into(),
            token: Some((*token).into()),
            token_sha256: None,
        })
        .collect();
    config.auth.admins = admins.iter().map(|a| (*a).into()).collect();
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_in(tempfile::tempdir().expect("temp dir"), adjust).await
    }

    /// Starts on an existing state directory (a restart).
    pub async fn start_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = test_config(dir.path());
        adjust(&mut config);
        config.validate().expect("test config is valid");
        let server = kterm::Server::start(config).await.expect("server starts");
        Self::serving(server, dir)
    }

    /// Starts on `dir` with the fake engine `fake` (kept by the caller across restarts).
    pub async fn start_fake(
        dir: tempfile::TempDir,
        fake: &std::sync::Arc<kterm::sandbox::fake::FakePlatform>,
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        let mut config = test_config(dir.path());
        adjust(&mut config);
        config.validate().expect("test config is valid");
        // The fake runs host processes: "auto" would pick the host's tmux, so only an explicit
        // `sessions.persistence = "tmux"` turns it on here.
        let persistence = match config.sessions.persistence {
            kterm::config::Persistence::Tmux => kterm::config::Persistence::Tmux,
            _ => kterm::config::Persistence::None,
        };
        let backend = kterm::sandbox::container::ContainerBackend::new(fake.clone())
            .with_persistence(persistence);
        let server = kterm::Server::start_with_backend(config, std::sync::Arc::new(backend))
            .await
            .expect("server starts");
        Self::serving(server, dir)
    }

    fn serving(server: kterm::Server, dir: tempfile::TempDir) -> TestServer {
        let base = format!("http://{}", server.addr());
        TestServer { server: Some(server), base, http: reqwest::Client::new(), dir, auth: None }
    }

    /// The running server's state (store, audit, auth).
    pub fn state(&self) -> &kterm::app::AppState {
        self.server.as_ref().expect("server running").state()
    }

    /// A client sending no credentials.
    pub fn anonymous(&self) -> Client {
        Client { base: self.base.clone(), http: self.http.clone(), header: None }
    }

    /// A client sending `name: value` on every request.
    pub fn with_header(&self, name: &str, value: &str) -> Client {
        Client { header: Some((name.into(), value.into())), ..self.anonymous() }
    }

    pub fn bearer(&self, token: &str) -> Client {
        self.with_header("authorization", &format!("Bearer {token}"))
    }

    pub fn cookie(&self, value: &str) -> Client {
        self.with_header("cookie", &format!("kterm_session={value}"))
    }

    fn client(&self) -> Client {
        Client { header: self.auth.clone(), ..self.anonymous() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, id: &str) -> String {
        format!("{}/api/v1/sessions/{id}/ws", self.base.replace("http://", "ws://"))
    }

    /// POST /api/v1/sessions; panics unless 201.
    pub async fn create(&self, body: Value) -> Value {
        self.client().create(body).await
    }

    pub async fn create_running(&self, body: Value) -> Value {
        self.client().create_running(body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.client().post(path, body).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.client().get(path).await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.client().delete(path).await
    }

    pub async fn attach(&self, id: &str) -> Terminal {
        self.client().attach(id).await
    }

    pub async fn follow(&self, id: &str) -> (Vec<Value>, Result<Terminal, Value>) {
        self.client().follow(id).await
    }

    /// A metric's value from /metrics: the sum of its series (labelled ones included).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        metric_sum(&text, name).unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Stops the server and hands back its state directory, for a restart.
    pub async fn stop_keeping_state(mut self) -> tempfile::TempDir {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        let TestServer { dir, .. } = self;
        dir
    }
}

impl Client {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, id: &str) -> String {
        format!("{}/api/v1/sessions/{id}/ws", self.base.replace("http://", "ws://"))
    }

    /// A request with this client's credential header.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.header {
            Some((name, value)) => request.header(name.as_str(), value.as_str()),
            None => request,
        }
    }

    /// POST /api/v1/sessions; panics unless 201.
    pub async fn create(&self, body: Value) -> Value {
        let (status, value) = self.post("/api/v1/sessions", body).await;
        assert_eq!(status, 201, "create failed: {value}");
        value
    }

    /// POST /api/v1/sessions, then (when it is `pending`: a cold sandbox starting) waits for
    /// it to run; panics unless it does.
    pub async fn create_running(&self, body: Value) -> Value {
        let created = self.create(body).await;
        if created["status"] != "pending" {
            return created;
        }
        let id = created["id"].as_str().expect("id").to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, session) = self.get(&format!("/api/v1/sessions/{id}")).await;
            assert_eq!(status, 200, "{session}");
            if session["status"] != "pending" {
                assert_eq!(session["status"], "running", "the session did not start: {session}");
                return session;
            }
            assert!(std::time::Instant::now() < deadline, "still pending after 60 s: {session}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Creates a session and returns its id.
    pub async fn create_id(&self) -> String {
        self.create(json!({})).await["id"].as_str().expect("id").to_string()
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response =
            self.request(reqwest::Method::POST, path).json(&body).send().await.expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.request(reqwest::Method::GET, path).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.request(reqwest::Method::DELETE, path).send().await.expect("DELETE").status().as_u16()
    }

    /// POST /api/v1/auth/login with `body`: the status, the `kterm_session` cookie's value and
    /// its whole Set-Cookie header.
    pub async fn login(&self, body: Value) -> (u16, Option<String>, String) {
        let response = self
            .request(reqwest::Method::POST, "/api/v1/auth/login")
            .json(&body)
            .send()
            .await
            .expect("login");
        let status = response.status().as_u16();
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let value = set_cookie
            .strip_prefix("kterm_session=")
            .and_then(|rest| rest.split(';').next())
            .map(str::to_string)
            .filter(|v| !v.is_empty());
        (status, value, set_cookie)
    }

    pub async fn attach(&self, id: &str) -> Terminal {
        self.connect(&self.ws_url(id), None).await.expect("WebSocket attach")
    }

    /// Attaches to a session that may be pending: the `status` messages received before it
    /// ran, then the attached terminal, or the `exit` message when it could not start.
    pub async fn follow(&self, id: &str) -> (Vec<Value>, Result<Terminal, Value>) {
        let mut request = self.ws_url(id).into_client_request().unwrap();
        if let Some((name, value)) = &self.header {
            let name: tokio_tungstenite::tungstenite::http::HeaderName = name.parse().unwrap();
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket attach");
        let mut terminal = Terminal { ws, attached: Value::Null, output: Vec::new() };
        let mut statuses = Vec::new();
        loop {
            match terminal.next().await {
                Event::Control(value) if value["type"] == "status" => statuses.push(value),
                Event::Control(value) if value["type"] == "attached" => {
                    terminal.attached = value;
                    return (statuses, Ok(terminal));
                }
                Event::Control(value) if value["type"] == "exit" => return (statuses, Err(value)),
                other => panic!("expected status, attached or exit, got {other:?}"),
            }
        }
    }

    /// Opens a terminal WebSocket at `url` with this client's credentials and `origin`.
    pub async fn connect(
        &self,
        url: &str,
        origin: Option<&str>,
    ) -> Result<Terminal, tokio_tungstenite::tungstenite::Error> {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some((name, value)) = &self.header {
            headers.push((name, value));
        }
        if let Some(origin) = origin {
            headers.push(("origin", origin));
        }
        Terminal::connect_with(url, &headers).await
    }

    /// The HTTP status a WebSocket request at `url` was refused with before the upgrade.
    pub async fn ws_refused(&self, url: &str, origin: Option<&str>) -> u16 {
        match self.connect(url, origin).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
            Err(e) => panic!("expected an HTTP refusal, got {e}"),
            Ok(t) => panic!("expected a refusal, but attached: {}", t.attached),
        }
    }
}

/// Creates one session for each of `users` users at once (straight through the registry, as
/// concurrently as it gets); every create must succeed and no two users may share a sandbox.
/// Returns the pool's hits and misses.
pub async fn create_concurrently_sharing_nothing(server: &TestServer, users: usize) -> (f64, f64) {
    use kterm::session::{Caller, CreateSession};
    let registry = server.state().registry.clone();
    let tasks: Vec<_> = (0..users)
        .map(|i| {
            let registry = registry.clone();
            tokio::spawn(async move {
                registry.create(&Caller::user(&format!("u{i}")), CreateSession::default()).await
            })
        })
        .collect();
    let mut sandboxes = std::collections::HashSet::new();
    for task in tasks {
        let record = task.await.unwrap().expect("every create succeeds, warm or cold");
        let user = record.user;
        assert!(sandboxes.insert(record.sandbox_id), "{user} got someone's sandbox");
    }
    let hits = server.metric("kterm_pool_hits_total").await;
    let misses = server.metric("kterm_pool_misses_total").await;
    assert_eq!(hits + misses, users as f64);
    (hits, misses)
}

/// The sum of the series of metric `name` in a Prometheus text exposition, if it has any.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once('}')?.1,
                None => rest,
            };
            value.trim().parse().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Waits until `check` returns `Some`, polling; panics with `what` at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the server sent.
#[derive(Debug)]
pub enum Event {
    Control(Value),
    Output(Vec<u8>),
    Closed(Option<u16>),
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A terminal client: the attach message, then output.
pub struct Terminal {
    pub ws: Ws,
    pub attached: Value,
    /// All output received so far.
    pub output: Vec<u8>,
}

impl Terminal {
    pub async fn connect(
        url: &str,
        origin: Option<&str>,
    ) -> Result<Terminal, tokio_tungstenite::tungstenite::Error> {
        match origin {
            Some(origin) => Self::connect_with(url, &[("origin", origin)]).await,
            None => Self::connect_with(url, &[]).await,
        }
    }

    /// Connects with extra request headers (credentials, Origin).
    pub async fn connect_with(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Terminal, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            let name: tokio_tungstenite::tungstenite::http::HeaderName = name.parse().unwrap();
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        let mut terminal = Terminal { ws, attached: Value::Null, output: Vec::new() };
        match terminal.next().await {
            Event::Control(value) if value["type"] == "attached" => terminal.attached = value,
            other => panic!("expected the attached message first, got {other:?}"),
        }
        Ok(terminal)
    }

    pub fn replay_bytes(&self) -> usize {
        self.attached["replay_bytes"].as_u64().expect("replay_bytes") as usize
    }

    /// The next event (pings are answered by the client library); panics after the deadline.
    pub async fn next(&mut self) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message =
                tokio::time::timeout_at(deadline, self.ws.next()).await.unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for the server; output so far: {:?}",
                        String::from_utf8_lossy(&self.output)
                    )
                });
            match message {
                None => return Event::Closed(None),
                Some(Err(_)) => return Event::Closed(None),
                Some(Ok(Message::Text(text))) => {
                    return Event::Control(serde_json::from_str(&text).expect("control JSON"))
                }
                Some(Ok(Message::Binary(data))) => return Event::Output(data.to_vec()),
                Some(Ok(Message::Close(frame))) => {
                    return Event::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    pub async fn send(&mut self, input: &str) {
        self.ws.send(Message::Binary(input.as_bytes().to_vec().into())).await.expect("send input");
    }

    pub async fn send_control(&mut self, value: Value) {
        self.ws.send(Message::Text(value.to_string().into())).await.expect("send control");
    }

    pub async fn resize(&mut self, cols: u16, rows: u16) {
        self.send_control(json!({"type": "resize", "cols": cols, "rows": rows})).await;
    }

    /// Reads output until it contains `needle`; returns everything read so far.
    pub async fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let needle_bytes = needle.as_bytes();
        // Only the new bytes (and a needle's length before them) need searching.
        let mut searched: usize = 0;
        loop {
            let from = searched.saturating_sub(needle_bytes.len());
            if self.output[from..].windows(needle_bytes.len().max(1)).any(|w| w == needle_bytes) {
                return String::from_utf8_lossy(&self.output).into_owned();
            }
            searched = self.output.len();
            assert!(Instant::now() < deadline, "timed out waiting for {needle:?}");
            match self.next().await {
                Event::Output(data) => self.output.extend(data),
                Event::Control(value) if value["type"] == "error" || value["type"] == "warning" => {
                }
                other => panic!(
                    "waiting for {needle:?}, got {other:?}; output so far: {:?}",
                    String::from_utf8_lossy(&self.output)
                ),
            }
        }
    }

    /// Reads until the next control message, collecting output on the way.
    pub async fn next_control(&mut self) -> Value {
        loop {
            match self.next().await {
                Event::Output(data) => self.output.extend(data),
                Event::Control(value) => return value,
                Event::Closed(code) => {
                    panic!("closed ({code:?}) while waiting for a control message")
                }
            }
        }
    }

    /// Reads until the connection closes; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Event::Output(data) => self.output.extend(data),
                Event::Control(_) => {}
                Event::Closed(code) => return code,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

pub fn code(value: CloseCode) -> u16 {
    value.into()
}

/// Audit rows (newest first) as an admin client sees them, filtered by `action`.
pub async fn audit_rows(admin: &Client, action: &str) -> Vec<Value> {
    let (status, body) = admin.get(&format!("/api/v1/audit?limit=1000&action={action}")).await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

/// Waits until the audit log has a row of `action` for which `matches` holds; returns it.
pub async fn audited(admin: &Client, action: &str, matches: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("an audit row {action}"), || async {
        audit_rows(admin, action).await.into_iter().find(|row| matches(row))
    })
    .await
}

/// The SPEC's error body.
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// The real `kterm` binary, started as a user would, on a port it chooses itself.
pub struct RealServer {
    pub child: std::process::Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl RealServer {
    /// Starts `kterm --config FILE --listen 127.0.0.1:0` with `toml` as the file.
    pub fn start(toml: &str) -> RealServer {
        Self::start_in(tempfile::tempdir().expect("temp dir"), toml)
    }

    pub fn start_in(dir: tempfile::TempDir, toml: &str) -> RealServer {
        use std::io::BufRead;
        let config = dir.path().join("kterm.toml");
        let toml = format!(
            "[state]\npath = {:?}\n[local]\nroot = {:?}\n{toml}",
            dir.path().join("kterm.db"),
            dir.path().join("workspaces")
        );
        std::fs::write(&config, toml).expect("write config");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kterm"))
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn kterm");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let base = loop {
            let line = lines.next().expect("kterm exited before serving").expect("read stderr");
            if let Some(rest) = line.split("serving on ").nth(1) {
                break rest.split_whitespace().next().unwrap_or_default().to_string();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        RealServer { child, base, dir }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// POST /api/v1/sessions with `body`; panics unless it answers a session.
    pub async fn create_session(&self, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/sessions", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST /api/v1/sessions");
        assert_eq!(response.status(), 201);
        response.json().await.expect("a session")
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }

    /// CPU time the server process has used (user + system), in clock ticks (1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // The fields after the command name (which may hold spaces) in parentheses.
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
        field(11) + field(12)
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").trim_start_matches("https://").to_string()
    }

    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
    }

    /// Waits for the process to exit; returns its code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "kterm did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
