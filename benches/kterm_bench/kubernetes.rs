//! Part 6, the Kubernetes backend: POST -> WebSocket -> first output byte for a warm claim
//! (a pod of the pool with its pre-started shell), a cold pod (pool off: each first tab makes
//! a pod and waits for it to run) and a second tab in a running pod, p50/p99. Against the fake
//! API server of `tests/common/kube_fake` (its pod start paced like the real v1.24 node of the
//! samples, ~0.9 s), or against a real cluster when `KTERM_K8S_TEST_KUBECONFIG` (and
//! `KTERM_K8S_TEST_NAMESPACE`, `KTERM_K8S_TEST_IMAGE`) are set. Every pod it makes is deleted
//! with its session (`sandboxes.idle_timeout = 0s`); the fake's go with it.

use std::path::Path;
use std::time::Duration;

use kterm::config::{BackendKind, HumanDuration, Persistence};

use crate::client::{
    create_session_record, delete_session, drain, first_output, ws_connect, Kterm,
};
use crate::docker_samples::{pool_settled, session_sample, Figures};
use crate::kube_fake::{self, Delays, FakeApiServer, FakeOptions};
use crate::{percentile, row, table_head_vs, Opts, Problems, Res};

/// Where the pods run.
struct Cluster {
    kubeconfig: String,
    namespace: String,
    image: String,
    /// The fake, kept alive for the part (`None` on a real cluster).
    _fake: Option<FakeApiServer>,
}

fn cluster() -> Option<(Cluster, String)> {
    if let Ok(kubeconfig) = std::env::var("KTERM_K8S_TEST_KUBECONFIG") {
        let namespace =
            std::env::var("KTERM_K8S_TEST_NAMESPACE").unwrap_or_else(|_| "kterm".into());
        let image = std::env::var("KTERM_K8S_TEST_IMAGE").unwrap_or_else(|_| "busybox:1.36".into());
        let what = format!("a real cluster ({kubeconfig}, namespace {namespace}, image {image})");
        return Some((Cluster { kubeconfig, namespace, image, _fake: None }, what));
    }
    if let Some(why) = kube_fake::unavailable() {
        println!("skipped: {why} (or set KTERM_K8S_TEST_KUBECONFIG for a real cluster)\n");
        return None;
    }
    // Paced like the recorded node: pod POST -> Running 0.9-1.1 s with the image present.
    let delays = Delays {
        schedule: Duration::from_millis(100),
        kubelet: Duration::from_millis(200),
        start: Duration::from_millis(550),
        ..Delays::default()
    };
    let fake = FakeApiServer::start(FakeOptions { delays, ..FakeOptions::default() });
    let kubeconfig = fake.kubeconfig_path().to_string_lossy().into_owned();
    let what =
        "the fake API server (pods Running ~0.9 s after POST, as on the recorded v1.24 node)";
    let cluster = Cluster {
        kubeconfig,
        namespace: "kterm".into(),
        image: "kterm-sandbox:bench".into(),
        _fake: Some(fake),
    };
    Some((cluster, what.to_string()))
}

async fn start(dir: &Path, cluster: &Cluster, pool: (u32, u32)) -> Res<Kterm> {
    Kterm::start_with(dir, |c| {
        c.backend.kind = BackendKind::Kubernetes;
        c.kubernetes.kubeconfig = cluster.kubeconfig.clone();
        c.kubernetes.namespace = cluster.namespace.clone();
        c.kubernetes.image = cluster.image.clone();
        c.sessions.command = vec!["sh".into()];
        c.sessions.persistence = Persistence::None;
        c.sessions.create_timeout = HumanDuration(Duration::from_secs(180));
        // A cold sample is a user's first and last session: its pod goes with it.
        c.sandboxes.idle_timeout = HumanDuration::secs(0);
        c.sandboxes.idle_timeout = HumanDuration(Duration::ZERO);
        (c.pool.min, c.pool.max) = pool;
    })
    .await
}

pub async fn bench(opts: &Opts, tmp: &Path, problems: &mut Problems) -> Res<()> {
    print!("6. Kubernetes backend: ");
    let Some((cluster, what)) = cluster() else { return Ok(()) };
    let n = opts.docker_samples;
    println!(
        "{what}.\n   {n} samples each after one warm-up, milliseconds: POST /api/v1/sessions -> \
         WebSocket -> first output byte, then DELETE."
    );
    let k = start(&tmp.join("k8s-nopool"), &cluster, (0, 0)).await?;
    session_sample(&k).await?;
    let mut cold = Figures::default();
    for i in 0..n {
        match session_sample(&k).await {
            Ok(s) => cold.kterm(s),
            Err(e) => cold.failed(&format!("kubernetes cold sample {i}"), e, problems)?,
        }
    }
    k.stop().await;

    let k = start(&tmp.join("k8s-pool"), &cluster, (2, 10)).await?;
    pool_settled(&k).await?;
    session_sample(&k).await?;
    let mut warm = Figures::default();
    for i in 0..n {
        pool_settled(&k).await?;
        match session_sample(&k).await {
            Ok(s) => warm.kterm(s),
            Err(e) => warm.failed(&format!("kubernetes warm sample {i}"), e, problems)?,
        }
    }
    // Second tabs while a first session stays open (the pod's spare shell is used).
    let first = create_session_record(&k.http, k.addr).await?;
    let Some(first_id) = first["id"].as_str() else { fail!("no session id in {first}") };
    let mut ws = ws_connect(k.addr, first_id).await?;
    first_output(&mut ws).await?;
    let (done_tx, _done_rx) = tokio::sync::mpsc::unbounded_channel();
    drain(ws, done_tx);
    session_sample(&k).await?;
    let mut tabs = Figures::default();
    for i in 0..n {
        match session_sample(&k).await {
            Ok(s) => tabs.kterm(s),
            Err(e) => tabs.failed(&format!("kubernetes 2nd tab sample {i}"), e, problems)?,
        }
    }
    tabs.check("kubernetes 2nd tab", false, problems);
    delete_session(&k.http, k.addr, first_id).await?;
    k.stop().await;

    table_head_vs("cold pod", "cold/this");
    let cold_p50 = percentile(&cold.total, 50.0);
    for (name, figures) in [("warm claim", &warm), ("2nd tab", &tabs), ("cold pod", &cold)] {
        for (label, p) in [("p50", 50.0), ("p99", 99.0)] {
            let value = percentile(&figures.total, p);
            let times = if value > 0.0 { format!("{:.1}x", cold_p50 / value) } else { "-".into() };
            row(
                &format!("{name} {label} ms"),
                format!("{value:.1}"),
                format!("{cold_p50:.1}"),
                times,
            );
        }
    }
    println!(
        "  goal on a real cluster: warm claim p50 < 15 ms, p99 < 50 ms, 2nd tab the same, \
         >= 20x faster than a cold pod\n"
    );
    Ok(())
}
