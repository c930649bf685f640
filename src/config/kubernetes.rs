//! `[kubernetes]`: cluster access, the namespaces sandboxes may live in, and what each sandbox
//! pod gets (image, user, resources, volumes, scheduling, service account, network policy).
//! The pod itself is built in `sandbox/kubernetes/pod.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{is_dns_label, ByteSize, ConfigError, UserIds};

/// When the kubelet pulls the sandbox image (a container's `imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// A kubeconfig file; empty: `KUBECONFIG`, then `~/.kube/config`, then in-cluster.
    pub kubeconfig: String,
    /// A kubeconfig context; empty: the current one.
    pub context: String,
    /// The namespace of sandboxes when a session names none.
    pub namespace: String,
    /// Namespaces users may ask for besides `namespace` (auth's namespace rules still apply).
    pub namespaces: Vec<String>,
    pub image: String,
    pub image_pull_policy: ImagePullPolicy,
    /// Ask the API server (SubjectAccessReview) whether the user may create pods and
    /// pods/exec in the namespace before acting for them.
    pub authorize_with_sar: bool,
    /// Numeric `uid:gid` the sandbox runs as (`runAsUser`, `runAsGroup`, `fsGroup`).
    pub user: UserIds,
    /// Memory limit (and, with `memory_request`, what the scheduler reserves).
    pub memory: ByteSize,
    pub memory_request: ByteSize,
    /// CPU limit and request, in CPUs.
    pub cpus: f64,
    pub cpu_request: f64,
    /// Size of the memory-backed `/tmp` emptyDir (it counts against the memory limit).
    pub tmp_size: ByteSize,
    /// `sizeLimit` of the workspace emptyDir (or the request of a per-user claim).
    pub workspace_size: ByteSize,
    /// When set, each user's workspace is the PersistentVolumeClaim `<prefix><user>` (made on
    /// first use), kept across sandboxes; pods are then not pre-started.
    pub workspace_claim_prefix: String,
    /// The storage class of those claims; empty: the cluster's default.
    pub workspace_storage_class: String,
    /// Existing claims mounted into every sandbox (e.g. a run's artifacts, read-only).
    pub extra_volumes: Vec<ExtraVolume>,
    /// The service account sandbox pods run as; empty: the namespace's `default`.
    pub service_account: String,
    /// Per namespace, a service account that replaces `service_account` there.
    pub service_accounts: BTreeMap<String, String>,
    /// Mount the service account's token into sandboxes (for `kubectl` inside).
    pub automount_service_account_token: bool,
    /// A RuntimeClass such as `gvisor`; empty: the cluster's default.
    pub runtime_class_name: String,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<TolerationConfig>,
    /// Secrets (in each sandbox namespace) used to pull the image.
    pub image_pull_secrets: Vec<String>,
    /// Extra labels on every pod (keys under kterm.io/ are kterm's own).
    pub labels: BTreeMap<String, String>,
    /// Keep a NetworkPolicy in each namespace kterm uses: no ingress to sandboxes; egress only
    /// to DNS and `egress`.
    pub network_policy: bool,
    /// What sandboxes may reach when `network_policy` is on, e.g. the API server for kubectl.
    pub egress: Vec<EgressRule>,
}

/// An existing PersistentVolumeClaim mounted into every sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraVolume {
    pub claim: String,
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
}

/// A toleration, as a pod spec has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TolerationConfig {
    pub key: String,
    /// `Equal` or `Exists`.
    pub operator: String,
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule`, `NoExecute` or empty (all).
    pub effect: String,
}

/// Where sandboxes may connect to when the network policy is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    /// An IP block such as `10.96.0.1/32`.
    pub cidr: String,
    /// TCP ports; empty: every port.
    #[serde(default)]
    pub ports: Vec<u16>,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            kubeconfig: String::new(),
            context: String::new(),
            namespace: "kterm".into(),
            namespaces: Vec::new(),
            image: String::new(),
            image_pull_policy: ImagePullPolicy::IfNotPresent,
            authorize_with_sar: false,
            user: UserIds { uid: 1000, gid: 1000 },
            memory: ByteSize(1 << 30),
            memory_request: ByteSize(256 << 20),
            cpus: 1.0,
            cpu_request: 0.1,
            tmp_size: ByteSize(64 << 20),
            workspace_size: ByteSize(1 << 30),
            workspace_claim_prefix: String::new(),
            workspace_storage_class: String::new(),
            extra_volumes: Vec::new(),
            service_account: String::new(),
            service_accounts: BTreeMap::new(),
            automount_service_account_token: false,
            runtime_class_name: String::new(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            image_pull_secrets: Vec::new(),
            labels: BTreeMap::new(),
            network_policy: false,
            egress: Vec::new(),
        }
    }
}

impl KubernetesConfig {
    /// The namespaces sessions may use: `namespace` first, then `namespaces`.
    pub fn allowed_namespaces(&self) -> Vec<String> {
        let mut all = vec![self.namespace.clone()];
        all.extend(self.namespaces.iter().filter(|n| **n != self.namespace).cloned());
        all
    }

    /// The service account of sandboxes in `namespace`, if one is configured.
    pub fn service_account_in(&self, namespace: &str) -> Option<&str> {
        let name = self.service_accounts.get(namespace).unwrap_or(&self.service_account);
        (!name.is_empty()).then_some(name.as_str())
    }

    /// Checks what serde cannot (with `backend.kind = "kubernetes"`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.image.trim().is_empty() {
            return Err(ConfigError::key("kubernetes.image", "must name the sandbox image"));
        }
        for namespace in self.allowed_namespaces() {
            if !is_dns_label(&namespace) {
                return Err(ConfigError::key(
                    "kubernetes.namespaces",
                    format!("{namespace:?} is not a namespace (a DNS label)"),
                ));
            }
        }
        if self.memory.0 < 16 << 20 || self.memory_request.0 > self.memory.0 {
            return Err(ConfigError::key(
                "kubernetes.memory",
                "must be at least 16m and at least kubernetes.memory_request",
            ));
        }
        let cpus_ok = self.cpus > 0.0 && self.cpus <= 1024.0;
        if !(cpus_ok && self.cpu_request >= 0.0 && self.cpu_request <= self.cpus) {
            return Err(ConfigError::key(
                "kubernetes.cpus",
                "must be above 0 and at least kubernetes.cpu_request",
            ));
        }
        for volume in &self.extra_volumes {
            let path_ok = volume.mount_path.starts_with('/') && !volume.mount_path.contains("..");
            if volume.claim.is_empty() || !path_ok {
                return Err(ConfigError::key(
                    "kubernetes.extra_volumes",
                    "each needs a claim and an absolute mount_path",
                ));
            }
        }
        for rule in &self.egress {
            if !rule.cidr.contains('/') {
                return Err(ConfigError::key(
                    "kubernetes.egress",
                    format!("{:?} is not a CIDR such as \"10.96.0.1/32\"", rule.cidr),
                ));
            }
        }
        Ok(())
    }
}
