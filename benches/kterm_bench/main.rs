//! kterm benchmark: prints figures (it asserts nothing about speed) comparing kterm, driven
//! through its real HTTP API and terminal WebSocket, with a baseline measured in the same run:
//! a raw PTY driven directly in the same process for the local backend, and the `docker` CLI
//! for the Docker backend. The local parts measure the real `kterm` binary as users run it, a
//! separate process (local backend, auth `none` on 127.0.0.1).
//!
//!   cargo bench --bench kterm_bench                 # everything, a few minutes on 2 cores
//!   cargo bench --bench kterm_bench -- echo memory  # only some parts
//!   KTERM_BENCH_QUICK=1 cargo bench --bench kterm_bench
//!
//! Parts (each in its own module):
//!   `throughput` output throughput of `head -c N /dev/zero`, kterm vs raw PTY
//!   `echo`       keystroke echo latency through `bash --norc`, kterm vs raw PTY, p50 to p99.9,
//!                on a quiet machine and beside a CPU-bound `yes > /dev/null` on each core,
//!                with the client's own CPU share
//!   `connect`    POST -> WebSocket -> first prompt byte of `bash -l`, kterm vs spawning it
//!   `memory`     many attached idle sessions: RSS, threads, fds, open rate; what the server
//!                gives back after they close; a graceful stop (close codes, leftover shells)
//!   `docker`     the Docker backend: time until a session is ready (POST -> WebSocket ->
//!                first output byte) for a user's first tab (a new container each sample)
//!                and for a second tab in a running sandbox, with the warm pool off and with
//!                kterm's default pool; vs `docker run --rm … true` and `docker exec … true`.
//!                Needs a Docker daemon and a static /bin/busybox (the image
//!                `kterm-bench-busybox:latest` is built FROM scratch out of it, nothing is
//!                pulled); skipped with the reason printed when either is missing. Every
//!                container it makes carries the label `kterm-bench=<run id>` and is removed at
//!                the end of the part, also when it fails.
//!   `kubernetes` the Kubernetes backend: POST -> first output byte for a warm claim, a cold
//!                pod and a second tab, p50/p99; against the tests' fake API server (needs
//!                root), or a real cluster with KTERM_K8S_TEST_KUBECONFIG (and
//!                KTERM_K8S_TEST_NAMESPACE, KTERM_K8S_TEST_IMAGE); samples as the docker part
//!   `startup`    the real `kterm` binary from exec until /healthz answers (empty pool), its
//!                idle RSS and the binary's size, vs exec of `kterm --version`
//!   `load`       many attached sessions echoing numbered tokens at once for a while, every
//!                byte checked (local backend, the real binary): RSS at peak and after,
//!                fds and threads back; and many users opening two tabs each at once on
//!                Docker: ready-time percentiles, errors, no sandbox shared
//!
//! Environment overrides (defaults in parentheses, quick values after the slash):
//!   KTERM_BENCH_BYTES            bytes per throughput run      (200000000 / 50000000)
//!   KTERM_BENCH_RUNS             throughput runs per side      (3 / 3)
//!   KTERM_BENCH_ECHO_SAMPLES     keystrokes per side           (2000 / 500)
//!   KTERM_BENCH_CONNECT_SAMPLES  connects per side             (30 / 10)
//!   KTERM_BENCH_SESSIONS         idle sessions for memory      (1000 / 200)
//!   KTERM_BENCH_CONCURRENCY      parallel opens for memory     (20)
//!   KTERM_BENCH_MEMORY_OUTPUT    bytes each memory session prints first (0); with a small
//!   KTERM_BENCH_MEMORY_SCROLLBACK (e.g. "1k") the ring wraps and each session has an emulator
//!   KTERM_BENCH_DOCKER_SAMPLES   samples per docker figure     (20 / 5)
//!   KTERM_BENCH_STARTUP_SAMPLES  starts per startup figure     (20 / 5)
//!   KTERM_BENCH_LOAD_SESSIONS    sessions of the local load    (500 / 100)
//!   KTERM_BENCH_LOAD_SECS        seconds they echo for         (60 / 10)
//!   KTERM_BENCH_LOAD_USERS       users of the Docker load      (50 / 10)
//!   KTERM_BENCH_ONLY             comma list of parts (same as the positional filters)
//!   KTERM_BENCH_LOG              tracing filter for the in-process server (warn)
//!   KTERM_BENCH_KTERM            the kterm binary to measure (the bench build of it)
//!
//! The Docker part runs an in-process server on the client's runtime; every other part runs
//! the `kterm` binary as a child process.
//!
//! Modules: `client` (kterm server and WebSocket client), `raw` (raw-PTY helpers), one module
//! per part, `docker_samples` (the docker part's samples and waits) and `docker_cli` (the
//! `docker` command: image, baselines, cleanup by label).

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = std::result::Result<T, BoxError>;

const COLS: u16 = 80;
const ROWS: u16 = 24;
/// Upper bound on any single wait, so that a stall is reported instead of hanging the run.
const STALL: Duration = Duration::from_secs(20);

macro_rules! fail {
    ($($arg:tt)*) => { return Err(format!($($arg)*).into()) };
}

mod client;
mod connect;
mod docker;
mod docker_cli;
mod docker_samples;
mod echo;
mod exec;
// The fake Kubernetes API server of the tests (for the kubernetes part).
#[allow(dead_code, unused_imports)]
#[path = "../../tests/common/kube_fake/mod.rs"]
mod kube_fake;
mod kubernetes;
mod load;
mod memory;
mod raw;
mod startup;
mod throughput;

const PARTS: [&str; 9] =
    ["throughput", "echo", "connect", "memory", "docker", "kubernetes", "startup", "load", "exec"];

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
    docker_samples: usize,
    startup_samples: usize,
    load_sessions: usize,
    load_secs: u64,
    load_users: usize,
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
        let mut parts: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .flat_map(|a| a.split(',').map(str::to_string).collect::<Vec<_>>())
            .collect();
        if let Ok(only) = std::env::var("KTERM_BENCH_ONLY") {
            parts.extend(only.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
        }
        parts.retain(|p| {
            let known = PARTS.contains(&p.as_str());
            if !known {
                eprintln!("warning: unknown part {p:?} ignored (parts: {})", PARTS.join(", "));
            }
            known
        });
        parts.dedup();
        if parts.is_empty() {
            parts = PARTS.iter().map(|s| s.to_string()).collect();
        }
        let pick = |full: usize, quick_value: usize| if quick { quick_value } else { full };
        Opts {
            quick,
            bytes: env_or("KTERM_BENCH_BYTES", if quick { 50_000_000 } else { 200_000_000 }),
            runs: env_or("KTERM_BENCH_RUNS", 3usize).max(1),
            echo_samples: env_or("KTERM_BENCH_ECHO_SAMPLES", pick(2000, 500)).max(1),
            connect_samples: env_or("KTERM_BENCH_CONNECT_SAMPLES", pick(30, 10)).max(1),
            sessions: env_or("KTERM_BENCH_SESSIONS", pick(1000, 200)).max(1),
            concurrency: env_or("KTERM_BENCH_CONCURRENCY", 20usize).max(1),
            docker_samples: env_or("KTERM_BENCH_DOCKER_SAMPLES", pick(20, 5)).max(1),
            startup_samples: env_or("KTERM_BENCH_STARTUP_SAMPLES", pick(20, 5)).max(1),
            load_sessions: env_or("KTERM_BENCH_LOAD_SESSIONS", pick(500, 100)).max(1),
            load_secs: env_or("KTERM_BENCH_LOAD_SECS", if quick { 10 } else { 60 }).max(1),
            load_users: env_or("KTERM_BENCH_LOAD_USERS", pick(50, 10)).max(1),
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

/// `p50/p99` of `values`, one decimal.
fn p50_p99(values: &[f64]) -> String {
    format!("{:.1}/{:.1}", percentile(values, 50.0), percentile(values, 99.0))
}

fn ratio(kterm: f64, base: f64) -> String {
    if base > 0.0 && kterm.is_finite() && base.is_finite() {
        format!("{:.2}x", kterm / base)
    } else {
        "-".into()
    }
}

fn row(label: &str, kterm: String, base: String, note: String) {
    println!("  {label:<24} {kterm:>14} {base:>14}   {note}");
}

/// The table header against the raw-PTY baseline.
fn table_head() {
    table_head_vs("raw pty", "kterm/raw");
}

fn table_head_vs(baseline: &str, ratio: &str) {
    table_head_vs_named("kterm (ws)", baseline, ratio);
}

fn table_head_vs_named(kterm: &str, baseline: &str, ratio: &str) {
    println!("  {:<24} {kterm:>14} {baseline:>14}   {ratio}", "");
}

/// The first bytes of some output, quoted.
fn shown(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes).chars().take(40).collect();
    format!("{text:?}")
}

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------------
// Header and main

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
        "mode: {}{}; kterm runs as a child process (the Docker part: in-process)",
        if opts.quick { "quick (KTERM_BENCH_QUICK)" } else { "full" },
        if opts.parts.len() < PARTS.len() {
            format!(", parts: {}", opts.parts.join(","))
        } else {
            String::new()
        }
    );
    println!();
}

type Part = for<'a> fn(
    &'a Opts,
    &'a Path,
    &'a mut Problems,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Res<()>> + 'a>>;

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
        let parts: [(&str, Part); 9] = [
            ("throughput", |o, t, p| Box::pin(throughput::bench(o, t, p))),
            ("echo", |o, t, p| Box::pin(echo::bench(o, t, p))),
            ("connect", |o, t, p| Box::pin(connect::bench(o, t, p))),
            ("memory", |o, t, p| Box::pin(memory::bench(o, t, p))),
            ("docker", |o, t, p| Box::pin(docker::bench(o, t, p))),
            ("kubernetes", |o, t, p| Box::pin(kubernetes::bench(o, t, p))),
            ("startup", |o, t, p| Box::pin(startup::bench(o, t, p))),
            ("load", |o, t, p| Box::pin(load::bench(o, t, p))),
            ("exec", |o, t, p| Box::pin(exec::bench(o, t, p))),
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
