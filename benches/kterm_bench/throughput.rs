//! Part 1, output throughput: `head -c N /dev/zero` on a pty, the kterm binary (binary WebSocket
//! frames until `exit`) against a raw PTY master read to end of file by this process.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kterm::sandbox::pty;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{
    create_session, expect_attached, send_bytes, ws_connect, ws_next, Event, Kterm,
};
use crate::raw::{kill_raw, raw_env, sh_c};
use crate::{median, percentile, ratio, row, table_head, Opts, Problems, Res, COLS, ROWS, STALL};

/// The program waits for one line of input (so no output is produced, and none lost, before the
/// client is attached), then writes `bytes` NUL bytes as fast as it can (or, with
/// `KTERM_BENCH_TEXT=1`, lines of text, which terminals do work on).
fn throughput_argv(bytes: u64) -> Vec<String> {
    sh_c(&format!("stty -echo; read _go; {}", source(bytes)))
}

fn source(bytes: u64) -> String {
    if std::env::var("KTERM_BENCH_TEXT").as_deref() == Ok("1") {
        format!("yes 'step 42: compiling module_name v1.2.3 (/src/module_name) in 0.81s' | head -c {bytes}")
    } else {
        format!("exec head -c {bytes} /dev/zero")
    }
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

pub async fn bench(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    let n = opts.bytes;
    println!(
        "1. Output throughput: `{}` on an {COLS}x{ROWS} pty, started by a newline \
         once attached;\n   kterm: newline sent -> `exit` received, counting binary bytes; raw: newline \
         written -> EOF on the master.\n   MB = 10^6 bytes; {} runs each, interleaved; median.",
        source(n),
        opts.runs
    );
    let argv = throughput_argv(n);
    let command: Vec<&str> = argv.iter().map(String::as_str).collect();
    let k = Kterm::spawn(&tmp.join("throughput"), &command, &[]).await?;
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
