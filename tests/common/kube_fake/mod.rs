//! A fake Kubernetes API server for tests: real HTTPS and WebSocket on 127.0.0.1, answering as
//! the recorded v1.24 exchanges in `k8s-api-samples/` do, with pods that go through Pending to
//! Running on their own schedule and execs that run real local processes, each pod in its own
//! mount namespace with its own `/tmp`, `/home/user` and `/home/user/workspace`.
//!
//! ```ignore
//! let fake = FakeApiServer::start(FakeOptions::default());
//! let config = kube::Config::from_custom_kubeconfig(
//!     kube::config::Kubeconfig::read_from(fake.kubeconfig_path())?, &Default::default()).await?;
//! let client = kube::Client::try_from(config)?;
//! ```
//!
//! The handle owns everything it starts: its runtime, listener, pods' processes and
//! directories; dropping it (even while a test panics) kills and removes them all. Needs root
//! (mount namespaces) and util-linux's `unshare`, `nsenter` and `setpriv`.

mod auth;
mod discovery;
mod events;
mod exec;
mod images;
mod lifecycle;
mod options;
mod patch;
mod pod_defaults;
mod pod_status;
mod pods;
mod pss;
mod respond;
mod rest;
mod route;
mod sandbox;
mod selector;
mod server;
mod state;
mod store;
mod termination;
mod tls;
mod validate;
mod watch;

// Not every test binary uses every name.
#[allow(unused_imports)]
pub use exec::{status_json, Outcome};
#[allow(unused_imports)]
pub use options::{
    AccessRule, Decision, Delays, ExecProtocols, FakeOptions, FakeUser, ImageConfig, NamespaceSpec,
    Subject, ADMIN_TOKEN, ADMIN_USER,
};
pub use state::RequestRecord;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use lifecycle::PodKey;
use server::Epoch;
use state::{Fixed, Shared};
use store::Kind;

/// What the scheduler says when a namespace is made unschedulable without a message.
pub const DEFAULT_UNSCHEDULABLE: &str =
    "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";

/// A pod as tests see it.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub phase: String,
    pub labels: BTreeMap<String, String>,
    pub spec: Value,
    pub deleting: bool,
}

pub struct FakeApiServer {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    epoch: Mutex<Option<Epoch>>,
    tls: Arc<rustls::ServerConfig>,
    ca_pem: String,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

/// `true` when the fake can run here; otherwise prints why (`SKIPPED: ...`) and returns false,
/// or panics under `KTERM_REQUIRE_K8S_FAKE=1` (CI sets it).
pub fn available() -> bool {
    let Some(why) = unavailable() else { return true };
    if std::env::var("KTERM_REQUIRE_K8S_FAKE").as_deref() == Ok("1") {
        panic!("KTERM_REQUIRE_K8S_FAKE=1 but {why}");
    }
    eprintln!("SKIPPED: {why}; set KTERM_REQUIRE_K8S_FAKE=1 to fail instead");
    false
}

/// Why the fake cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "the fake Kubernetes API server needs root (pods are mount namespaces)".into(),
        );
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for tool in ["unshare", "nsenter", "setpriv", "mount", "env", "sleep"] {
        if !path.split(':').any(|d| Path::new(d).join(tool).is_file()) {
            return Some(format!(
                "the fake Kubernetes API server needs `{tool}` (util-linux/coreutils)"
            ));
        }
    }
    None
}

impl FakeApiServer {
    /// Starts the fake on a free port of 127.0.0.1. Panics if it cannot (see [`unavailable`]).
    pub fn start(options: FakeOptions) -> FakeApiServer {
        if let Some(reason) = unavailable() {
            panic!("{reason}");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kube-fake")
            .enable_all()
            .build()
            .expect("the fake API server's runtime starts");
        // Not under /tmp or /home: pods bind their own directories over those.
        let dir = tempfile::Builder::new()
            .prefix("kube-fake-")
            .tempdir_in("/var/tmp")
            .expect("a temporary directory for the fake cluster in /var/tmp");
        let pki = tls::generate().expect("the fake cluster's certificates");
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let addr = listener.local_addr().expect("the fake API server's address");
        let mut users = vec![FakeUser::new(ADMIN_TOKEN, ADMIN_USER, &[auth::MASTERS])];
        users.extend(options.users.iter().cloned());
        let fixed = Fixed {
            base: dir.path().to_path_buf(),
            node_name: options.node_name.clone(),
            node_labels: options.node_labels.clone(),
            image: options.image.clone(),
            lose_short_tty_output: options.lose_short_tty_output,
            bookmark_interval: options.bookmark_interval,
            port: addr.port(),
            runtime_classes: options.runtime_classes.clone(),
            service_accounts: options
                .namespaces
                .iter()
                .flat_map(|ns| ns.service_accounts.iter().map(|sa| (ns.name.clone(), sa.clone())))
                .collect(),
        };
        let shared = Shared::new(&options, users, fixed, runtime.handle().clone());
        {
            let mut state = shared.lock();
            for ns in &options.namespaces {
                state.store.put(Kind::Namespace, rest::namespace_object(&ns.name, &ns.labels));
            }
        }
        let tls_config = pki.server.clone();
        let epoch = server::serve(shared.clone(), tls_config.clone(), listener)
            .expect("the fake API server serves");
        let kubeconfig = dir.path().join("kubeconfig");
        let default_ns =
            options.namespaces.first().map(|n| n.name.clone()).unwrap_or_else(|| "default".into());
        let url = format!("https://{addr}");
        tls::write_kubeconfig(&kubeconfig, &url, &pki.ca_pem, ADMIN_USER, ADMIN_TOKEN, &default_ns)
            .expect("the fake cluster's kubeconfig");
        FakeApiServer {
            shared,
            runtime: Some(runtime),
            epoch: Mutex::new(Some(epoch)),
            tls: tls_config,
            ca_pem: pki.ca_pem,
            addr,
            kubeconfig,
            dir,
        }
    }

    /// The administrator's kubeconfig (CA inline, bearer token, first namespace as default).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig authenticating as `user` (one of the configured users), with `namespace`
    /// as the context's default.
    pub fn kubeconfig_for(&self, user: &str, namespace: &str) -> PathBuf {
        let token =
            self.shared.lock().users.iter().find(|u| u.name == user).map(|u| u.token.clone());
        let token = token.unwrap_or_else(|| panic!("no fake user named {user}"));
        let safe: String =
            user.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let path = self.dir.path().join(format!("kubeconfig-{safe}-{namespace}"));
        tls::write_kubeconfig(&path, &self.url(), &self.ca_pem, user, &token, namespace)
            .expect("writing a kubeconfig");
        path
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    // --- Test controls -----------------------------------------------------------------

    pub fn set_delays(&self, delays: Delays) {
        self.shared.lock().delays = delays;
    }

    /// Makes pulls of `image` fail (ErrImagePull / ErrImageNeverPull) from now on.
    pub fn fail_image_pull(&self, image: &str) {
        self.shared.lock().missing_images.insert(image.to_string());
    }

    /// Makes `image` available again (pods in back-off start at their next retry).
    pub fn allow_image_pull(&self, image: &str) {
        self.shared.lock().missing_images.remove(image);
    }

    /// Nothing schedules in `namespace` (pending pods report `message`, or a default one).
    pub fn set_unschedulable(&self, namespace: &str, message: Option<&str>) {
        self.shared
            .lock()
            .unschedulable
            .insert(namespace.into(), message.unwrap_or(DEFAULT_UNSCHEDULABLE).into());
        self.shared.wake.notify_waiters();
    }

    /// Pods in `namespace` schedule again (waiting ones are bound now).
    pub fn set_schedulable(&self, namespace: &str) {
        self.shared.lock().unschedulable.remove(namespace);
        self.shared.wake.notify_waiters();
    }

    pub fn set_rules(&self, rules: Vec<AccessRule>) {
        self.shared.lock().rules = rules;
    }

    pub fn add_rule(&self, rule: AccessRule) {
        self.shared.lock().rules.push(rule);
    }

    pub fn add_user(&self, user: FakeUser) {
        self.shared.lock().users.push(user);
    }

    /// Limits the non-terminal pods of `namespace` (`None`: no quota).
    pub fn set_pod_quota(&self, namespace: &str, limit: Option<u32>) {
        let mut state = self.shared.lock();
        match limit {
            Some(limit) => state.pod_quota.insert(namespace.into(), limit),
            None => state.pod_quota.remove(namespace),
        };
    }

    pub fn set_exec_protocols(&self, protocols: ExecProtocols) {
        self.shared.lock().exec_protocols = protocols;
    }

    /// Evicts a pod as the kubelet does under node pressure (processes killed, phase Failed,
    /// reason Evicted). `false` if there is no such pod.
    pub fn evict_pod(&self, namespace: &str, name: &str, message: &str) -> bool {
        match self.key(namespace, name) {
            Some(key) => termination::fail(&self.shared, &key, "Evicted", message),
            None => false,
        }
    }

    /// Deletes a pod as another client would (`grace`: seconds, `None` for the pod's own).
    pub fn delete_pod(&self, namespace: &str, name: &str, grace: Option<u64>) -> bool {
        let options = pods::DeleteOptions { grace, uid: None, resource_version: None };
        pods::delete(&self.shared, namespace, name, &options).status().is_success()
    }

    /// Forgets the watch history: any watch from an older resourceVersion gets 410 Gone.
    pub fn compact_history(&self) {
        self.shared.lock().store.compact();
    }

    /// Stops serving: the port refuses connections and every open connection (watches, exec
    /// streams) is closed. The cluster keeps going (pods start, processes run).
    pub fn pause(&self) {
        let epoch = self.epoch.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(epoch) = epoch {
            epoch.stop();
        }
    }

    /// Serves again on the same port with the same state.
    pub fn resume(&self) {
        let mut slot = self.epoch.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() > deadline => {
                    panic!("re-binding {} to resume: {e}", self.addr)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let epoch = server::serve(self.shared.clone(), self.tls.clone(), listener)
            .expect("the fake API server serves again");
        *slot = Some(epoch);
    }

    pub fn is_paused(&self) -> bool {
        self.epoch.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    // --- Observations --------------------------------------------------------------------

    /// Every request so far (verb, resource with subresource, namespace, name, user, status).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// How many requests had `verb` on `resource` (`create`, `pods`; `get`, `pods/exec`).
    pub fn request_count(&self, verb: &str, resource: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource)
            .count()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    pub fn pods(&self) -> Vec<PodInfo> {
        let state = self.shared.lock();
        state
            .store
            .list(Kind::Pod, None)
            .map(|p| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                PodInfo {
                    namespace: text(&p["metadata"]["namespace"]),
                    name: text(&p["metadata"]["name"]),
                    uid: text(&p["metadata"]["uid"]),
                    phase: text(&p["status"]["phase"]),
                    labels: p["metadata"]["labels"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect(),
                    spec: p["spec"].clone(),
                    deleting: !p["metadata"]["deletionTimestamp"].is_null(),
                }
            })
            .collect()
    }

    /// The pod object as stored.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.shared.lock().store.get(Kind::Pod, namespace, name).cloned()
    }

    /// Events whose involvedObject is `name` in `namespace`, oldest first.
    pub fn events_for(&self, namespace: &str, name: &str) -> Vec<Value> {
        let state = self.shared.lock();
        let mut events: Vec<Value> = state
            .store
            .list(Kind::Event, Some(namespace))
            .filter(|e| e["involvedObject"]["name"] == name)
            .cloned()
            .collect();
        events.sort_by_key(|e| {
            e["metadata"]["resourceVersion"].as_str().and_then(|rv| rv.parse::<u64>().ok())
        });
        events
    }

    /// PIDs of the pod's processes (its execs and their children), empty once it is gone.
    pub fn pod_processes(&self, namespace: &str, name: &str) -> Vec<i32> {
        self.sandbox(namespace, name).map(|s| s.processes()).unwrap_or_default()
    }

    /// Where `path` inside the running pod (e.g. `/home/user/workspace/f`) is on the host.
    pub fn host_path(&self, namespace: &str, name: &str, path: &str) -> Option<PathBuf> {
        self.sandbox(namespace, name).and_then(|s| s.host_path(path))
    }

    /// The directory backing PersistentVolumeClaim `claim` (it outlives the pods using it).
    pub fn pvc_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        self.dir.path().join("pvcs").join(namespace).join(claim)
    }

    /// Waits until the pod satisfies `condition` (checked every 10 ms), up to `timeout`.
    pub async fn wait_pod(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        condition: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let pod = self.pod(namespace, name);
            if let Some(pod) = pod.as_ref().filter(|p| condition(p)) {
                return Ok(pod.clone());
            }
            if Instant::now() > deadline {
                return Err(format!("pod {namespace}/{name} did not reach the condition in {timeout:?}; last: {pod:?}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the pod no longer exists, up to `timeout`.
    pub async fn wait_gone(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.pod(namespace, name).is_some() {
            if Instant::now() > deadline {
                return Err(format!("pod {namespace}/{name} still exists after {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    fn key(&self, namespace: &str, name: &str) -> Option<PodKey> {
        self.pod(namespace, name).map(|p| PodKey::of(&p))
    }

    fn sandbox(&self, namespace: &str, name: &str) -> Option<Arc<sandbox::Sandbox>> {
        let key = self.key(namespace, name)?;
        self.shared.lock().pods.get(&key.uid).and_then(|r| r.sandbox.clone())
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.pause();
        let sandboxes: Vec<Arc<sandbox::Sandbox>> = {
            let mut state = self.shared.lock();
            state
                .pods
                .values_mut()
                .filter_map(|r| {
                    r.stop.cancel();
                    r.sandbox.take()
                })
                .collect()
        };
        for sandbox in sandboxes {
            sandbox.destroy();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
