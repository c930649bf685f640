//! The `kubernetes` platform: one restricted pod per user, namespace and profile; each session
//! is a TTY exec into it over kube's WebSocket exec (see [`crate::sandbox::container`] for what
//! all exec-based backends share: stubs, warm pool, tmux persistence), so a user's tabs share
//! a workspace.
//!
//! Every pod carries `kterm.io/managed=true` and `kterm.io/instance=<instance id>`, and kterm
//! lists, adopts or deletes only pods with its own instance label, in the namespaces it may
//! use. A sandbox's id is `<namespace>.<pod name>` (neither has a dot), so it names the pod
//! alone; whose it is shows in its `kterm.io/user` and `kterm.io/role` labels, patched when a
//! warm pod is claimed.
//!
//! Layout: `client.rs` (cluster access, deadlines, errors), `pod.rs` (the pod spec and its
//! Pod Security Standard test), `wait.rs` (a new pod to Running, or why not), `exec.rs`,
//! `access.rs` (SubjectAccessReviews), `network.rs` (the namespaces' NetworkPolicy).

mod access;
mod client;
mod exec;
mod network;
pub mod pod;
pub mod wait;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use self::client::{within, CALL_TIMEOUT, HEALTH_TIMEOUT};
use self::exec::ExecTarget;
use self::pod::PodPlan;
use super::container::hardening::Limits;
use super::container::labels::{
    self, LABEL_INSTANCE, LABEL_MANAGED, LABEL_NAMESPACE, LABEL_PROFILE,
};
use super::container::{ContainerPlatform, Layout, PipedRequest, TtyExec, TtyRequest, WORKSPACE};
use super::{RunningCommand, Sandbox, SandboxSpec};
use crate::config::KubernetesConfig;
use crate::error::{Error, Result};

pub use self::client::Source;

/// How often, and how far apart, a pod is read to learn whether a session's killed process
/// went with it (see `lost`): under a second in all, only for a process that a signal ended.
const LOST_CHECKS: u32 = 4;
const LOST_RECHECK: Duration = Duration::from_millis(250);

pub struct KubernetesPlatform {
    client: kube::Client,
    config: KubernetesConfig,
    instance: String,
    /// Namespaces whose pods are this instance's to list (the allowed ones and the pool's).
    namespaces: Vec<String>,
    /// `sessions.max_lifetime`, for `activeDeadlineSeconds`.
    max_lifetime: Duration,
    /// `sessions.create_timeout`: how long a pod may take to run.
    create_timeout: Duration,
    /// SubjectAccessReviews, with `kubernetes.authorize_with_sar`.
    access: Option<access::SarAuthorizer>,
    /// The namespaces' NetworkPolicy, with `kubernetes.network_policy`.
    policies: Option<network::NetworkPolicies>,
}

/// What the platform needs from the rest of the configuration.
pub struct PlatformOptions {
    pub instance: String,
    /// Namespaces besides the allowed ones where pods are made (the pool's).
    pub extra_namespaces: Vec<String>,
    pub max_lifetime: Duration,
    pub create_timeout: Duration,
}

impl KubernetesPlatform {
    /// A platform for the configured cluster; connects lazily (see [`client::connect`]).
    pub async fn new(
        config: &KubernetesConfig,
        options: PlatformOptions,
    ) -> Result<KubernetesPlatform> {
        let (client, source) = client::connect(config).await?;
        tracing::info!(source = ?source, namespace = %config.namespace, "Kubernetes client ready");
        let mut namespaces = config.allowed_namespaces();
        for extra in options.extra_namespaces {
            if !namespaces.contains(&extra) {
                namespaces.push(extra);
            }
        }
        Ok(KubernetesPlatform {
            config: config.clone(),
            instance: options.instance.clone(),
            namespaces,
            max_lifetime: options.max_lifetime,
            create_timeout: options.create_timeout,
            access: config.authorize_with_sar.then(|| access::SarAuthorizer::new(client.clone())),
            policies: config
                .network_policy
                .then(|| network::NetworkPolicies::new(client.clone(), config, &options.instance)),
            client,
        })
    }

    /// The client (for the SubjectAccessReviews and network policies of this backend).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn limits(&self, spec: &SandboxSpec) -> Limits {
        let defaults = Limits { memory: self.config.memory.0, cpus: self.config.cpus, pids: 0 };
        Limits::for_profile(defaults, &spec.profile)
    }

    fn selector(&self) -> String {
        format!("{LABEL_MANAGED}=true,{LABEL_INSTANCE}={}", self.instance)
    }

    /// Makes `user`'s workspace claim on first use.
    async fn ensure_claim(&self, namespace: &str, claim: &str, user: &str) -> Result<()> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("reading workspace claim {claim}");
        if within(&what, CALL_TIMEOUT, claims.get_opt(claim)).await?.is_some() {
            return Ok(());
        }
        let body: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {
                "name": claim,
                "labels": labels::volume_labels(&self.instance, user, &self.config.labels),
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": self.config.workspace_size.0.to_string()}},
                "storageClassName": (!self.config.workspace_storage_class.is_empty())
                    .then(|| self.config.workspace_storage_class.clone()),
            }
        }))
        .map_err(|e| Error::Internal(format!("building a claim: {e}")))?;
        let what = format!("creating workspace claim {claim}");
        match within(&what, CALL_TIMEOUT, claims.create(&PostParams::default(), &body)).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(409) => Ok(()),
            Err(e) => Err(e.into_error()),
        }
    }
}

/// A sandbox's id from its pod, and back.
fn sandbox_id(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

fn split_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('.').filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
}

/// A new pod's name: `kterm-<profile>-<12 hex digits>` (a DNS subdomain).
fn pod_name(profile: &str) -> String {
    let part: String = profile
        .chars()
        .take(32)
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
    format!("kterm-{}-{id}", part.trim_matches('-'))
}

/// Deletes a pod that was made but is not handed out (its start failed, or the creation was
/// given up and its future dropped).
struct DeleteUnlessKept {
    pods: Option<(Api<Pod>, String)>,
}

impl DeleteUnlessKept {
    fn keep(mut self) {
        self.pods = None;
    }
}

impl Drop for DeleteUnlessKept {
    fn drop(&mut self) {
        if let Some((pods, name)) = self.pods.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let params = DeleteParams::default();
                    let delete = pods.delete(&name, &params);
                    if let Err(e) = within("deleting a pod that did not start", CALL_TIMEOUT, delete).await {
                        tracing::warn!(pod = %name, error = ?e, "could not delete a pod that did not start");
                    }
                });
            }
        }
    }
}

#[async_trait]
impl ContainerPlatform for KubernetesPlatform {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn layout(&self, _sandbox: &Sandbox) -> Layout {
        Layout::standard()
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        if !self.namespaces.contains(&spec.namespace) {
            return Err(Error::Forbidden(format!(
                "namespace {} is not one kterm may use (kubernetes.namespace, kubernetes.namespaces)",
                spec.namespace
            )));
        }
        if let Some(policies) = &self.policies {
            policies.ensure(&spec.namespace).await?;
        }
        let workspace_claim = match (&spec.user, self.config.workspace_claim_prefix.as_str()) {
            (Some(user), prefix) if !prefix.is_empty() => {
                let claim = pod::workspace_claim(prefix, user);
                self.ensure_claim(&spec.namespace, &claim, user).await?;
                Some(claim)
            }
            _ => None,
        };
        let plan = PodPlan {
            config: &self.config,
            instance: &self.instance,
            spec,
            name: pod_name(&spec.profile.name),
            limits: self.limits(spec),
            max_lifetime: self.max_lifetime.as_secs().max(1),
            workspace_claim,
        };
        let pods = self.pods(&spec.namespace);
        let what = format!("creating a sandbox pod in namespace {}", spec.namespace);
        let created =
            within(&what, CALL_TIMEOUT, pods.create(&PostParams::default(), &plan.build())).await?;
        let guard = DeleteUnlessKept { pods: Some((pods.clone(), plan.name.clone())) };
        let last = Mutex::new(None);
        let limit = self.create_timeout.saturating_sub(Duration::from_millis(500));
        let progress = spec.progress.clone();
        let report = move |phase, detail| {
            if let Some(progress) = &progress {
                progress.report(phase, detail);
            }
        };
        match tokio::time::timeout(limit, wait::until_running(&pods, created, &report, &last)).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                let state = last.lock().unwrap_or_else(|p| p.into_inner()).clone();
                return Err(Error::BackendUnavailable(format!(
                    "pod {} was not running within {} (sessions.create_timeout){}",
                    plan.name,
                    humantime::format_duration(self.create_timeout),
                    state.map(|s| format!("; it was {s}")).unwrap_or_default()
                )));
            }
        }
        guard.keep();
        let user = spec.user.as_deref().map(crate::audit::escape_for_log);
        tracing::info!(pod = %plan.name, namespace = %spec.namespace, user = ?user, image = plan.image(), "sandbox pod running");
        Ok(Sandbox {
            id: sandbox_id(&spec.namespace, &plan.name),
            name: plan.name.clone(),
            user: spec.user.clone(),
            namespace: spec.namespace.clone(),
            profile: spec.profile.name.clone(),
            workspace: WORKSPACE.into(),
            running: true,
        })
    }

    async fn destroy(&self, id: &str) -> Result<()> {
        let Some((namespace, name)) = split_id(id) else { return Ok(()) };
        let what = format!("deleting sandbox pod {namespace}/{name}");
        match within(
            &what,
            CALL_TIMEOUT,
            self.pods(namespace).delete(name, &DeleteParams::default()),
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e.into_error()),
        }
    }

    async fn list(&self) -> Result<Vec<Sandbox>> {
        let mut all = Vec::new();
        let params = ListParams::default().labels(&self.selector());
        for namespace in &self.namespaces {
            let what = format!("listing sandbox pods in namespace {namespace}");
            let pods = within(&what, CALL_TIMEOUT, self.pods(namespace).list(&params)).await?;
            for pod in pods.items {
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                // Belt and braces: never report a pod without our instance label.
                if labels.get(LABEL_INSTANCE) != Some(&self.instance) {
                    continue;
                }
                let Some(name) = pod.metadata.name.clone() else { continue };
                let label = |key: &str| labels.get(key).cloned();
                let running = pod.metadata.deletion_timestamp.is_none()
                    && matches!(wait::judge(&pod), wait::Verdict::Running);
                all.push(Sandbox {
                    id: sandbox_id(namespace, &name),
                    name,
                    user: None,
                    namespace: label(LABEL_NAMESPACE).unwrap_or_else(|| namespace.clone()),
                    profile: label(LABEL_PROFILE).unwrap_or_else(|| "default".into()),
                    workspace: WORKSPACE.into(),
                    running,
                });
            }
        }
        Ok(all)
    }

    async fn health(&self) -> Result<()> {
        within("asking the API server its version", HEALTH_TIMEOUT, self.client.apiserver_version())
            .await
            .map(drop)
            .map_err(|e| e.into_error())
    }

    async fn version(&self) -> Result<String> {
        let info = within(
            "asking the API server its version",
            HEALTH_TIMEOUT,
            self.client.apiserver_version(),
        )
        .await?;
        Ok(info.git_version)
    }

    async fn lost(&self, id: &str) -> Option<String> {
        let (namespace, name) = split_id(id)?;
        let what = format!("reading sandbox pod {namespace}/{name}");
        // The kubelet kills a pod's processes before it reports why (an evicted pod's execs
        // end, then the pod turns Failed): a pod that still looks fine is asked again.
        for attempt in 0..LOST_CHECKS {
            if attempt > 0 {
                tokio::time::sleep(LOST_RECHECK).await;
            }
            match within(&what, CALL_TIMEOUT, self.pods(namespace).get_opt(name)).await {
                Ok(None) => return Some(format!("pod {namespace}/{name} was deleted")),
                Ok(Some(pod)) => {
                    if let wait::Verdict::Failed(why) = wait::judge(&pod) {
                        return Some(why);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    fn can_prewarm(&self) -> bool {
        // A per-user claim must be mounted when the pod is made.
        self.config.workspace_claim_prefix.is_empty()
    }

    async fn show_owner(&self, sandbox: &Sandbox, user: &str) -> Result<()> {
        let Some((namespace, name)) = split_id(&sandbox.id) else { return Ok(()) };
        let pods = self.pods(namespace);
        // The max lifetime counts from the claim: shorten the warm pod's deadline to it.
        let what = format!("reading claimed pod {name}");
        let pod = within(&what, CALL_TIMEOUT, pods.get(name))
            .await
            .map_err(|e| e.into_sandbox_error(&sandbox.id))?;
        let started = pod.status.and_then(|s| s.start_time).map(|t| t.0);
        let age = started.map_or(0, |t| (jiff_now_secs() - t.as_second()).max(0) as u64);
        let labels: BTreeMap<String, String> = labels::owner_labels(Some(user));
        let patch = json!({
            "metadata": {"labels": labels},
            "spec": {"activeDeadlineSeconds": age + self.max_lifetime.as_secs().max(1)},
        });
        let what = format!("labelling claimed pod {name}");
        within(
            &what,
            CALL_TIMEOUT,
            pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .map(drop)
        .map_err(|e| e.into_sandbox_error(&sandbox.id))
    }

    async fn exec_tty(&self, sandbox: &Sandbox, request: TtyRequest<'_>) -> Result<TtyExec> {
        let (namespace, name) = split_id(&sandbox.id).ok_or_else(|| gone(&sandbox.id))?;
        ExecTarget { pods: self.pods(namespace), sandbox, pod: name }.tty(request).await
    }

    async fn exec(&self, sandbox: &Sandbox, request: PipedRequest<'_>) -> Result<RunningCommand> {
        let (namespace, name) = split_id(&sandbox.id).ok_or_else(|| gone(&sandbox.id))?;
        ExecTarget { pods: self.pods(namespace), sandbox, pod: name }.piped(request).await
    }

    fn access_review(&self) -> Option<&dyn crate::sandbox::AccessReview> {
        self.access.as_ref().map(|a| a as &dyn crate::sandbox::AccessReview)
    }
}

fn gone(id: &str) -> Error {
    Error::SandboxGone(format!("sandbox {id} is not a pod kterm made"))
}

/// Seconds since the epoch, now.
fn jiff_now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}
