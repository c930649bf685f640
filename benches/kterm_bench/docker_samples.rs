//! Samples for the docker part: one session made and ended through kterm's API, the figures
//! they add up to, and waits on the daemon (a container gone) and on kterm's warm pool.

use std::time::{Duration, Instant};

use crate::client::{create_session_record, delete_session, first_output, ws_connect, Kterm};
use crate::docker_cli::Cleanup;
use crate::{ms_since, p50_p99, percentile, ratio, row, BoxError, Problems, Res};

/// One session made and ended through kterm's API.
pub struct Sample {
    /// POST -> first output byte on the WebSocket.
    pub total_ms: f64,
    pub post_ms: f64,
    pub delete_ms: f64,
    pub sandbox: String,
    pub first: Vec<u8>,
}

/// POST -> WebSocket -> first output byte, then close and DELETE.
pub async fn session_sample(k: &Kterm) -> Res<Sample> {
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

/// One figure's samples, kterm's and the CLI baseline's, and what was seen on the way.
#[derive(Default)]
pub struct Figures {
    pub total: Vec<f64>,
    pub post: Vec<f64>,
    pub delete: Vec<f64>,
    pub baseline: Vec<f64>,
    pub sandboxes: Vec<String>,
    pub failures: usize,
    /// DELETEs after which the container was still listed, and the longest wait until gone.
    pub late: usize,
    pub late_max: Duration,
}

impl Figures {
    pub fn kterm(&mut self, s: Sample) {
        self.total.push(s.total_ms);
        self.post.push(s.post_ms);
        self.delete.push(s.delete_ms);
        self.sandboxes.push(s.sandbox);
    }

    /// Records a failed sample; gives up after a few.
    pub fn failed(&mut self, what: &str, e: BoxError, problems: &mut Problems) -> Res<()> {
        problems.add(format!("docker {what}: {e}"));
        self.failures += 1;
        if self.failures >= 3 {
            fail!("giving up after {} failed samples ({what})", self.failures);
        }
        Ok(())
    }

    /// What [`gone`] said after a DELETE.
    pub fn gone_after(&mut self, waited: Option<Duration>) {
        if let Some(waited) = waited {
            self.late += 1;
            self.late_max = self.late_max.max(waited);
        }
    }

    pub fn distinct_sandboxes(&self) -> usize {
        let mut ids = self.sandboxes.clone();
        ids.sort();
        ids.dedup();
        ids.len()
    }

    pub fn print(&self, name: &str, vs: &str) {
        for (label, p) in [("p50", 50.0), ("p99", 99.0)] {
            let (a, b) = (percentile(&self.total, p), percentile(&self.baseline, p));
            let label = format!("{name} {label} ms (vs {vs})");
            row(&label, format!("{a:.1}"), format!("{b:.1}"), ratio(a, b));
        }
        row("  of which POST p50/p99", p50_p99(&self.post), "-".into(), String::new());
        row("  DELETE p50/p99 (after)", p50_p99(&self.delete), "-".into(), String::new());
    }

    /// Problems with the containers behind these samples: late removals, and whether every
    /// sample had its own sandbox (`fresh`) or all shared one.
    pub fn check(&self, what: &str, fresh: bool, problems: &mut Problems) {
        let (n, distinct) = (self.sandboxes.len(), self.distinct_sandboxes());
        if self.late > 0 {
            problems.add(format!(
                "docker {what}: after {} of {n} DELETEs that ended a sandbox's last session its \
                 container was still listed (gone up to {:.0} ms later)",
                self.late,
                self.late_max.as_secs_f64() * 1e3
            ));
        }
        if fresh && distinct != n {
            problems.add(format!("docker {what}: {n} samples ran in only {distinct} sandboxes"));
        }
        if !fresh && distinct > 1 {
            problems.add(format!("docker {what}: one user's {n} tabs ran in {distinct} sandboxes"));
        }
    }
}

/// Waits (up to 10 s) until container `name` (an ID) is gone, or (`None`) until kterm has no
/// container of this run left; how long that took beyond the first look, or an error if they
/// stay.
pub async fn gone(cleanup: &Cleanup, name: Option<&str>) -> Res<Option<Duration>> {
    let started = Instant::now();
    let mut waited = false;
    loop {
        let left = cleanup.containers(true).await?;
        let there = match name {
            Some(name) => left.iter().filter(|c| c.as_str() == name).count(),
            None => left.len(),
        };
        if there == 0 {
            return Ok(waited.then(|| started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(10) {
            fail!("{there} kterm container(s) still there 10s after the last session's DELETE");
        }
        waited = true;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /api/v1/pool`.
pub async fn pool_status(k: &Kterm) -> Res<serde_json::Value> {
    let response = k.http.get(format!("http://{}/api/v1/pool", k.addr)).send().await?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        fail!("GET /api/v1/pool answered {status}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// Waits (up to 60 s) until the pool is quiet: at least one warm sandbox, none being made.
pub async fn pool_settled(k: &Kterm) -> Res<serde_json::Value> {
    let started = Instant::now();
    loop {
        let status = pool_status(k).await?;
        if status["warm"].as_u64().unwrap_or(0) >= 1 && status["creating"].as_u64() == Some(0) {
            return Ok(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            fail!("the warm pool did not settle within 60s: {status}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
