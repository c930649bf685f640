//! The fake cluster's shared state: the object store, the live configuration tests can change
//! (users, rules, delays, missing images, unschedulable namespaces, quotas), the request log,
//! and each pod's runtime (its lifecycle task and sandbox).
//!
//! Invariants: the mutex is never held across an await; a pod has a runtime entry from its
//! create until its DELETED change, and its sandbox (if any) is killed when the entry goes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::options::{AccessRule, Delays, ExecProtocols, FakeOptions, FakeUser, ImageConfig};
use super::sandbox::Sandbox;
use super::store::Store;

/// One API request as the fake saw it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub verb: String,
    /// The resource with its subresource: `pods`, `pods/exec`, `networkpolicies`.
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub user: String,
    pub code: u16,
}

/// A pod's life on the fake node.
pub struct PodRuntime {
    /// Cancelled when the pod is deleted: stops its lifecycle task.
    pub stop: CancellationToken,
    pub sandbox: Option<Arc<Sandbox>>,
}

pub struct State {
    pub store: Store,
    pub users: Vec<FakeUser>,
    pub rules: Vec<AccessRule>,
    pub delays: Delays,
    pub missing_images: BTreeSet<String>,
    /// Namespaces where nothing schedules, with the scheduler's message.
    pub unschedulable: BTreeMap<String, String>,
    pub pod_quota: BTreeMap<String, u32>,
    pub exec_protocols: ExecProtocols,
    pub requests: Vec<RequestRecord>,
    /// By pod UID.
    pub pods: HashMap<String, PodRuntime>,
    pub next_pod_ip: u32,
}

/// What never changes after start.
pub struct Fixed {
    pub base: PathBuf,
    pub node_name: String,
    pub node_labels: BTreeMap<String, String>,
    pub image: ImageConfig,
    pub lose_short_tty_output: Option<std::time::Duration>,
    pub bookmark_interval: std::time::Duration,
    pub port: u16,
    pub runtime_classes: Option<Vec<String>>,
    /// `(namespace, name)` of every ServiceAccount.
    pub service_accounts: Vec<(String, String)>,
}

pub struct Shared {
    state: Mutex<State>,
    /// Woken when something a pending pod waits for changes (schedulability, PVCs, images).
    pub wake: Notify,
    pub fixed: Fixed,
    pub rt: tokio::runtime::Handle,
}

impl Shared {
    pub fn new(
        options: &FakeOptions,
        users: Vec<FakeUser>,
        fixed: Fixed,
        rt: tokio::runtime::Handle,
    ) -> Arc<Shared> {
        let state = State {
            store: Store::new(),
            users,
            rules: options.rules.clone(),
            delays: options.delays,
            missing_images: options.missing_images.iter().cloned().collect(),
            unschedulable: BTreeMap::new(),
            pod_quota: options.pod_quota.clone(),
            exec_protocols: options.exec_protocols,
            requests: Vec::new(),
            pods: HashMap::new(),
            next_pod_ip: 10,
        };
        Arc::new(Shared { state: Mutex::new(state), wake: Notify::new(), fixed, rt })
    }

    /// The state, even after a panic elsewhere poisoned the lock (the data stays consistent:
    /// every update is a single assignment under the lock).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Now, as the API server writes timestamps (`2026-12-01T04:48:27Z`).
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now with microseconds (`eventTime`).
pub fn now_micro() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Five characters as Kubernetes appends to a `generateName` (consonants and digits).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}
