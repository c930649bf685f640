//! Part 5, the Docker backend: how long until a session is ready when its container is new (cold),
//! and for a second tab in a running sandbox, against the `docker` CLI doing the least it can
//! (`docker run --rm … true`, `docker exec … true`) in the same run.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use kterm::config::{BackendKind, PullPolicy};

use crate::client::Kterm;
use crate::client::{create_session_record, delete_session, drain, first_output, ws_connect};
use crate::docker_cli::{self, Cleanup, IMAGE};
use crate::{ms_since, p50_p99, percentile, ratio, row, shown, table_head_vs};
use crate::{Opts, Problems, Res};

/// One session made and ended through kterm's API.
struct Sample {
    /// POST -> first output byte on the WebSocket.
    total_ms: f64,
    post_ms: f64,
    delete_ms: f64,
    sandbox: String,
    first: Vec<u8>,
}

/// POST -> WebSocket -> first output byte, then close and DELETE.
async fn session_sample(k: &Kterm) -> Res<Sample> {
    let started = Instant::now();
    let record = create_session_record(&k.http, k.addr).await?;
    let post_ms = ms_since(started);
    let (Some(id), Some(sandbox)) = (record["id"].as_str(), record["sandbox_id"].as_str()) else {
        fail!("POST /api/v1/sessions: no id or sandbox_id in {record}");
    };
    let mut ws = ws_connect(k.addr, id).await?;
    let first = first_output(&mut ws).await?;
    let total_ms = ms_since(started);
    let _ = ws.close(None).await;
    let deleting = Instant::now();
    delete_session(&k.http, k.addr, id).await?;
    let delete_ms = ms_since(deleting);
    Ok(Sample { total_ms, post_ms, delete_ms, sandbox: sandbox.to_string(), first: first.to_vec() })
}

/// Per-figure samples, kterm's and the CLI baseline's.
#[derive(Default)]
struct Figures {
    total: Vec<f64>,
    post: Vec<f64>,
    delete: Vec<f64>,
    baseline: Vec<f64>,
    failures: usize,
}

impl Figures {
    fn kterm(&mut self, s: &Sample) {
        self.total.push(s.total_ms);
        self.post.push(s.post_ms);
        self.delete.push(s.delete_ms);
    }

    /// Records a failed sample; gives up after a few.
    fn failed(&mut self, what: &str, e: crate::BoxError, problems: &mut Problems) -> Res<()> {
        problems.add(format!("docker {what}: {e}"));
        self.failures += 1;
        if self.failures >= 3 {
            fail!("giving up after {} failed {what} samples", self.failures);
        }
        Ok(())
    }

    fn print(&self, name: &str, vs: &str) {
        for (label, p) in [("p50", 50.0), ("p99", 99.0)] {
            let (a, b) = (percentile(&self.total, p), percentile(&self.baseline, p));
            row(&format!("{name} {label} ms (vs {vs})"), format!("{a:.1}"), format!("{b:.1}"), {
                ratio(a, b)
            });
        }
        row("  of which POST p50/p99", p50_p99(&self.post), "-".into(), String::new());
        row("  DELETE p50/p99 (after)", p50_p99(&self.delete), "-".into(), String::new());
    }
}

/// Waits (up to 10 s) until kterm has no container of this run left; how long that took
/// after the DELETE had returned, or an error if they stay.
async fn none_left(cleanup: &Cleanup) -> Res<Option<Duration>> {
    let started = Instant::now();
    let mut waited = false;
    loop {
        let left = cleanup.containers(true).await?;
        if left.is_empty() {
            return Ok(waited.then(|| started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(10) {
            fail!(
                "{} kterm container(s) still there 10s after the last session's DELETE",
                left.len()
            );
        }
        waited = true;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn bench(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    print!("5. Docker backend (kterm's default docker settings): ");
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
    // Everything this run made goes, whatever happened; kterm should have removed its own.
    let kterm_left = cleanup.containers(true).await.map(|c| c.len()).unwrap_or(0);
    let removed = cleanup.remove_all().await?;
    if result.is_ok() && kterm_left > 0 {
        problems.add(format!(
            "docker: {kterm_left} kterm container(s) left after all sessions were deleted"
        ));
    }
    println!(
        "  containers labelled {} removed at the end: {removed} (kterm's: {kterm_left})\n",
        cleanup.label()
    );
    result
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
        "daemon {version}, image\n   {IMAGE} (static busybox FROM scratch, built in \
         {build_ms:.0} ms). {n} samples each, alternating\n   with the baseline, after one warm-up \
         each. Milliseconds.\n   cold: POST /api/v1/sessions (new container) -> WebSocket -> first \
         output byte, then DELETE\n   (the user's last session, so the container goes); vs \
         `docker run --rm --network none IMAGE true`.\n   2nd tab: the same while a first session \
         stays open (its container is reused); vs\n   `docker exec CONTAINER true` into a running \
         container."
    );
    let label = cleanup.label();
    let (key, value) = label.split_once('=').expect("label has a =");
    let k = Kterm::start_with(&tmp.join("docker"), |config| {
        config.backend.kind = BackendKind::Docker;
        config.docker.image = IMAGE.into();
        config.docker.pull = PullPolicy::Never;
        config.docker.labels.insert(key.into(), value.into());
        config.sessions.command = Vec::new();
        config.sessions.max_per_user = 50;
    })
    .await?;
    let run = ["run", "--rm", "--network", "none", "--label", &label, IMAGE, "true"];

    // Cold: every sample's DELETE must take the container with it.
    let mut cold = Figures::default();
    let warm_kterm = session_sample(&k).await?;
    none_left(cleanup).await?;
    let warm_run = docker_cli::timed(&run).await?;
    let mut sandboxes = HashSet::new();
    let (mut late, mut late_max) = (0, Duration::ZERO);
    for i in 0..n {
        match session_sample(&k).await {
            Ok(s) => {
                cold.kterm(&s);
                sandboxes.insert(s.sandbox);
            }
            Err(e) => cold.failed(&format!("cold sample {i}"), e, problems)?,
        }
        if let Some(after) = none_left(cleanup).await? {
            late += 1;
            late_max = late_max.max(after);
        }
        cold.baseline.push(docker_cli::timed(&run).await?);
    }
    if late > 0 {
        problems.add(format!(
            "docker: after {late} of {n} DELETEs of a user's last session the container was still \
             listed (gone up to {:.0} ms later)",
            late_max.as_secs_f64() * 1e3
        ));
    }
    if sandboxes.len() != cold.total.len() {
        problems.add(format!(
            "docker: {} cold samples ran in only {} distinct sandboxes",
            cold.total.len(),
            sandboxes.len()
        ));
    }

    // Second tab: a first session stays (attached, read in the background).
    let mut tab = Figures::default();
    let first = create_session_record(&k.http, k.addr).await?;
    let (Some(first_id), Some(sandbox)) = (first["id"].as_str(), first["sandbox_id"].as_str())
    else {
        fail!("POST /api/v1/sessions: no id or sandbox_id in {first}");
    };
    let mut ws = ws_connect(k.addr, first_id).await?;
    first_output(&mut ws).await?;
    let (done_tx, _done_rx) = tokio::sync::mpsc::unbounded_channel();
    drain(ws, done_tx);
    let exec_name = format!("kterm-bench-{}-exec", cleanup.run_id);
    let idle = ["run", "-d", "--network", "none", "--label", &label, "--name", &exec_name];
    docker_cli::docker(&[&idle[..], &[IMAGE, "sleep", "3600"]].concat()).await?;
    let exec = ["exec", exec_name.as_str(), "true"];
    session_sample(&k).await?;
    docker_cli::timed(&exec).await?;
    let mut elsewhere = 0;
    for i in 0..n {
        match session_sample(&k).await {
            Ok(s) => {
                elsewhere += usize::from(s.sandbox != sandbox);
                tab.kterm(&s);
            }
            Err(e) => tab.failed(&format!("2nd-tab sample {i}"), e, problems)?,
        }
        tab.baseline.push(docker_cli::timed(&exec).await?);
    }
    if elsewhere > 0 {
        problems.add(format!("docker: {elsewhere} of {n} second tabs got another sandbox"));
    }
    let kept = cleanup.containers(true).await?.len();
    if kept != 1 {
        problems.add(format!("docker: {kept} kterm containers while one user had one session"));
    }
    delete_session(&k.http, k.addr, first_id).await?;
    none_left(cleanup).await?;
    k.stop().await;

    table_head_vs("docker CLI", "kterm/docker");
    cold.print("cold", "run");
    tab.print("2nd tab", "exec");
    row(
        "first cold, unwarmed",
        format!("{:.1}", warm_kterm.total_ms),
        format!("{warm_run:.1}"),
        "(kterm: POST incl. image check)".into(),
    );
    println!("  first output: kterm {} (ash's banner, then its prompt)", shown(&warm_kterm.first));
    println!(
        "  {} distinct sandboxes in {} cold samples; no kterm container left after each DELETE{}",
        sandboxes.len(),
        cold.total.len(),
        if late > 0 { format!(" (in {late} cases only later)") } else { String::new() }
    );
    Ok(())
}
