//! Part 7, the agent API's exec on Docker: the round trip of `POST /api/v1/sessions/{id}/exec`
//! running `true` (request to the JSON answer with its exit code), next to `docker exec C true`
//! in the same run, alternating, after one warm-up each. Milliseconds.

use std::path::Path;
use std::time::Instant;

use kterm::config::{BackendKind, PullPolicy};

use crate::client::{create_session_record, Kterm};
use crate::docker_cli::{self, Cleanup, IMAGE};
use crate::{p50_p99, percentile, ratio, row, Opts, Problems, Res};

pub async fn bench(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    print!("7. exec round trip (Docker): ");
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
    docker_cli::build_image(&tmp.join("exec-image")).await?;
    let mut cleanup = Cleanup::new();
    let result = measure(opts, tmp, problems, &cleanup, &version).await;
    cleanup.remove_all().await?;
    result
}

async fn measure(
    opts: &Opts,
    tmp: &Path,
    problems: &mut Problems,
    cleanup: &Cleanup,
    version: &str,
) -> Res<()> {
    let n = opts.docker_samples.max(20);
    println!("daemon {version}, {n} samples each, alternating. Milliseconds.");
    let run_id = cleanup.run_id.clone();
    let k = Kterm::start_with(&tmp.join("exec"), |config| {
        config.backend.kind = BackendKind::Docker;
        config.docker.image = IMAGE.into();
        config.docker.pull = PullPolicy::Never;
        config.docker.labels.insert(docker_cli::LABEL.into(), run_id);
        config.sessions.command = Vec::new();
        (config.pool.min, config.pool.max) = (0, 0);
        config.exec.per_minute = 1_000_000;
    })
    .await?;
    let session = create_session_record(&k.http, k.addr).await?;
    let id = session["id"].as_str().unwrap_or_default().to_string();
    let container = session["sandbox_id"].as_str().unwrap_or_default().to_string();
    let url = format!("http://{}/api/v1/sessions/{id}/exec", k.addr);
    let body = serde_json::json!({"argv": ["true"]});
    let one = || async {
        let started = Instant::now();
        let answer: serde_json::Value = k.http.post(&url).json(&body).send().await?.json().await?;
        if answer["exit_code"] != 0 {
            return Err(format!("exec true answered {answer}").into());
        }
        Res::Ok(started.elapsed().as_secs_f64() * 1000.0)
    };
    let exec = ["exec", container.as_str(), "true"];
    one().await?;
    docker_cli::timed(&exec).await?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..n {
        ours.push(one().await?);
        theirs.push(docker_cli::timed(&exec).await?);
    }
    crate::table_head_vs_named("kterm exec", "docker exec", "kterm/docker (p50)");
    let note = ratio(percentile(&ours, 50.0), percentile(&theirs, 50.0));
    row("exec true, p50/p99", p50_p99(&ours), p50_p99(&theirs), note);
    let gap = percentile(&ours, 50.0) - percentile(&theirs, 50.0);
    if gap > 10.0 {
        problems
            .add(format!("exec: p50 {gap:.1} ms above `docker exec` (the goal is within 10 ms)"));
    }
    println!();
    k.stop().await;
    Ok(())
}
