//! The Kubernetes backend end to end: the real kterm server (in-process) against the fake
//! Kubernetes API server of `tests/common/kube_fake` (real HTTPS, WebSocket exec, pods as
//! mount namespaces running real shells), driven over REST and WebSocket as a user would.
//!
//! Every test starts its own fake cluster; dropping it (also when a test panics) kills and
//! removes every pod the test made. Skipped (with the reason printed) where the fake cannot
//! run, unless `KTERM_REQUIRE_K8S_FAKE=1`.

mod common;

#[path = "kubernetes/faults.rs"]
mod faults;
#[path = "kubernetes/lifecycle.rs"]
mod lifecycle;
#[path = "kubernetes/pending.rs"]
mod pending;

use std::time::Duration;

use common::kube_fake::{FakeApiServer, FakeOptions, PodInfo};
use common::TestServer;
use kterm::config::{BackendKind, Config, HumanDuration, Persistence};

/// The sandbox image the tests' pods name (the fake runs host processes whatever it is).
pub const IMAGE: &str = "kterm-sandbox:test";

/// A fake cluster with the `kterm` (restricted) and `default` namespaces, or `None` (skipped).
pub fn cluster() -> Option<FakeApiServer> {
    cluster_with(|_| {})
}

pub fn cluster_with(adjust: impl FnOnce(&mut FakeOptions)) -> Option<FakeApiServer> {
    if !common::kube_fake::available() {
        return None;
    }
    let mut options = FakeOptions::default();
    adjust(&mut options);
    Some(FakeApiServer::start(options))
}

/// The config of a kterm on `fake`: the Kubernetes backend, no warm pool, no tmux.
pub fn configure(config: &mut Config, fake: &FakeApiServer) {
    config.backend.kind = BackendKind::Kubernetes;
    config.kubernetes.kubeconfig = fake.kubeconfig_path().to_string_lossy().into_owned();
    config.kubernetes.image = IMAGE.into();
    config.sessions.persistence = Persistence::None;
    config.sessions.create_timeout = HumanDuration(Duration::from_secs(20));
    config.pool.min = 0;
    config.pool.max = 0;
}

pub async fn start(fake: &FakeApiServer, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        configure(c, fake);
        adjust(c);
    })
    .await
}

/// The pods of this kterm (its instance label) that are not being deleted.
pub fn live_pods(fake: &FakeApiServer, server: &TestServer) -> Vec<PodInfo> {
    let instance = server.state().store.instance_id().to_string();
    fake.pods()
        .into_iter()
        .filter(|p| !p.deleting && p.labels.get("kterm.io/instance") == Some(&instance))
        .collect()
}

/// A sandbox id's pod name (`<namespace>.<pod>`).
pub fn pod_of(sandbox_id: &str) -> (String, String) {
    let (ns, name) = sandbox_id.split_once('.').expect("a kubernetes sandbox id");
    (ns.to_string(), name.to_string())
}
