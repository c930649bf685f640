//! The hardening policy of Docker sandboxes, as one container definition.
//!
//! By default: runs as a non-root user (`docker.user`), read-only root filesystem, tmpfs for
//! `/tmp`, the home and the workspace (or a named volume for the workspace), every capability
//! dropped, `no-new-privileges`, Docker's default seccomp profile (never disabled here), pids,
//! memory (swap equal to it) and CPU limits, network `none` unless configured, no host mounts,
//! host network or host PID, an init process that reaps zombies, and an optional OCI runtime.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions};

use crate::config::{DockerConfig, UserIds};
use crate::sandbox::container::hardening::Limits;
use crate::sandbox::container::{HOME, WORKSPACE};

/// Keeps the container alive without a terminal; ends promptly on SIGTERM.
const KEEPALIVE: &str = "trap 'exit 0' TERM INT; while :; do sleep 86400 & wait $!; done";

/// One sandbox container to make: what the config says, with its profile's image and limits.
pub struct ContainerPlan<'a> {
    pub config: &'a DockerConfig,
    pub image: &'a str,
    pub user: UserIds,
    pub limits: Limits,
    pub labels: HashMap<String, String>,
    /// The user's workspace volume, when `docker.workspace_volume_prefix` is set.
    pub workspace_volume: Option<String>,
}

pub fn container_body(plan: ContainerPlan<'_>) -> ContainerCreateBody {
    let config = plan.config;
    let UserIds { uid, gid } = plan.user;
    let tmpfs_opts =
        |size: u64| format!("rw,nosuid,nodev,size={size},uid={uid},gid={gid},mode=0755");
    let mut tmpfs = HashMap::from([
        ("/tmp".to_string(), format!("rw,nosuid,nodev,size={},mode=1777", config.tmp_size.0)),
        (HOME.to_string(), tmpfs_opts(config.home_size.0)),
    ]);
    let mut mounts = Vec::new();
    match plan.workspace_volume {
        Some(volume) => mounts.push(Mount {
            target: Some(WORKSPACE.into()),
            source: Some(volume),
            typ: Some(MountType::VOLUME),
            read_only: Some(false),
            // Docker would otherwise copy the (root-owned) mount point's ownership onto an
            // empty volume at every mount, undoing the volume's preparation.
            volume_options: Some(MountVolumeOptions { no_copy: Some(true), ..Default::default() }),
            ..Default::default()
        }),
        None => {
            tmpfs.insert(WORKSPACE.into(), tmpfs_opts(config.workspace_size.0));
        }
    }
    let memory = plan.limits.memory as i64;
    let host_config = HostConfig {
        readonly_rootfs: Some(true),
        tmpfs: Some(tmpfs),
        mounts: if mounts.is_empty() { None } else { Some(mounts) },
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        privileged: Some(false),
        pids_limit: Some(plan.limits.pids),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some((plan.limits.cpus * 1e9) as i64),
        network_mode: Some(config.network.clone()),
        ipc_mode: Some("private".into()),
        pid_mode: Some(String::new()),
        init: Some(true),
        runtime: if config.runtime.is_empty() { None } else { Some(config.runtime.clone()) },
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(plan.image.to_string()),
        cmd: Some(vec!["sh".into(), "-c".into(), KEEPALIVE.into()]),
        entrypoint: Some(vec![]),
        user: Some(plan.user.to_string()),
        working_dir: Some(WORKSPACE.into()),
        env: Some(vec![format!("HOME={HOME}"), "USER=user".into(), "LANG=C.UTF-8".into()]),
        labels: Some(plan.labels),
        network_disabled: Some(config.network == "none"),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// A one-off container that gives a fresh workspace volume to the sandbox user: root inside,
/// but with only CAP_CHOWN, no network, and the same limits.
pub fn volume_init_body(plan: &ContainerPlan<'_>, volume: &str) -> ContainerCreateBody {
    let config = plan.config;
    let host_config = HostConfig {
        mounts: Some(vec![Mount {
            target: Some("/w".into()),
            source: Some(volume.into()),
            typ: Some(MountType::VOLUME),
            volume_options: Some(MountVolumeOptions { no_copy: Some(true), ..Default::default() }),
            ..Default::default()
        }]),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(vec!["CHOWN".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        network_mode: Some("none".into()),
        pids_limit: Some(plan.limits.pids),
        memory: Some(plan.limits.memory as i64),
        runtime: if config.runtime.is_empty() { None } else { Some(config.runtime.clone()) },
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(plan.image.to_string()),
        entrypoint: Some(vec![]),
        cmd: Some(vec!["chown".into(), plan.user.to_string(), "/w".into()]),
        user: Some("0:0".into()),
        labels: Some(plan.labels.clone()),
        network_disabled: Some(true),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The named volume holding `user`'s workspace, when `docker.workspace_volume_prefix` is set
/// (a warm sandbox, whose user is not known yet, has none).
pub fn workspace_volume(config: &DockerConfig, user: Option<&str>) -> Option<String> {
    let user = user?;
    if config.workspace_volume_prefix.is_empty() {
        return None;
    }
    // Volume names allow [a-zA-Z0-9][a-zA-Z0-9_.-].
    Some(format!("{}{}", config.workspace_volume_prefix, crate::sandbox::safe_name(user)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(config: &DockerConfig) -> ContainerPlan<'_> {
        ContainerPlan {
            config,
            image: &config.image,
            user: UserIds { uid: 1000, gid: 1000 },
            limits: Limits { memory: config.memory.0, cpus: config.cpus, pids: config.pids_limit },
            labels: HashMap::new(),
            workspace_volume: None,
        }
    }

    #[test]
    fn the_default_policy_is_locked_down() {
        let config = DockerConfig::default();
        let body = container_body(plan(&config));
        let host = body.host_config.unwrap();
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.memory, host.memory_swap);
        assert!(host.binds.is_none() && host.mounts.is_none());
        assert_eq!(host.init, Some(true));
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        let tmpfs = host.tmpfs.unwrap();
        assert!(tmpfs["/home/user/workspace"].contains("uid=1000"));
    }

    #[test]
    fn volume_names_are_safe() {
        let config =
            DockerConfig { workspace_volume_prefix: "kterm-ws-".into(), ..Default::default() };
        let name = workspace_volume(&config, Some("../alice@example.com")).unwrap();
        assert!(name.starts_with("kterm-ws-"));
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{name}");
    }
}
