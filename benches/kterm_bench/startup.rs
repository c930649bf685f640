//! Part 6, start-up: the real `kterm` binary from exec until `/healthz` answers 200 (local
//! backend, warm pool off, so an empty pool), on a new state file (migrations included) and on
//! an existing one; its idle RSS once serving; and the binary's size. Baseline in the same run:
//! exec of `kterm --version` until it exits (what starting the process costs at all).
//! Goals (README): serving in under 50 ms, idle RSS under 15 MB, a binary under 15 MB for the
//! release build. The binary measured is the benchmark's build of kterm (profile `bench`: thin
//! LTO, so a little larger than `cargo build --release`'s).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ms_since, p50_p99, percentile, ratio, row};
use crate::{Opts, Problems, Res, STALL};

fn kterm_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kterm"))
}

fn healthz(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = [0u8; 16];
    let n = stream.read(&mut answer).unwrap_or(0);
    answer[..n].starts_with(b"HTTP/1.1 200")
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn spawn(state: &Path, addr: SocketAddr) -> Res<Child> {
    Ok(Command::new(kterm_binary())
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--state")
        .arg(state)
        .env("KTERM_BACKEND__KIND", "local")
        .env("KTERM_POOL__MIN", "0")
        .env("KTERM_POOL__MAX", "0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// One start: ms from exec to the first 200 from /healthz, and the RSS (KiB) half a second
/// later when `measure_rss`.
fn start_once(state: &Path, measure_rss: bool) -> Res<(f64, Option<u64>)> {
    let addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let started = Instant::now();
    let mut child = spawn(state, addr)?;
    let result = loop {
        if healthz(addr) {
            break Ok(ms_since(started));
        }
        if started.elapsed() > STALL {
            break Err(format!("kterm did not serve /healthz within {STALL:?}").into());
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("kterm exited at start: {status}").into());
        }
        std::thread::sleep(Duration::from_micros(500));
    };
    let rss = match (&result, measure_rss) {
        (Ok(_), true) => {
            std::thread::sleep(Duration::from_millis(500));
            vm_rss_kib(child.id())
        }
        _ => None,
    };
    let _ = child.kill();
    let _ = child.wait();
    result.map(|ms| (ms, rss))
}

fn version_once() -> Res<f64> {
    let started = Instant::now();
    let status = Command::new(kterm_binary()).arg("--version").stdout(Stdio::null()).status()?;
    if !status.success() {
        return Err("kterm --version failed".into());
    }
    Ok(ms_since(started))
}

pub async fn bench(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    let samples = opts.startup_samples;
    let dir = tmp.join("startup");
    std::fs::create_dir_all(&dir)?;
    println!("== startup: exec -> /healthz 200 (local backend, empty pool), {samples} starts each");
    // Blocking child processes and polling: off the runtime's workers.
    let measured = tokio::task::spawn_blocking(move || -> Res<_> {
        let mut fresh = Vec::new();
        let mut existing = Vec::new();
        let mut rss = Vec::new();
        let mut baseline = Vec::new();
        let kept = dir.join("kept.db");
        start_once(&kept, false)?; // the state file exists from here on
        for i in 0..samples {
            let (ms, _) = start_once(&dir.join(format!("new-{i}.db")), false)?;
            fresh.push(ms);
            let (ms, kib) = start_once(&kept, true)?;
            existing.push(ms);
            rss.extend(kib);
            baseline.push(version_once()?);
        }
        Ok((fresh, existing, rss, baseline))
    })
    .await
    .map_err(|e| format!("startup part: {e}"))??;
    let (fresh, existing, rss, baseline) = measured;
    println!("  {:<24} {:>14} {:>14}   kterm/--version (p50)", "", "kterm p50/p99", "--version");
    let base = percentile(&baseline, 50.0);
    row(
        "new state file (ms)",
        p50_p99(&fresh),
        p50_p99(&baseline),
        ratio(percentile(&fresh, 50.0), base),
    );
    row(
        "existing state (ms)",
        p50_p99(&existing),
        p50_p99(&baseline),
        ratio(percentile(&existing, 50.0), base),
    );
    let rss_mib: Vec<f64> = rss.iter().map(|k| *k as f64 / 1024.0).collect();
    row("idle RSS (MiB)", format!("{:.1}", percentile(&rss_mib, 50.0)), "-".into(), String::new());
    let size = std::fs::metadata(kterm_binary())?.len() as f64 / 1e6;
    let path = kterm_binary().display().to_string();
    row("binary size (MB)", format!("{size:.1}"), "-".into(), path);
    println!("  goals: serving < 50 ms, idle RSS < 15 MB, binary < 15 MB (release profile)");
    if percentile(&existing, 50.0) > 50.0 {
        problems.add(format!(
            "startup: p50 {:.1} ms to serving (goal < 50 ms)",
            percentile(&existing, 50.0)
        ));
    }
    println!();
    Ok(())
}
