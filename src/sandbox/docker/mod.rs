//! The `docker` platform: one hardened container per user, namespace and profile; each session
//! is a TTY exec inside it (see [`crate::sandbox::container`] for what all exec-based backends
//! share), so a user's tabs share a workspace.
//!
//! Every container carries `kterm.io/managed=true` and `kterm.io/instance=<instance id>`, and
//! kterm lists, adopts or removes only containers with its own instance label. A sandbox's id
//! is its container's ID; its name says whose it is (`kterm-alice-default-data-<id>`, or
//! `kterm-warm-…` in the pool) and changes when a warm one is claimed, as labels cannot. The
//! hardening is in `policy.rs`, the execs in `exec.rs`, the client and its deadlines in
//! `client.rs`.

mod client;
mod exec;
pub mod image;
mod policy;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, RemoveContainerOptions,
    RenameContainerOptions, StartContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;

use self::client::{within, DockerClient, CALL_TIMEOUT};
use self::exec::ExecTarget;
use self::policy::ContainerPlan;
use super::container::hardening::Limits;
use super::container::labels::{
    self, LABEL_INSTANCE, LABEL_MANAGED, LABEL_NAMESPACE, LABEL_PROFILE,
};
use super::container::{ContainerPlatform, Layout, PipedRequest, TtyExec, TtyRequest, WORKSPACE};
use super::{RunningCommand, Sandbox, SandboxSpec};
use crate::config::{DockerConfig, PullPolicy, UserIds};
use crate::error::{Error, Result};

pub struct DockerPlatform {
    client: DockerClient,
    config: DockerConfig,
    user: UserIds,
    instance: String,
    /// Images known to be present (checked once each, pulled if needed).
    ready_images: Mutex<HashSet<String>>,
    pull_lock: tokio::sync::Mutex<()>,
}

impl DockerPlatform {
    /// A platform for the daemon at `docker.host`; connects lazily, so a daemon that is down
    /// now makes `/readyz` and session creation fail until it answers, not kterm's start.
    pub fn new(config: &DockerConfig, instance: &str) -> Result<DockerPlatform> {
        Ok(DockerPlatform {
            client: DockerClient::new(&config.host)?,
            config: config.clone(),
            user: config.user,
            instance: instance.to_string(),
            ready_images: Mutex::default(),
            pull_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether `image` is present locally (for `backend.kind = "auto"`).
    pub async fn has_image(&self, image: &str) -> bool {
        match self.client.get().await {
            Ok(docker) => within("inspecting an image", CALL_TIMEOUT, docker.inspect_image(image))
                .await
                .is_ok(),
            Err(_) => false,
        }
    }

    fn image_of<'a>(&'a self, spec: &'a SandboxSpec) -> &'a str {
        spec.profile.image.as_deref().unwrap_or(&self.config.image)
    }

    fn limits(&self, spec: &SandboxSpec) -> Limits {
        let config = &self.config;
        let defaults =
            Limits { memory: config.memory.0, cpus: config.cpus, pids: config.pids_limit };
        Limits::for_profile(defaults, &spec.profile)
    }

    fn ready(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.ready_images.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure `image` is there, pulling it as `docker.pull` says (progress in the log).
    async fn ensure_image(&self, docker: &Docker, image: &str) -> Result<()> {
        if self.ready().contains(image) {
            return Ok(());
        }
        let _one_pull_at_a_time = self.pull_lock.lock().await;
        if self.ready().contains(image) {
            return Ok(());
        }
        let present =
            match within("inspecting an image", CALL_TIMEOUT, docker.inspect_image(image)).await {
                Ok(_) => true,
                Err(e) if e.status() == Some(404) => false,
                Err(e) => return Err(e.into_error(&format!("inspecting image {image}"))),
            };
        let pull = match self.config.pull {
            PullPolicy::Always => true,
            PullPolicy::Missing => !present,
            PullPolicy::Never => false,
        };
        if pull {
            pull_image(docker, image).await?;
        } else if !present {
            return Err(Error::BackendUnavailable(format!(
                "image {image} is not present and docker.pull = \"never\"; build it with \
                 `kterm image build` or pull it"
            )));
        }
        self.ready().insert(image.to_string());
        Ok(())
    }

    /// Creates `user`'s workspace volume on first use, owned by the sandbox user (a one-off
    /// container with only CAP_CHOWN does that, as a fresh volume belongs to root).
    async fn ensure_volume(
        &self,
        docker: &Docker,
        volume: &str,
        user: &str,
        plan: &ContainerPlan<'_>,
    ) -> Result<()> {
        match within("inspecting a volume", CALL_TIMEOUT, docker.inspect_volume(volume)).await {
            Ok(_) => return Ok(()),
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e.into_error(&format!("inspecting volume {volume}"))),
        }
        let request = bollard::models::VolumeCreateRequest {
            name: Some(volume.to_string()),
            labels: Some(
                labels::volume_labels(&self.instance, user, &self.config.labels)
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        };
        within("creating a volume", CALL_TIMEOUT, docker.create_volume(request))
            .await
            .map_err(|e| e.into_error(&format!("creating volume {volume}")))?;
        let name = format!("kterm-volume-init-{}", short_id());
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        let body = policy::volume_init_body(plan, volume);
        let what = "preparing the workspace volume";
        within(what, CALL_TIMEOUT, docker.create_container(Some(options), body))
            .await
            .map_err(|e| e.into_error(what))?;
        let result = async {
            within(
                what,
                CALL_TIMEOUT,
                docker.start_container(&name, None::<StartContainerOptions>),
            )
            .await
            .map_err(|e| e.into_error(what))?;
            let mut wait = docker.wait_container(&name, None::<WaitContainerOptions>);
            match tokio::time::timeout(CALL_TIMEOUT, wait.next()).await {
                Ok(Some(Ok(done))) if done.status_code == 0 => Ok(()),
                other => Err(Error::BackendUnavailable(format!(
                    "preparing the workspace volume {volume} failed: {other:?}"
                ))),
            }
        }
        .await;
        let _ = self.destroy(&name).await;
        result
    }

    fn target<'a>(&self, docker: Docker, sandbox: &'a Sandbox) -> ExecTarget<'a> {
        ExecTarget { docker, sandbox, user: self.user.to_string() }
    }
}

#[async_trait]
impl ContainerPlatform for DockerPlatform {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn layout(&self, _sandbox: &Sandbox) -> Layout {
        Layout::standard()
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        let docker = self.client.get().await?;
        let image = self.image_of(spec);
        self.ensure_image(&docker, image).await?;
        let fixed = labels::fixed_labels(&self.instance, spec, &self.config.labels);
        let plan = ContainerPlan {
            config: &self.config,
            image,
            user: self.user,
            limits: self.limits(spec),
            labels: fixed.into_iter().collect::<HashMap<_, _>>(),
            workspace_volume: policy::workspace_volume(&self.config, spec.user.as_deref()),
        };
        if let (Some(volume), Some(user)) = (&plan.workspace_volume, &spec.user) {
            self.ensure_volume(&docker, volume, user, &plan).await?;
        }
        let name = labels::sandbox_name(
            spec.user.as_deref(),
            &spec.namespace,
            &spec.profile.name,
            &short_id(),
        );
        let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        let what = "creating the sandbox container";
        let created = match within(
            what,
            CALL_TIMEOUT,
            docker.create_container(Some(options), policy::container_body(plan)),
        )
        .await
        {
            Ok(created) => created,
            Err(e) => {
                if e.status() == Some(404) {
                    // The image went away since we checked.
                    self.ready().remove(image);
                }
                return Err(e.into_error(what));
            }
        };
        let what = "starting the sandbox container";
        let start = docker.start_container(&created.id, None::<StartContainerOptions>);
        if let Err(e) = within(what, CALL_TIMEOUT, start).await {
            let _ = self.destroy(&created.id).await;
            return Err(e.into_error(what));
        }
        let user = spec.user.as_deref().map(crate::audit::escape_for_log);
        tracing::info!(sandbox = %name, user = ?user, %image, "sandbox started");
        Ok(Sandbox {
            id: created.id,
            name,
            user: spec.user.clone(),
            namespace: spec.namespace.clone(),
            profile: spec.profile.name.clone(),
            workspace: WORKSPACE.into(),
            running: true,
        })
    }

    async fn destroy(&self, id: &str) -> Result<()> {
        let docker = self.client.get().await?;
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        let what = format!("removing sandbox {id}");
        match within(&what, CALL_TIMEOUT, docker.remove_container(id, Some(options))).await {
            Ok(()) => Ok(()),
            // Gone already, or its removal is under way.
            Err(e) if matches!(e.status(), Some(404) | Some(409)) => Ok(()),
            Err(e) => Err(e.into_error(&what)),
        }
    }

    async fn lost(&self, id: &str) -> Option<String> {
        let docker = self.client.get().await.ok()?;
        let what = format!("inspecting sandbox {id}");
        match within(&what, CALL_TIMEOUT, docker.inspect_container(id, None)).await {
            Err(e) if e.status() == Some(404) => Some(format!("container {id} was removed")),
            Err(_) => None,
            Ok(container) => {
                let state = container.state?;
                if state.running == Some(true) {
                    return None;
                }
                let oom = match state.oom_killed {
                    Some(true) => ", killed for lack of memory",
                    _ => "",
                };
                Some(format!(
                    "container {id} stopped (exit code {}{oom})",
                    state.exit_code.unwrap_or_default()
                ))
            }
        }
    }

    async fn list(&self) -> Result<Vec<Sandbox>> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_MANAGED}=true"), format!("{LABEL_INSTANCE}={}", self.instance)],
        )]);
        let options =
            ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let docker = self.client.get().await?;
        let what = "listing sandbox containers";
        let containers = within(what, CALL_TIMEOUT, docker.list_containers(Some(options)))
            .await
            .map_err(|e| e.into_error(what))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                // Belt and braces: never report a container without our instance label.
                if labels.get(LABEL_INSTANCE) != Some(&self.instance) {
                    return None;
                }
                let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
                Some(Sandbox {
                    id: c.id?,
                    name: c.names?.first()?.trim_start_matches('/').to_string(),
                    user: None,
                    namespace: label(LABEL_NAMESPACE),
                    profile: labels.get(LABEL_PROFILE).cloned().unwrap_or_else(|| "default".into()),
                    workspace: WORKSPACE.into(),
                    running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                })
            })
            .collect())
    }

    async fn health(&self) -> Result<()> {
        let docker = self.client.get().await?;
        within("pinging the daemon", Duration::from_secs(3), docker.ping())
            .await
            .map(drop)
            .map_err(|e| e.into_error("the Docker daemon does not answer"))
    }

    async fn version(&self) -> Result<String> {
        let docker = self.client.get().await?;
        let version = within("asking the daemon its version", CALL_TIMEOUT, docker.version())
            .await
            .map_err(|e| e.into_error("the Docker daemon does not answer"))?;
        Ok(version.version.unwrap_or_default())
    }

    fn can_prewarm(&self) -> bool {
        // A per-user workspace volume must be mounted when the container is made.
        self.config.workspace_volume_prefix.is_empty()
    }

    async fn show_owner(&self, sandbox: &Sandbox, user: &str) -> Result<()> {
        let short = sandbox.name.rsplit('-').next().unwrap_or_default();
        let name = labels::sandbox_name(Some(user), &sandbox.namespace, &sandbox.profile, short);
        let docker = self.client.get().await?;
        let what = "renaming a claimed sandbox";
        let rename = docker.rename_container(&sandbox.id, RenameContainerOptions { name });
        within(what, CALL_TIMEOUT, rename)
            .await
            .map_err(|e| e.into_sandbox_error(&sandbox.id, what))
    }

    async fn exec_tty(&self, sandbox: &Sandbox, request: TtyRequest<'_>) -> Result<TtyExec> {
        let docker = self.client.get().await?;
        self.target(docker, sandbox).tty(request).await
    }

    async fn exec(&self, sandbox: &Sandbox, request: PipedRequest<'_>) -> Result<RunningCommand> {
        let docker = self.client.get().await?;
        self.target(docker, sandbox).piped(request).await
    }

    fn access_review(&self) -> Option<&dyn crate::sandbox::AccessReview> {
        None
    }
}

/// Pulls `image`, with its progress in the log.
async fn pull_image(docker: &Docker, image: &str) -> Result<()> {
    tracing::info!(image, "pulling the sandbox image");
    let options = CreateImageOptions { from_image: Some(image.to_string()), ..Default::default() };
    let mut progress = docker.create_image(Some(options), None, None);
    let mut last_status = String::new();
    while let Some(item) = progress.next().await {
        match item {
            Ok(info) => {
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(pull_failed(image, &detail));
                }
                let status = info.status.unwrap_or_default();
                if status != last_status {
                    tracing::info!(image, layer = info.id.as_deref().unwrap_or(""), %status, "pull");
                    last_status = status;
                }
            }
            Err(e) => return Err(pull_failed(image, &e.to_string())),
        }
    }
    tracing::info!(image, "pulled the sandbox image");
    Ok(())
}

fn pull_failed(image: &str, detail: &str) -> Error {
    Error::BackendUnavailable(format!(
        "image {image} is missing and could not be pulled: {detail}; build it with \
         `kterm image build` or set docker.image"
    ))
}

/// A random 12-hex-digit suffix that keeps names unique.
fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
