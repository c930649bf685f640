//! Part 2, keystroke echo latency: one byte in, the same byte back, through `cat` in raw mode.

use std::path::Path;
use std::time::Instant;

use kterm::sandbox::pty;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{
    create_session, delete_session, expect_attached, send_bytes, ws_connect, ws_next,
    ws_read_until, Event, Kterm,
};
use crate::raw::{kill_raw, raw_env, raw_read_until, sh_c};
use crate::{percentile, ratio, row, table_head, Opts, Problems, Res, COLS, ROWS, STALL};

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

pub async fn bench(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
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
