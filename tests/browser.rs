//! The web UI in a real browser: Debian's chromium driven by playwright-core from Node. Each test
//! starts its own in-process server (local backend, its own temporary state) with the config its
//! scenario needs, then runs `node tests/browser/run.mjs <scenario> <base_url> <screenshot>`,
//! which exits 0 when every step of the scenario held. The scenarios themselves live in
//! `tests/browser/scenarios/`; this file only owns the servers and the Node process.
//!
//! Skipped with a printed reason when chromium, Node.js or `assets/node_modules/playwright-core`
//! is missing, unless `KTERM_REQUIRE_BROWSER=1` (CI), where that is a failure. Screenshots land
//! in `<target dir>/browser-screenshots/<scenario>.png`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::TestServer;
use kterm::config::{AddrRange, AuthMode, HumanDuration};

/// One browser at a time: CI machines have two cores, and chromium wants both.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A scenario that runs longer than this has hung; Node is killed and the test fails.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(90);

const LOGIN_USER: &str = "alice";
const LOGIN_PASSWORD: &str = "browser-pass-1";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    std::env::var_os("KTERM_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

/// `true` when chromium and playwright-core are there; panics instead of skipping under
/// KTERM_REQUIRE_BROWSER=1.
fn browser_available() -> bool {
    let playwright = repo().join("assets/node_modules/playwright-core/package.json");
    let missing = if !chromium().is_file() {
        format!(
            "no chromium at {} (apt-get install chromium, or set KTERM_CHROMIUM)",
            chromium().display()
        )
    } else if !std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        "no Node.js (`node` is not on PATH)".to_string()
    } else if !playwright.is_file() {
        "no assets/node_modules/playwright-core (run `npm ci --prefix assets`)".to_string()
    } else {
        return true;
    };
    if std::env::var("KTERM_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("KTERM_REQUIRE_BROWSER=1 but {missing}");
    }
    eprintln!("SKIPPED: {missing}; set KTERM_REQUIRE_BROWSER=1 to fail instead");
    false
}

/// `<target dir>/browser-screenshots/<scenario>.png`; CARGO_TARGET_TMPDIR is `<target dir>/tmp`.
fn screenshot_path(scenario: &str) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap_or(Path::new("target"));
    let dir = target.join("browser-screenshots");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{scenario}.png"))
}

/// Runs one scenario against `server` and fails the test, with Node's output, unless it passes.
/// `env` reaches the scenario (e.g. the credentials it logs in with).
async fn run_scenario(scenario: &str, server: &TestServer, env: &[(&str, &str)]) {
    let screenshot = screenshot_path(scenario);
    let mut node = tokio::process::Command::new("node");
    node.arg(repo().join("tests/browser/run.mjs"))
        .arg(scenario)
        .arg(&server.base)
        .arg(&screenshot)
        .env("KTERM_CHROMIUM", chromium())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a hung scenario's chromium goes down with it.
        .process_group(0)
        .kill_on_drop(true);
    let child = node.spawn().expect("run node (is Node.js installed?)");
    let group = child.id().map(|pid| pid as i32);
    let output = match tokio::time::timeout(SCENARIO_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.expect("wait for node"),
        Err(_) => {
            if let Some(group) = group {
                // SAFETY: kill(2) on the process group of the child this test started.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
            panic!("scenario {scenario} did not finish within {SCENARIO_TIMEOUT:?}; killed it")
        }
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    println!("--- node stdout ({scenario}) ---\n{}", text(&output.stdout));
    println!("--- node stderr ({scenario}) ---\n{}", text(&output.stderr));
    println!("screenshot: {}", screenshot.display());
    assert!(
        output.status.success(),
        "browser scenario {scenario} failed ({}):\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Takes the browser lock and checks the browser is there; `None` means skip.
async fn browser() -> Option<tokio::sync::MutexGuard<'static, ()>> {
    let guard = BROWSER.lock().await;
    browser_available().then_some(guard)
}

/// Runs `scenario` against a fresh server whose test config `adjust` changes.
async fn scenario_with(scenario: &str, adjust: impl FnOnce(&mut kterm::config::Config)) {
    let Some(_browser) = browser().await else { return };
    let server = TestServer::start_with(adjust).await;
    run_scenario(scenario, &server, &[]).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_and_read_back() {
    scenario_with("echo", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_resize_reaches_the_pty() {
    scenario_with("resize", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_survive_a_reload() {
    scenario_with("tabs", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_tree_and_editor() {
    scenario_with("files", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contextual_launch() {
    scenario_with("context", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_reverse_proxy_path() {
    scenario_with("base_path", |c| c.server.public_url = "http://proxy.example/tools/kterm".into())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_workbench_file_tree_tab_names_limits_find_and_save() {
    scenario_with("workbench", |c| c.sessions.max_per_user = 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_a_cut_connection() {
    scenario_with("reconnect", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_window_takes_the_session_over() {
    scenario_with("takeover", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_queries_never_type_into_the_shell() {
    scenario_with("queries", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_screen_program_survives_a_reload_after_the_ring_wrapped() {
    scenario_with("full_screen", |c| c.sessions.scrollback = kterm::config::ByteSize(4096)).await;
}

/// The example dashboard on another origin, listed in `server.frame_ancestors`, embeds kterm
/// behind an authenticating proxy, as Kubeflow does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_in_a_dashboard_behind_an_auth_proxy() {
    let Some(_browser) = browser().await else { return };
    // The dashboard's port is chosen here, so that kterm can list its origin.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let server = TestServer::start_with(|c| {
        c.auth.mode = AuthMode::Proxy;
        c.auth.trusted_proxies = vec![AddrRange::parse("127.0.0.1").expect("an address")];
        c.server.frame_ancestors = vec!["'self'".into(), format!("http://127.0.0.1:{port}")];
    })
    .await;
    let port = port.to_string();
    let env = [
        ("KTERM_TEST_DASHBOARD_PORT", port.as_str()),
        ("KTERM_TEST_PROXY_USER", "alice@example.com"),
        ("KTERM_TEST_PROXY_HEADER", "kubeflow-userid"),
    ];
    run_scenario("embed", &server, &env).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_logout() {
    let Some(_browser) = browser().await else { return };
    let server = TestServer::start_with(|c| c.auth.mode = AuthMode::Local).await;
    kterm::auth::users::add(&server.state().store, LOGIN_USER, LOGIN_PASSWORD)
        .await
        .expect("user added");
    let env = [("KTERM_TEST_USER", LOGIN_USER), ("KTERM_TEST_PASSWORD", LOGIN_PASSWORD)];
    run_scenario("login", &server, &env).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banner_before_max_lifetime() {
    scenario_with("banner_lifetime", |c| {
        c.sessions.max_lifetime = HumanDuration::secs(30);
        c.sessions.warn_before = HumanDuration::secs(25);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banner_before_idle_timeout_and_keep_alive() {
    scenario_with("banner_idle", |c| {
        c.sessions.idle_when_attached = true;
        c.sessions.idle_timeout = HumanDuration::secs(8);
        c.sessions.warn_before = HumanDuration::secs(6);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_in_the_top_bar_the_close_dialog_and_end_sandbox() {
    scenario_with("sandbox", |c| {
        c.sandboxes.idle_timeout = HumanDuration::secs(600);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_panel_recording_playback_and_the_audit_view() {
    let Some(_browser) = browser().await else { return };
    const ADMIN_TOKEN: &str = "browser-admin-token-1";
    const USER_TOKEN: &str = "browser-user-token-1";
    let server = TestServer::start_with(|c| {
        common::token_auth(c, &[("alice", ADMIN_TOKEN), ("bob", USER_TOKEN)], &["alice"]);
        c.recording.enabled = true;
    })
    .await;
    let env = [("KTERM_TEST_ADMIN_TOKEN", ADMIN_TOKEN), ("KTERM_TEST_USER_TOKEN", USER_TOKEN)];
    run_scenario("recordings", &server, &env).await;
    server.stop().await;
}
