//! The sandbox pod, built from the config and a [`SandboxSpec`]: the SPEC's labels plus user,
//! namespace, profile and role; the Pod Security Standard "restricted" profile (non-root
//! UID/GID, no privilege escalation, all capabilities dropped, RuntimeDefault seccomp, a
//! read-only root filesystem) and nothing of the host; memory-backed `/tmp` and home, the
//! workspace as a sized emptyDir or the user's claim, extra claims; requests and limits;
//! no service account token unless configured; `activeDeadlineSeconds` and a short grace
//! period.
//!
//! Invariant: nothing here weakens the restricted profile whatever the config says (the unit
//! test checks each rule).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, LocalObjectReference,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, ResourceRequirements,
    SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::KubernetesConfig;
use crate::sandbox::container::hardening::Limits;
use crate::sandbox::container::labels::{self, LABEL_USER};
use crate::sandbox::container::{HOME, WORKSPACE};
use crate::sandbox::SandboxSpec;

/// The sandbox container's name.
pub const CONTAINER: &str = "sandbox";
/// What the container runs: nothing but waiting (sessions are execs), ending at once on TERM.
const HOLD: &str = "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";
/// How long a claimed pod may live past `sessions.max_lifetime` while it sits in the pool
/// (its deadline is shortened to the max lifetime when it is claimed).
pub const WARM_EXTRA_LIFETIME: u64 = 24 * 3600;

/// Everything a pod is made from.
pub struct PodPlan<'a> {
    pub config: &'a KubernetesConfig,
    pub instance: &'a str,
    pub spec: &'a SandboxSpec,
    pub name: String,
    pub limits: Limits,
    /// `sessions.max_lifetime`, in seconds.
    pub max_lifetime: u64,
    /// The user's workspace claim, when workspaces are claims.
    pub workspace_claim: Option<String>,
}

impl PodPlan<'_> {
    pub fn image(&self) -> &str {
        self.spec.profile.image.as_deref().unwrap_or(&self.config.image)
    }

    /// The labels: fixed ones, then whose (role and user).
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut all = labels::fixed_labels(self.instance, self.spec, &self.config.labels);
        all.extend(labels::owner_labels(self.spec.user.as_deref()));
        all
    }

    pub fn build(&self) -> Pod {
        let config = self.config;
        let warm = self.spec.user.is_none();
        let deadline = self.max_lifetime + if warm { WARM_EXTRA_LIFETIME } else { 0 };
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.spec.namespace.clone()),
                labels: Some(self.labels()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![self.container()],
                volumes: Some(self.volumes()),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(i64::from(config.user.uid)),
                    run_as_group: Some(i64::from(config.user.gid)),
                    fs_group: Some(i64::from(config.user.gid)),
                    seccomp_profile: Some(runtime_default()),
                    ..Default::default()
                }),
                automount_service_account_token: Some(config.automount_service_account_token),
                service_account_name: config
                    .service_account_in(&self.spec.namespace)
                    .map(str::to_string),
                active_deadline_seconds: Some(deadline as i64),
                termination_grace_period_seconds: Some(5),
                restart_policy: Some("Never".into()),
                enable_service_links: Some(false),
                host_network: Some(false),
                host_pid: Some(false),
                host_ipc: Some(false),
                runtime_class_name: (!config.runtime_class_name.is_empty())
                    .then(|| config.runtime_class_name.clone()),
                node_selector: (!config.node_selector.is_empty())
                    .then(|| config.node_selector.clone()),
                tolerations: (!config.tolerations.is_empty()).then(|| {
                    config
                        .tolerations
                        .iter()
                        .map(|t| Toleration {
                            key: non_empty(&t.key),
                            operator: non_empty(&t.operator),
                            value: non_empty(&t.value),
                            effect: non_empty(&t.effect),
                            ..Default::default()
                        })
                        .collect()
                }),
                image_pull_secrets: (!config.image_pull_secrets.is_empty()).then(|| {
                    config
                        .image_pull_secrets
                        .iter()
                        .map(|name| LocalObjectReference { name: name.clone() })
                        .collect()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn container(&self) -> Container {
        let config = self.config;
        let quantity = |text: String| Quantity(text);
        let limits = BTreeMap::from([
            ("memory".to_string(), quantity(self.limits.memory.to_string())),
            ("cpu".to_string(), quantity(millicpus(self.limits.cpus))),
        ]);
        let requests = BTreeMap::from([
            (
                "memory".to_string(),
                quantity(config.memory_request.0.min(self.limits.memory).to_string()),
            ),
            ("cpu".to_string(), quantity(millicpus(config.cpu_request.min(self.limits.cpus)))),
        ]);
        let mut mounts = vec![
            mount("tmp", "/tmp", false),
            mount("home", HOME, false),
            mount("workspace", WORKSPACE, false),
        ];
        for (i, extra) in config.extra_volumes.iter().enumerate() {
            mounts.push(mount(&format!("extra-{i}"), &extra.mount_path, extra.read_only));
        }
        let env = [("HOME", HOME), ("LANG", "C.UTF-8"), ("TERM", "xterm-256color")]
            .into_iter()
            .map(|(name, value)| EnvVar {
                name: name.into(),
                value: Some(value.into()),
                ..Default::default()
            })
            .collect();
        Container {
            name: CONTAINER.into(),
            image: Some(self.image().to_string()),
            image_pull_policy: Some(config.image_pull_policy.as_str().into()),
            command: Some(vec!["sh".into(), "-c".into(), HOLD.into()]),
            working_dir: Some(WORKSPACE.into()),
            env: Some(env),
            resources: Some(ResourceRequirements {
                limits: Some(limits),
                requests: Some(requests),
                ..Default::default()
            }),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                privileged: Some(false),
                capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            volume_mounts: Some(mounts),
            stdin: Some(false),
            tty: Some(false),
            ..Default::default()
        }
    }

    fn volumes(&self) -> Vec<Volume> {
        let config = self.config;
        let memory = |name: &str| Volume {
            name: name.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity(config.tmp_size.0.to_string())),
            }),
            ..Default::default()
        };
        let workspace = match &self.workspace_claim {
            Some(claim) => Volume {
                name: "workspace".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(false),
                }),
                ..Default::default()
            },
            None => Volume {
                name: "workspace".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: None,
                    size_limit: Some(Quantity(config.workspace_size.0.to_string())),
                }),
                ..Default::default()
            },
        };
        let mut volumes = vec![memory("tmp"), memory("home"), workspace];
        for (i, extra) in config.extra_volumes.iter().enumerate() {
            volumes.push(Volume {
                name: format!("extra-{i}"),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: extra.claim.clone(),
                    read_only: Some(extra.read_only),
                }),
                ..Default::default()
            });
        }
        volumes
    }
}

/// The name of `user`'s workspace claim under `prefix` (a DNS subdomain).
pub fn workspace_claim(prefix: &str, user: &str) -> String {
    let safe = crate::sandbox::safe_name(user).to_ascii_lowercase().replace('_', "-");
    let name = format!("{prefix}{safe}");
    name.chars().take(253).collect::<String>().trim_matches('-').to_string()
}

/// The user label value of a pod (what `kubectl get pods -l kterm.io/user=alice` matches).
pub fn user_label(labels: &BTreeMap<String, String>) -> Option<&String> {
    labels.get(LABEL_USER)
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

fn millicpus(cpus: f64) -> String {
    format!("{}m", (cpus * 1000.0).round().max(1.0) as u64)
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    //! The built pod against the Pod Security Standard "restricted" profile (v1.24+), rule by
    //! rule, as the PodSecurity admission plugin checks it.

    use std::sync::Arc;

    use serde_json::Value;

    use super::*;
    use crate::config::{ExtraVolume, TolerationConfig};
    use crate::sandbox::Profile;

    fn built(adjust: impl FnOnce(&mut KubernetesConfig)) -> Value {
        let mut config = KubernetesConfig { image: "busybox".into(), ..Default::default() };
        adjust(&mut config);
        let spec = SandboxSpec {
            user: Some("alice@example.com".into()),
            namespace: "kterm".into(),
            profile: Arc::new(Profile { name: "default".into(), ..Profile::default() }),
            progress: None,
        };
        let plan = PodPlan {
            config: &config,
            instance: "i-1",
            spec: &spec,
            name: "kterm-default-abc".into(),
            limits: Limits { memory: 1 << 30, cpus: 1.0, pids: 256 },
            max_lifetime: 3600,
            workspace_claim: None,
        };
        serde_json::to_value(plan.build()).unwrap()
    }

    /// Every container of the pod.
    fn containers(pod: &Value) -> Vec<&Value> {
        let spec = &pod["spec"];
        ["containers", "initContainers", "ephemeralContainers"]
            .iter()
            .flat_map(|k| spec[*k].as_array().into_iter().flatten())
            .collect()
    }

    fn check_restricted(pod: &Value) {
        let spec = &pod["spec"];
        // Baseline: host namespaces.
        for key in ["hostNetwork", "hostPID", "hostIPC"] {
            assert!(spec[key].is_null() || spec[key] == false, "{key}");
        }
        // Baseline: no privileged containers, no added capabilities beyond the default set.
        for c in containers(pod) {
            assert!(c["securityContext"]["privileged"] != true, "privileged");
            assert!(c["securityContext"]["capabilities"]["add"].is_null(), "capabilities.add");
            // Baseline: no host ports.
            for port in c["ports"].as_array().into_iter().flatten() {
                assert!(port["hostPort"].is_null() || port["hostPort"] == 0, "hostPort");
            }
            // Baseline: procMount default.
            assert!(c["securityContext"]["procMount"].is_null(), "procMount");
        }
        // Baseline: no hostPath volumes. Restricted: only these volume types.
        let allowed = [
            "configMap",
            "csi",
            "downwardAPI",
            "emptyDir",
            "ephemeral",
            "persistentVolumeClaim",
            "projected",
            "secret",
        ];
        for volume in spec["volumes"].as_array().into_iter().flatten() {
            let kinds: Vec<&String> =
                volume.as_object().unwrap().keys().filter(|k| *k != "name").collect();
            assert!(kinds.iter().all(|k| allowed.contains(&k.as_str())), "volume {volume}");
        }
        // Baseline: no sysctls, AppArmor unconfined, SELinux custom types.
        assert!(spec["securityContext"]["sysctls"].is_null(), "sysctls");
        assert!(spec["securityContext"]["seLinuxOptions"].is_null(), "seLinuxOptions");
        for c in containers(pod) {
            let sc = &c["securityContext"];
            // Restricted: privilege escalation false.
            assert_eq!(sc["allowPrivilegeEscalation"], false, "allowPrivilegeEscalation");
            // Restricted: runAsNonRoot true (container or pod level), never runAsUser 0.
            let non_root =
                sc["runAsNonRoot"] == true || spec["securityContext"]["runAsNonRoot"] == true;
            assert!(non_root, "runAsNonRoot");
            assert!(
                sc["runAsUser"] != 0 && spec["securityContext"]["runAsUser"] != 0,
                "runAsUser 0"
            );
            // Restricted: seccomp RuntimeDefault or Localhost.
            let seccomp = |v: &Value| {
                matches!(v["seccompProfile"]["type"].as_str(), Some("RuntimeDefault" | "Localhost"))
            };
            assert!(seccomp(sc) || seccomp(&spec["securityContext"]), "seccompProfile");
            // Restricted: drop ALL, add at most NET_BIND_SERVICE.
            let drop = sc["capabilities"]["drop"].as_array().cloned().unwrap_or_default();
            assert!(drop.iter().any(|d| d == "ALL"), "capabilities.drop ALL");
            // Not a PSS rule but ours: the root filesystem is read-only.
            assert_eq!(sc["readOnlyRootFilesystem"], true);
        }
    }

    #[test]
    fn the_pod_meets_the_restricted_pod_security_standard() {
        let pod = built(|_| {});
        check_restricted(&pod);
        let pod = built(|c| {
            c.runtime_class_name = "gvisor".into();
            c.tolerations = vec![TolerationConfig {
                key: "sandbox".into(),
                operator: "Exists".into(),
                ..Default::default()
            }];
            c.extra_volumes = vec![ExtraVolume {
                claim: "artifacts".into(),
                mount_path: "/data".into(),
                read_only: true,
            }];
            c.automount_service_account_token = true;
            c.service_account = "kterm-user".into();
        });
        check_restricted(&pod);
        assert_eq!(pod["spec"]["runtimeClassName"], "gvisor");
        assert_eq!(pod["spec"]["serviceAccountName"], "kterm-user");
    }

    #[test]
    fn the_pod_has_the_labels_volumes_and_limits_it_needs() {
        let pod = built(|_| {});
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["kterm.io/managed"], "true");
        assert_eq!(labels["kterm.io/instance"], "i-1");
        assert_eq!(labels["kterm.io/user"], "alice_example.com");
        assert_eq!(labels["kterm.io/role"], "sandbox");
        assert_eq!(labels["kterm.io/namespace"], "kterm");
        let spec = &pod["spec"];
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(spec["terminationGracePeriodSeconds"], 5);
        assert_eq!(spec["activeDeadlineSeconds"], 3600);
        let volumes = spec["volumes"].as_array().unwrap();
        assert_eq!(volumes[0]["emptyDir"]["medium"], "Memory");
        assert_eq!(volumes[2]["emptyDir"]["sizeLimit"], (1u64 << 30).to_string());
        let c = &spec["containers"][0];
        assert_eq!(c["resources"]["limits"]["cpu"], "1000m");
        assert_eq!(c["resources"]["requests"]["memory"], (256u64 << 20).to_string());
        assert_eq!(c["workingDir"], WORKSPACE);
    }
}
