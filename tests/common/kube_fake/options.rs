//! What a test configures about the fake cluster before it starts: namespaces, users (bearer
//! tokens), access rules, the pod lifecycle's pace, missing images, quotas, and which exec
//! subprotocols the "API server" speaks. Everything here can also be changed on a running fake
//! through the handle's test controls, except the users' tokens baked into the kubeconfig.

use std::collections::BTreeMap;
use std::time::Duration;

/// The token of the administrator the default kubeconfig context uses.
pub const ADMIN_TOKEN: &str = "kube-fake-admin-token";
/// The administrator's user name (in group `system:masters`, allowed everything).
pub const ADMIN_USER: &str = "kube-fake-admin";

#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// Namespaces that exist (none can be created through the API).
    pub namespaces: Vec<NamespaceSpec>,
    /// Who may call the API, by bearer token. The administrator is always added.
    pub users: Vec<FakeUser>,
    /// Authorization of non-administrators and SubjectAccessReview decisions; first match wins,
    /// no match is a denial without reason (what RBAC says).
    pub rules: Vec<AccessRule>,
    pub delays: Delays,
    /// Images that neither the node nor any registry has: pulls fail (ErrImagePull, or
    /// ErrImageNeverPull with pull policy Never).
    pub missing_images: Vec<String>,
    /// `namespace -> max pods` as a ResourceQuota would enforce it (non-terminal pods count).
    pub pod_quota: BTreeMap<String, u32>,
    /// Which exec subprotocols the server accepts.
    pub exec_protocols: ExecProtocols,
    /// If set, a TTY exec whose process ends within this time of starting loses its output (the
    /// real race a v1.24 node shows for `echo; exit` with a TTY). Off by default.
    pub lose_short_tty_output: Option<Duration>,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// The node every pod lands on (and its labels, for `nodeSelector`).
    pub node_name: String,
    pub node_labels: BTreeMap<String, String>,
    /// RuntimeClasses that exist (`None`: any `runtimeClassName` is accepted).
    pub runtime_classes: Option<Vec<String>>,
    /// What every image is assumed to declare: user, working directory and environment
    /// (defaults mirror kterm's sandbox image: 1000, /home/user/workspace, LANG and TERM).
    pub image: ImageConfig,
}

#[derive(Clone, Debug)]
pub struct NamespaceSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// ServiceAccounts that exist (a pod naming another is refused, as by the ServiceAccount
    /// admission plugin). `default` always exists.
    pub service_accounts: Vec<String>,
}

impl NamespaceSpec {
    pub fn new(name: &str) -> Self {
        NamespaceSpec {
            name: name.into(),
            labels: BTreeMap::new(),
            service_accounts: vec!["default".into()],
        }
    }

    pub fn service_account(mut self, name: &str) -> Self {
        self.service_accounts.push(name.into());
        self
    }

    /// A namespace labelled `pod-security.kubernetes.io/enforce=restricted`.
    pub fn restricted(name: &str) -> Self {
        Self::new(name).label("pod-security.kubernetes.io/enforce", "restricted")
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

#[derive(Clone, Debug)]
pub struct FakeUser {
    pub token: String,
    pub name: String,
    pub groups: Vec<String>,
}

impl FakeUser {
    pub fn new(token: &str, name: &str, groups: &[&str]) -> Self {
        FakeUser {
            token: token.into(),
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// Who a rule is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    User(String),
    Group(String),
    /// Every authenticated user.
    Anyone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// An explicit denial (as a webhook authorizer can give): SAR answers `denied: true`.
    Deny,
}

/// One authorization rule. `verbs`, `resources` (with subresource: `pods/exec`) and
/// `namespaces` match exactly or by `*`; empty `namespaces` means every namespace and the
/// cluster scope.
#[derive(Clone, Debug)]
pub struct AccessRule {
    pub subject: Subject,
    pub verbs: Vec<String>,
    pub resources: Vec<String>,
    pub namespaces: Vec<String>,
    pub decision: Decision,
    /// The reason a SubjectAccessReview reports (and a 403 message appends).
    pub reason: Option<String>,
}

impl AccessRule {
    /// Allows `verbs` on `resources` in `namespaces` (empty: everywhere) for `subject`, with
    /// the reason RBAC would give for a RoleBinding.
    pub fn allow(
        subject: Subject,
        verbs: &[&str],
        resources: &[&str],
        namespaces: &[&str],
    ) -> Self {
        let reason = match &subject {
            Subject::User(u) => format!("RBAC: allowed by RoleBinding \"kube-fake\" of Role \"kube-fake\" to User \"{u}\""),
            Subject::Group(g) => format!("RBAC: allowed by RoleBinding \"kube-fake\" of Role \"kube-fake\" to Group \"{g}\""),
            Subject::Anyone => "RBAC: allowed by ClusterRoleBinding \"kube-fake\" of ClusterRole \"kube-fake\" to Group \"system:authenticated\"".to_string(),
        };
        AccessRule {
            subject,
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            decision: Decision::Allow,
            reason: Some(reason),
        }
    }

    /// An explicit denial with a reason.
    pub fn deny(
        subject: Subject,
        verbs: &[&str],
        resources: &[&str],
        namespaces: &[&str],
        reason: &str,
    ) -> Self {
        AccessRule {
            decision: Decision::Deny,
            reason: Some(reason.into()),
            ..Self::allow(subject, verbs, resources, namespaces)
        }
    }
}

/// The pace of the fake scheduler and kubelet. Defaults are short so tests run in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Delays {
    /// Create -> bound to the node (PodScheduled, Scheduled event).
    pub schedule: Duration,
    /// Bound -> the kubelet reports ContainerCreating.
    pub kubelet: Duration,
    /// Pulling an image (policy Always, or a failing pull).
    pub pull: Duration,
    /// Image ready -> container Running.
    pub start: Duration,
    /// First back-off after a failed pull (doubles, capped at 8x).
    pub pull_backoff: Duration,
    /// Delete -> containers stopped (capped by the grace period).
    pub terminate: Duration,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            schedule: Duration::from_millis(20),
            kubelet: Duration::from_millis(20),
            pull: Duration::from_millis(60),
            start: Duration::from_millis(40),
            pull_backoff: Duration::from_millis(200),
            terminate: Duration::from_millis(30),
        }
    }
}

/// Exec subprotocols the fake accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecProtocols {
    /// Like Kubernetes v1.24: `v4.channel.k8s.io` and `v4.base64.channel.k8s.io`; a client
    /// offering only v5 gets 403 without an upgrade; stdin can never be closed.
    V124,
    /// Like v1.30+: also `v5.channel.k8s.io` (preferred), whose channel 255 closes stdin.
    WithV5,
}

#[derive(Clone, Debug)]
pub struct ImageConfig {
    pub user: u32,
    pub workdir: String,
    pub env: Vec<(String, String)>,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            user: 1000,
            workdir: "/home/user/workspace".into(),
            env: vec![
                (
                    "PATH".into(),
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ),
                ("LANG".into(), "C.UTF-8".into()),
                ("TERM".into(), "xterm-256color".into()),
            ],
        }
    }
}

impl Default for FakeOptions {
    fn default() -> Self {
        let mut node_labels = BTreeMap::new();
        node_labels.insert("kubernetes.io/hostname".to_string(), "kube-fake-node".to_string());
        node_labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
        node_labels.insert("kubernetes.io/arch".to_string(), "amd64".to_string());
        FakeOptions {
            namespaces: vec![NamespaceSpec::new("default"), NamespaceSpec::restricted("kterm")],
            users: Vec::new(),
            rules: Vec::new(),
            delays: Delays::default(),
            missing_images: Vec::new(),
            pod_quota: BTreeMap::new(),
            exec_protocols: ExecProtocols::V124,
            lose_short_tty_output: None,
            bookmark_interval: Duration::from_secs(1),
            node_name: "kube-fake-node".into(),
            node_labels,
            runtime_classes: None,
            image: ImageConfig::default(),
        }
    }
}
