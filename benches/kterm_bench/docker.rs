//! Part 5, the Docker backend: how long until a session is ready for a user with no sandbox
//! yet, and for a second tab in a running sandbox, against the `docker` CLI doing the least it
//! can (`docker run --rm … true`, `docker exec … true`) in the same run. Twice: with the warm
//! pool off (`pool.max = 0`: every first tab makes and starts a container) and with kterm's
//! default pool (first tabs claim a pre-started sandbox, tabs use a pre-started spare shell).

use std::path::Path;

use kterm::config::{BackendKind, PullPolicy};

use crate::client::Kterm;
use crate::client::{create_session_record, delete_session, drain, first_output, ws_connect};
use crate::docker_cli::{self, Cleanup, IMAGE};
use crate::docker_samples::{gone, pool_settled, pool_status, session_sample, Figures, Sample};
use crate::{row, shown, table_head_vs, Opts, Problems, Res};

pub async fn bench(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    print!("5. Docker backend: ");
    let version = match docker_cli::daemon_version().await {
        Ok(v) => v,
        Err(why) => {
            println!("skipped: no Docker daemon answers ({why})\n");
            return Ok(());
        }
    };
    if let Some(why) = docker_cli::busybox_missing() {
        println!("skipped: cannot build the sandbox image: {why}\n");
        return Ok(());
    }
    let build_ms = docker_cli::build_image(&tmp.join("docker-image")).await?;
    let mut cleanup = Cleanup::new();
    let result = measure(opts, tmp, problems, &cleanup, &version, build_ms).await;
    // Everything this run made goes, whatever happened (the guard's Drop also would).
    let removed = cleanup.remove_all().await?;
    println!(
        "  containers labelled {} removed at the end: {removed} (the warm pool's and the exec \
         baseline's)\n",
        cleanup.label()
    );
    result
}

/// A kterm on the Docker backend with the bench's image and label.
async fn start(
    dir: &Path,
    cleanup: &Cleanup,
    adjust: impl FnOnce(&mut kterm::Config),
) -> Res<Kterm> {
    let run_id = cleanup.run_id.clone();
    Kterm::start_with(dir, |config| {
        config.backend.kind = BackendKind::Docker;
        config.docker.image = IMAGE.into();
        config.docker.pull = PullPolicy::Never;
        config.docker.labels.insert(docker_cli::LABEL.into(), run_id);
        config.sessions.command = Vec::new();
        config.sessions.max_per_user = 50;
        config.sessions.create_per_minute = 1_000_000;
        config.sessions.max_sandboxes = 100_000;
        // A cold sample is a user's first and last session: its container goes with it.
        config.sandboxes.idle_timeout = kterm::config::HumanDuration::secs(0);
        adjust(config);
    })
    .await
}

async fn measure(
    opts: &Opts,
    tmp: &Path,
    problems: &mut Problems,
    cleanup: &Cleanup,
    version: &str,
    build_ms: f64,
) -> Res<()> {
    let n = opts.docker_samples;
    println!(
        "daemon {version}, image {IMAGE}\n   (static busybox FROM scratch, built in \
         {build_ms:.0} ms), kterm's default docker settings. {n} samples each,\n   alternating \
         with the baseline, after one warm-up each. Milliseconds.\n   cold: POST \
         /api/v1/sessions -> WebSocket -> first output byte, then DELETE (the user's last\n   \
         session, so the container goes); vs `docker run --rm --network none IMAGE true`.\n   \
         2nd tab: the same while a first session stays open in the sandbox; vs `docker exec \
         CONTAINER true`.\n   With the warm pool (default: pool.min 2, max 10) each sample waits \
         for the pool to be quiet."
    );
    let label = cleanup.label();
    let run = ["run", "--rm", "--network", "none", "--label", &label, IMAGE, "true"];
    let exec_name = format!("kterm-bench-{}-exec", cleanup.run_id);
    let idle = ["run", "-d", "--network", "none", "--label", &label, "--name", &exec_name];
    docker_cli::docker(&[&idle[..], &[IMAGE, "sleep", "3600"]].concat()).await?;
    let exec = ["exec", exec_name.as_str(), "true"];

    // Without a pool: every first tab makes a container, and its DELETE removes it.
    let k =
        start(&tmp.join("docker-nopool"), cleanup, |c| (c.pool.min, c.pool.max) = (0, 0)).await?;
    let (warm, warm_run) = (session_sample(&k).await?, docker_cli::timed(&run).await?);
    gone(cleanup, None).await?;
    let mut cold = Figures::default();
    for i in 0..n {
        match session_sample(&k).await {
            Ok(s) => cold.kterm(s),
            Err(e) => cold.failed(&format!("cold sample {i}"), e, problems)?,
        }
        cold.gone_after(gone(cleanup, None).await?);
        cold.baseline.push(docker_cli::timed(&run).await?);
    }
    cold.check("cold, pool off", true, problems);
    let tab = second_tabs(&k, n, cleanup, &exec, problems, "2nd tab, pool off").await?;
    k.stop().await;

    // kterm's default pool.
    let k = start(&tmp.join("docker-pool"), cleanup, |_| {}).await?;
    pool_settled(&k).await?;
    session_sample(&k).await?;
    docker_cli::timed(&run).await?;
    let before = pool_settled(&k).await?;
    let mut pooled = Figures::default();
    for i in 0..n {
        pool_settled(&k).await?;
        match session_sample(&k).await {
            Ok(s) => {
                pooled.gone_after(gone(cleanup, Some(&s.sandbox)).await?);
                pooled.kterm(s);
            }
            Err(e) => pooled.failed(&format!("pooled sample {i}"), e, problems)?,
        }
        pooled.baseline.push(docker_cli::timed(&run).await?);
    }
    let after = pool_status(&k).await?;
    pooled.check("first tab, pool on", true, problems);
    let count = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap_or(0);
    let (hits, misses) = (
        count(&after, "hits").saturating_sub(count(&before, "hits")),
        count(&after, "misses").saturating_sub(count(&before, "misses")),
    );
    if misses > 0 {
        problems.add(format!(
            "docker pool: {misses} of {n} first tabs missed the pool although it reported a \
             warm sandbox just before"
        ));
    }
    let pooled_tab = second_tabs(&k, n, cleanup, &exec, problems, "2nd tab, pool on").await?;
    pool_settled(&k).await?;
    let first_pooled = session_sample(&k).await?;
    k.stop().await;

    table_head_vs("docker CLI", "kterm/docker");
    println!("  pool off (pool.max = 0)");
    cold.print("cold", "run");
    tab.print("2nd tab", "exec");
    row(
        "first cold, unwarmed",
        format!("{:.1}", warm.total_ms),
        format!("{warm_run:.1}"),
        "(kterm: its first Docker call and image check)".into(),
    );
    println!("  default warm pool (min {}, max {})", count(&after, "min"), count(&after, "max"));
    pooled.print("new user", "run");
    pooled_tab.print("2nd tab", "exec");
    println!("  first output: pool off {}", shown(&warm.first));
    println!("                pool on  {}", shown(&first_pooled.first));
    println!(
        "  pool: {hits} hits, {misses} misses in {n} first tabs; {} warm, target {} at the end",
        count(&after, "warm"),
        count(&after, "target")
    );
    for (what, f) in [("cold", &cold), ("pool on", &pooled)] {
        println!(
            "  {what}: {} sandboxes in {} samples; DELETE left no container behind{}",
            f.distinct_sandboxes(),
            f.sandboxes.len(),
            if f.late > 0 { format!(" (in {} cases only later)", f.late) } else { String::new() }
        );
    }
    Ok(())
}

/// Tabs opened (and deleted) while a first session stays open in the user's sandbox.
async fn second_tabs(
    k: &Kterm,
    n: usize,
    cleanup: &Cleanup,
    exec: &[&str],
    problems: &mut Problems,
    what: &str,
) -> Res<Figures> {
    let first = create_session_record(&k.http, k.addr).await?;
    let (Some(first_id), Some(sandbox)) = (first["id"].as_str(), first["sandbox_id"].as_str())
    else {
        fail!("POST /api/v1/sessions: no id or sandbox_id in {first}");
    };
    let mut ws = ws_connect(k.addr, first_id).await?;
    first_output(&mut ws).await?;
    // Read in the background (answers pings) while the first tab stays open.
    let (done_tx, _done_rx) = tokio::sync::mpsc::unbounded_channel();
    drain(ws, done_tx);
    let warm: Sample = session_sample(k).await?;
    docker_cli::timed(exec).await?;
    let mut tabs = Figures::default();
    tabs.sandboxes.push(warm.sandbox);
    for i in 0..n {
        match session_sample(k).await {
            Ok(s) => tabs.kterm(s),
            Err(e) => tabs.failed(&format!("{what} sample {i}"), e, problems)?,
        }
        tabs.baseline.push(docker_cli::timed(exec).await?);
    }
    tabs.sandboxes.push(sandbox.to_string());
    tabs.check(what, false, problems);
    if !cleanup.containers(true).await?.iter().any(|c| c == sandbox) {
        problems.add(format!("docker {what}: the user's sandbox went while a session was open"));
    }
    delete_session(&k.http, k.addr, first_id).await?;
    tabs.gone_after(gone(cleanup, Some(sandbox)).await?);
    if tabs.late > 0 {
        problems.add(format!("docker {what}: the sandbox was still listed after the DELETE"));
    }
    Ok(tabs)
}
