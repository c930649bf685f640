//! Tests of the fake Kubernetes API server itself (tests/common/kube_fake), with a real
//! `kube::Client`.

mod common;

use common::kube_fake::{FakeApiServer, FakeOptions};

#[tokio::test]
async fn starts() {
    let fake = FakeApiServer::start(FakeOptions::default());
    assert!(fake.kubeconfig_path().exists());
}
