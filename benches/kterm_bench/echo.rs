//! Part 2, keystroke echo latency through `bash --norc` (readline echoes each key): the real
//! `kterm` binary (a separate process) against a raw PTY read directly, in the same run,
//! interleaved in blocks; then the same again with a CPU-bound `yes > /dev/null` on each core
//! (normal priority) beside them.
//!
//! The sampling runs on a single-threaded runtime of its own thread, for the raw PTY as for
//! kterm's WebSocket, so the client adds no thread hops of its own; its CPU share is printed to
//! show that it is not the bottleneck.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kterm::sandbox::pty;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{
    create_session, delete_session, expect_attached, own_cpu, proc_cpu, send_bytes, ws_connect,
    ws_next, Event, Kterm, Ws,
};
use crate::raw::{kill_raw, raw_env};
use crate::{percentile, Opts, Problems, Res, COLS, ROWS, STALL};

const ECHO_WARMUP: usize = 50;
/// Samples are taken in this many alternating blocks per side.
const BLOCKS: usize = 4;
/// The ends of bash's default prompt (`bash-5.2$ `, or `bash-5.2# ` for root).
const PROMPTS: [&[u8]; 2] = [b"$ ", b"# "];
const BACKSPACE: u8 = 0x7f;

fn shell() -> Vec<String> {
    vec!["bash".into(), "--norc".into()]
}

/// Samples of one side and the CPU its client (this process) used meanwhile.
#[derive(Default)]
struct Side {
    micros: Vec<f64>,
    wall: f64,
    client_cpu: f64,
    server_cpu: f64,
    odd: usize,
}

/// One keystroke's round trip: a letter out, until it is back. A backspace (unmeasured)
/// follows, so the line stays short and every echo is the same few bytes.
trait Terminal {
    async fn send(&mut self, data: &[u8]) -> Res<()>;
    async fn output(&mut self) -> Res<Vec<u8>>;
}

struct KtermTerminal(Ws);

impl Terminal for KtermTerminal {
    async fn send(&mut self, data: &[u8]) -> Res<()> {
        send_bytes(&mut self.0, data).await
    }
    async fn output(&mut self) -> Res<Vec<u8>> {
        match ws_next(&mut self.0).await? {
            Event::Output(d) => Ok(d.to_vec()),
            Event::Control(v) => fail!("unexpected control message {v}"),
            Event::Closed(c) => fail!("closed during echo test ({c:?})"),
        }
    }
}

struct RawTerminal(pty::PtyMaster, [u8; 4096]);

impl Terminal for RawTerminal {
    async fn send(&mut self, data: &[u8]) -> Res<()> {
        Ok(self.0.write_all(data).await?)
    }
    async fn output(&mut self) -> Res<Vec<u8>> {
        let n = match tokio::time::timeout(STALL, self.0.read(&mut self.1)).await {
            Err(_) => fail!("raw pty: no echo within {STALL:?}"),
            Ok(r) => r?,
        };
        if n == 0 {
            fail!("raw pty: end of file during echo test");
        }
        Ok(self.1[..n].to_vec())
    }
}

async fn until_prompt<T: Terminal>(term: &mut T) -> Res<()> {
    let mut seen = Vec::new();
    while !PROMPTS.iter().any(|p| seen.windows(p.len()).any(|w| w == *p)) {
        seen.extend(term.output().await?);
    }
    Ok(())
}

async fn until<T: Terminal>(term: &mut T, byte: u8) -> Res<Vec<u8>> {
    let mut got = Vec::new();
    while !got.contains(&byte) {
        got.extend(term.output().await?);
    }
    Ok(got)
}

/// `count` keystrokes; each sample in microseconds.
async fn keystrokes<T: Terminal>(
    term: &mut T,
    count: usize,
    server: Option<i32>,
    side: &mut Side,
) -> Res<()> {
    let cpu0 = own_cpu();
    let server0 = server.and_then(proc_cpu);
    let started = Instant::now();
    for i in 0..count {
        let b = b'a' + (i % 26) as u8;
        let sent = Instant::now();
        term.send(&[b]).await?;
        let got = until(term, b).await?;
        side.micros.push(sent.elapsed().as_secs_f64() * 1e6);
        if got != [b] {
            side.odd += 1;
        }
        term.send(&[BACKSPACE]).await?;
        until(term, 0x08).await?;
    }
    side.wall += started.elapsed().as_secs_f64();
    side.client_cpu += own_cpu() - cpu0;
    if let (Some(pid), Some(before)) = (server, server0) {
        side.server_cpu += proc_cpu(pid).unwrap_or(before) - before;
    }
    Ok(())
}

/// Both sides, interleaved in blocks; (kterm, raw).
async fn sample(addr: std::net::SocketAddr, pid: i32, cwd: PathBuf, n: usize) -> Res<(Side, Side)> {
    let http = crate::client::http_client()?;
    let id = create_session(&http, addr).await?;
    let mut ws = ws_connect(addr, &id).await?;
    expect_attached(&mut ws).await?;
    let mut kt = KtermTerminal(ws);
    until_prompt(&mut kt).await?;
    let child = pty::spawn(&shell(), &raw_env(), &cwd, COLS, ROWS)?;
    let mut raw = RawTerminal(child.master.clone(), [0; 4096]);
    until_prompt(&mut raw).await?;
    // Warm-up, not counted.
    keystrokes(&mut kt, ECHO_WARMUP, None, &mut Side::default()).await?;
    keystrokes(&mut raw, ECHO_WARMUP, None, &mut Side::default()).await?;
    let (mut k, mut r) = (Side::default(), Side::default());
    for block in 0..BLOCKS {
        let count = n / BLOCKS + usize::from(block < n % BLOCKS);
        keystrokes(&mut kt, count, Some(pid), &mut k).await?;
        keystrokes(&mut raw, count, None, &mut r).await?;
    }
    let _ = kt.0.close(None).await;
    delete_session(&http, addr, &id).await?;
    kill_raw(&child).await;
    Ok((k, r))
}

/// Runs [`sample`] on a current-thread runtime of its own thread.
fn sample_on_own_thread(
    addr: std::net::SocketAddr,
    pid: i32,
    cwd: PathBuf,
    n: usize,
) -> Res<(Side, Side)> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(sample(addr, pid, cwd, n))
    })
    .join()
    .map_err(|_| "the echo sampling thread panicked")?
}

/// A `yes > /dev/null` per core, at normal priority; killed on drop.
struct CpuLoad(Vec<std::process::Child>);

impl CpuLoad {
    fn start() -> Res<CpuLoad> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut children = Vec::new();
        for _ in 0..cores {
            children.push(
                std::process::Command::new("sh")
                    .args(["-c", "exec yes > /dev/null"])
                    .stdin(std::process::Stdio::null())
                    .spawn()?,
            );
        }
        Ok(CpuLoad(children))
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn print_table(title: &str, k: &Side, r: &Side) {
    println!("  {title}");
    println!(
        "  {:<10} {:>10} {:>10} {:>12} {:>10}",
        "µs", "kterm", "raw pty", "kterm - raw", "kterm/raw"
    );
    for (label, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("max", 100.0)]
    {
        let (a, b) = (percentile(&k.micros, p), percentile(&r.micros, p));
        println!("  {label:<10} {a:>10.0} {b:>10.0} {:>12.0} {:>9.2}x", a - b, a / b);
    }
    let share = |cpu: f64, wall: f64| if wall > 0.0 { 100.0 * cpu / wall } else { f64::NAN };
    let per = |cpu: f64, n: usize| if n > 0 { 1e6 * cpu / n as f64 } else { f64::NAN };
    println!(
        "  client CPU while sampling kterm: {:.0}% of one core ({:.0} µs per keystroke, letter + \
         backspace); kterm server: {:.0}% ({:.0} µs); client on the raw pty: {:.0}%",
        share(k.client_cpu, k.wall),
        per(k.client_cpu, k.micros.len()),
        share(k.server_cpu, k.wall),
        per(k.server_cpu, k.micros.len()),
        share(r.client_cpu, r.wall),
    );
}

pub async fn bench(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    let n = opts.echo_samples;
    println!(
        "2. Keystroke echo latency through `bash --norc` (readline echo): the kterm binary (local \
         backend,\n   auth none, 127.0.0.1) vs a raw PTY read directly, {n} samples each after \
         {ECHO_WARMUP} warm-up keys,\n   interleaved in {BLOCKS} blocks; a sample is: send a \
         letter -> it is back (an unmeasured backspace follows).\n   The client samples on one \
         thread of its own (current-thread runtime). Then again beside a\n   `yes > /dev/null` on \
         each core."
    );
    let k = Kterm::spawn(&tmp.join("echo"), &["bash", "--norc"], &[]).await?;
    let pid = k.pid().ok_or("no server pid")?;
    let cwd = tmp.join("raw-cwd");
    std::fs::create_dir_all(&cwd)?;
    let quiet = tokio::task::block_in_place(|| sample_on_own_thread(k.addr, pid, cwd.clone(), n));
    let loaded = match &quiet {
        Ok(_) => {
            let load = CpuLoad::start()?;
            let result =
                tokio::task::block_in_place(|| sample_on_own_thread(k.addr, pid, cwd.clone(), n));
            drop(load);
            result
        }
        Err(_) => Err("skipped".into()),
    };
    k.stop().await;
    let mut goals = Vec::new();
    match &quiet {
        Ok((kt, raw)) => {
            print_table("quiet (other builders may be using the machine):", kt, raw);
            let d50 = percentile(&kt.micros, 50.0) - percentile(&raw.micros, 50.0);
            let d99 = percentile(&kt.micros, 99.0) - percentile(&raw.micros, 99.0);
            goals.push(format!("p50 within 50 µs of raw: {d50:+.0} µs {}", met(d50 <= 50.0)));
            goals.push(format!("p99 within 100 µs of raw: {d99:+.0} µs {}", met(d99 <= 100.0)));
            if kt.odd > 0 {
                problems
                    .add(format!("echo (kterm): {} keystrokes came back with other bytes", kt.odd));
            }
        }
        Err(e) => problems.add(format!("echo (quiet): {e}")),
    }
    match &loaded {
        Ok((kt, raw)) => {
            print_table("beside a `yes > /dev/null` on each core:", kt, raw);
            let ratio = percentile(&kt.micros, 99.0) / percentile(&raw.micros, 99.0);
            goals.push(format!("loaded p99 within 3x raw: {ratio:.2}x {}", met(ratio <= 3.0)));
        }
        Err(e) => problems.add(format!("echo (loaded): {e}")),
    }
    println!("  goals: {}", goals.join("; "));
    println!();
    Ok(())
}

fn met(ok: bool) -> &'static str {
    if ok {
        "(met)"
    } else {
        "(NOT met)"
    }
}
