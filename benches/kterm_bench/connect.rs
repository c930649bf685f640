//! Part 3, connect-to-prompt latency of the default shell (`bash -l`): kterm's POST -> WebSocket ->
//! first output byte against spawning `bash -l` on a pty.

use std::path::Path;
use std::time::Instant;

use kterm::sandbox::pty;
use tokio::io::AsyncReadExt;

use crate::client::{create_session, delete_session, first_output, ws_connect, Kterm};
use crate::raw::{argv, kill_raw, raw_env};
use crate::{ms_since, p50_p99, percentile, ratio, row, shown, table_head};
use crate::{Opts, Problems, Res, COLS, ROWS, STALL};

struct ConnectSample {
    total_ms: f64,
    post_ms: f64,
    delete_ms: f64,
    first: Vec<u8>,
}

async fn connect_kterm(k: &Kterm) -> Res<ConnectSample> {
    let started = Instant::now();
    let id = create_session(&k.http, k.addr).await?;
    let post_ms = ms_since(started);
    let mut ws = ws_connect(k.addr, &id).await?;
    let first = first_output(&mut ws).await?;
    let total_ms = ms_since(started);
    let _ = ws.close(None).await;
    let deleting = Instant::now();
    delete_session(&k.http, k.addr, &id).await?;
    let delete_ms = ms_since(deleting);
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
    let ms = ms_since(started);
    kill_raw(&child).await;
    if n == 0 {
        fail!("raw pty: bash -l ended without output");
    }
    Ok((ms, buf[..n].to_vec()))
}

pub async fn bench(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    println!(
        "3. Connect-to-prompt latency: default shell (`bash -l`), {} samples each, alternating.\n   kterm: POST \
         /api/v1/sessions -> WebSocket -> first output byte, then DELETE; raw: spawn `bash -l`\n   on a pty -> \
         first byte, then SIGKILL. Milliseconds.",
        opts.connect_samples
    );
    let k = Kterm::spawn(&tmp.join("connect"), &[], &[]).await?;
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
    row("  of which POST p50/p99", p50_p99(&post), "-".into(), String::new());
    row("  DELETE p50/p99 (after)", p50_p99(&del), "-".into(), String::new());
    println!(
        "  first output: kterm {}  raw {}",
        kfirst.as_deref().map(shown).unwrap_or_default(),
        rfirst.as_deref().map(shown).unwrap_or_default()
    );
    println!();
    Ok(())
}
