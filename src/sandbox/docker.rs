//! The `docker` backend: one hardened container per user (and namespace); each session is a TTY
//! exec inside it, so a user's tabs share a workspace.
//!
//! Every container carries `kterm.io/managed=true` and `kterm.io/instance=<instance id>`, and
//! kterm lists, adopts or removes only containers with its own instance label. The hardening
//! (non-root, read-only root, tmpfs, no capabilities, no-new-privileges, limits, no network) is
//! in [`super::docker_policy`]; the exec streams in [`super::docker_exec`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{
    CreateImageOptions, ListContainersOptions, RemoveContainerOptions, StartContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;

use super::docker_exec::{self, DockerProcess};
use super::docker_policy;
use super::{
    stub, ByteStream, ProcessSpec, RunningCommand, Sandbox, SandboxBackend, SandboxSpec, TtyProcess,
};
use crate::config::{DockerConfig, PullPolicy};
use crate::error::{Error, Result};

/// How long a pre-started shell may take to turn its echo off and say so.
const STUB_START_TIMEOUT: Duration = Duration::from_secs(10);

pub const LABEL_MANAGED: &str = "kterm.io/managed";
pub const LABEL_INSTANCE: &str = "kterm.io/instance";
pub const LABEL_USER: &str = "kterm.io/user";
pub const LABEL_NAMESPACE: &str = "kterm.io/namespace";
pub const LABEL_ROLE: &str = "kterm.io/role";

/// Where the workspace is inside every sandbox (SPEC).
pub const WORKSPACE: &str = "/home/user/workspace";

pub struct DockerBackend {
    /// The client before API version negotiation; [`DockerBackend::client`] negotiates once
    /// the daemon answers (it may be down when kterm starts).
    unnegotiated: Docker,
    negotiated: std::sync::RwLock<Option<Docker>>,
    config: DockerConfig,
    instance: String,
    /// Whether the image is known to be present (checked once, pulled if needed).
    image_ready: AtomicBool,
    pull_lock: tokio::sync::Mutex<()>,
}

impl DockerBackend {
    /// A backend for the daemon at `docker.host`; connects lazily, so a daemon that is down
    /// now makes `/readyz` and session creation fail until it answers, not kterm's start.
    pub fn new(config: &DockerConfig, instance: &str) -> Result<DockerBackend> {
        let docker = if config.host.is_empty() {
            Docker::connect_with_local_defaults()
        } else {
            Docker::connect_with_host(&config.host)
        }
        .map_err(|e| Error::BackendUnavailable(format!("Docker client (docker.host): {e}")))?;
        Ok(DockerBackend {
            unnegotiated: docker,
            negotiated: std::sync::RwLock::new(None),
            config: config.clone(),
            instance: instance.to_string(),
            image_ready: AtomicBool::new(false),
            pull_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The client, with the API version agreed with the daemon.
    async fn client(&self) -> Result<Docker> {
        if let Some(docker) = self.negotiated.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(docker.clone());
        }
        let docker = tokio::time::timeout(
            Duration::from_secs(5),
            self.unnegotiated.clone().negotiate_version(),
        )
        .await
        .map_err(|_| unavailable("the Docker daemon did not answer within 5s"))?
        .map_err(|e| unavailable(&format!("the Docker daemon does not answer: {e}")))?;
        *self.negotiated.write().unwrap_or_else(|p| p.into_inner()) = Some(docker.clone());
        Ok(docker)
    }

    /// Whether the configured image is present locally (for `backend.kind = "auto"`).
    pub async fn has_image(&self) -> bool {
        match self.client().await {
            Ok(docker) => docker.inspect_image(&self.config.image).await.is_ok(),
            Err(_) => false,
        }
    }

    /// Makes sure the image is there, pulling it as `docker.pull` says (progress in the log).
    async fn ensure_image(&self) -> Result<()> {
        if self.image_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one_pull_at_a_time = self.pull_lock.lock().await;
        if self.image_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let image = &self.config.image;
        let docker = self.client().await?;
        let present = match docker.inspect_image(image).await {
            Ok(_) => true,
            Err(e) if status_of(&e) == Some(404) => false,
            Err(e) => return Err(map_error(&format!("inspecting image {image}"), e)),
        };
        let pull = match self.config.pull {
            PullPolicy::Always => true,
            PullPolicy::Missing => !present,
            PullPolicy::Never => false,
        };
        if pull {
            self.pull(&docker, image).await?;
        } else if !present {
            return Err(Error::BackendUnavailable(format!(
                "image {image} is not present and docker.pull = \"never\"; build it with \
                 `kterm image build` or pull it"
            )));
        }
        self.image_ready.store(true, Ordering::Release);
        Ok(())
    }

    async fn pull(&self, docker: &Docker, image: &str) -> Result<()> {
        tracing::info!(image, "pulling the sandbox image");
        let options =
            CreateImageOptions { from_image: Some(image.to_string()), ..Default::default() };
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

    /// Creates `user`'s workspace volume on first use, owned by the sandbox user (a one-off
    /// container with only CAP_CHOWN does that, as a fresh volume belongs to root).
    async fn ensure_volume(&self, docker: &Docker, volume: &str, spec: &SandboxSpec) -> Result<()> {
        match docker.inspect_volume(volume).await {
            Ok(_) => return Ok(()),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(map_error(&format!("inspecting volume {volume}"), e)),
        }
        let request = bollard::models::VolumeCreateRequest {
            name: Some(volume.to_string()),
            labels: Some(self.labels(spec)),
            ..Default::default()
        };
        docker
            .create_volume(request)
            .await
            .map_err(|e| map_error(&format!("creating volume {volume}"), e))?;
        let body = docker_policy::volume_init_body(&self.config, volume, self.labels(spec));
        let name = format!(
            "kterm-{}-init-{}",
            self.instance,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let options = bollard::query_parameters::CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| map_error("preparing the workspace volume", e))?;
        let result = async {
            docker
                .start_container(&name, None::<StartContainerOptions>)
                .await
                .map_err(|e| map_error("preparing the workspace volume", e))?;
            let mut wait = docker
                .wait_container(&name, None::<bollard::query_parameters::WaitContainerOptions>);
            match wait.next().await {
                Some(Ok(done)) if done.status_code == 0 => Ok(()),
                other => Err(Error::BackendUnavailable(format!(
                    "preparing the workspace volume {volume} failed: {other:?}"
                ))),
            }
        }
        .await;
        let _ = self.destroy_sandbox(&name).await;
        result
    }

    fn labels(&self, spec: &SandboxSpec) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> =
            self.config.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert(LABEL_MANAGED.into(), "true".into());
        labels.insert(LABEL_INSTANCE.into(), self.instance.clone());
        labels.insert(LABEL_USER.into(), spec.user.clone());
        labels.insert(LABEL_NAMESPACE.into(), spec.namespace.clone());
        labels.insert(LABEL_ROLE.into(), "sandbox".into());
        labels
    }
}

impl DockerBackend {
    async fn create_container(&self, spec: &SandboxSpec, warm: bool) -> Result<Sandbox> {
        self.ensure_image().await?;
        let docker = self.client().await?;
        if let Some(volume) = docker_policy::workspace_volume(&self.config, Some(&spec.user)) {
            self.ensure_volume(&docker, &volume, spec).await?;
        }
        let name =
            format!("kterm-{}-{}", self.instance, &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut labels = self.labels(spec);
        if warm {
            labels.insert(LABEL_ROLE.into(), "warm".into());
        }
        let body = docker_policy::container_body(&self.config, labels);
        let options = bollard::query_parameters::CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        if let Err(e) = docker.create_container(Some(options), body).await {
            if status_of(&e) == Some(404) {
                // The image went away since we checked.
                self.image_ready.store(false, Ordering::Release);
            }
            return Err(map_error("creating the sandbox container", e));
        }
        if let Err(e) = docker.start_container(&name, None::<StartContainerOptions>).await {
            let _ = self.destroy_sandbox(&name).await;
            return Err(map_error("starting the sandbox container", e));
        }
        tracing::info!(sandbox = %name, user = %crate::audit::escape_for_log(&spec.user), warm, image = %self.config.image, "sandbox started");
        Ok(Sandbox {
            id: name,
            user: spec.user.clone(),
            namespace: spec.namespace.clone(),
            workspace: WORKSPACE.into(),
            running: true,
            warm,
        })
    }

    /// Starts `argv` as a TTY exec in `sandbox` as the sandbox user.
    async fn exec_tty(
        &self,
        sandbox: &Sandbox,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        session_id: Option<&str>,
        cols: u16,
        rows: u16,
    ) -> Result<TtyProcess> {
        let docker = self.client().await?;
        let mut config: bollard::models::ExecConfig = CreateExecOptions {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(true),
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            cmd: Some(argv),
            user: Some(self.config.user.to_string()),
            working_dir: Some(WORKSPACE.to_string()),
            ..Default::default()
        }
        .into();
        config.console_size = Some(vec![rows as usize, cols as usize]);
        let exec = docker
            .create_exec(&sandbox.id, config)
            .await
            .map_err(|e| sandbox_error(&sandbox.id, "starting a shell", e))?;
        let options =
            StartExecOptions { detach: false, tty: true, output_capacity: Some(64 * 1024) };
        let started = docker
            .start_exec(&exec.id, Some(options))
            .await
            .map_err(|e| sandbox_error(&sandbox.id, "starting a shell", e))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(Error::Internal("Docker started the exec detached".into()));
        };
        let process = DockerProcess::new(docker.clone(), sandbox.id.clone(), exec.id, session_id);
        // Daemons before API 1.42 ignore console_size: set the size now as well.
        let _ = docker_exec::resize(&docker, process.exec_id(), cols, rows).await;
        Ok(process.into_tty(output, input))
    }
}

#[async_trait]
impl SandboxBackend for DockerBackend {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn processes_survive_restart(&self) -> bool {
        // The containers do, but a Docker exec cannot be re-attached: sessions end with us.
        false
    }

    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        self.create_container(spec, false).await
    }

    fn supports_pool(&self) -> bool {
        // A per-user workspace volume must be mounted when the container is made.
        self.config.workspace_volume_prefix.is_empty()
    }

    async fn create_warm_sandbox(&self, namespace: &str) -> Result<Sandbox> {
        self.create_container(
            &SandboxSpec { user: String::new(), namespace: namespace.into() },
            true,
        )
        .await
    }

    async fn start_stub(&self, sandbox: &Sandbox) -> Result<TtyProcess> {
        let argv = vec!["sh".to_string(), "-c".to_string(), stub::STUB_SCRIPT.to_string()];
        let env = vec![
            ("HOME".to_string(), "/home/user".to_string()),
            ("TERM".to_string(), "xterm-256color".to_string()),
        ];
        let mut process = self.exec_tty(sandbox, argv, env, None, 80, 24).await?;
        stub::wait_ready(&mut process, STUB_START_TIMEOUT).await?;
        Ok(process)
    }

    fn activation(&self, spec: &ProcessSpec) -> Vec<u8> {
        let (argv, env) = docker_exec::session_argv(spec);
        stub::activation_line(&env, &argv, WORKSPACE)
    }

    async fn destroy_sandbox(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.client().await?.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            // Removal already under way.
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(map_error(&format!("removing sandbox {id}"), e)),
        }
    }

    async fn start_process(&self, sandbox: &Sandbox, spec: &ProcessSpec) -> Result<TtyProcess> {
        let (argv, env) = docker_exec::session_argv(spec);
        let session = spec.session_id();
        self.exec_tty(sandbox, argv, env, session.as_deref(), spec.cols, spec.rows).await
    }

    async fn list_sandboxes(&self) -> Result<Vec<Sandbox>> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_MANAGED}=true"), format!("{LABEL_INSTANCE}={}", self.instance)],
        )]);
        let options =
            ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let containers = self
            .client()
            .await?
            .list_containers(Some(options))
            .await
            .map_err(|e| map_error("listing sandbox containers", e))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                // Belt and braces: never report a container without our instance label.
                if labels.get(LABEL_INSTANCE) != Some(&self.instance) {
                    return None;
                }
                let name = c.names?.first()?.trim_start_matches('/').to_string();
                Some(Sandbox {
                    id: name,
                    user: labels.get(LABEL_USER).cloned().unwrap_or_default(),
                    namespace: labels.get(LABEL_NAMESPACE).cloned().unwrap_or_default(),
                    workspace: WORKSPACE.into(),
                    running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                    warm: labels.get(LABEL_ROLE).map(String::as_str) == Some("warm"),
                })
            })
            .collect())
    }

    async fn health(&self) -> Result<()> {
        let docker = self.client().await?;
        match tokio::time::timeout(Duration::from_secs(3), docker.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unavailable(&format!("the Docker daemon does not answer: {e}"))),
            Err(_) => Err(unavailable("the Docker daemon did not answer within 3s")),
        }
    }

    async fn end_stray_processes(&self, sandbox: &Sandbox) {
        if let Ok(docker) = self.client().await {
            docker_exec::end_all_sessions(&docker, &sandbox.id).await;
        }
    }

    async fn run(
        &self,
        sandbox: &Sandbox,
        argv: &[String],
        stdin: Option<ByteStream>,
    ) -> Result<RunningCommand> {
        let docker = self.client().await?;
        let user = self.config.user.to_string();
        super::docker_run::run(docker, &sandbox.id, &user, argv, stdin).await
    }
}

fn unavailable(message: &str) -> Error {
    Error::BackendUnavailable(message.to_string())
}

fn pull_failed(image: &str, detail: &str) -> Error {
    Error::BackendUnavailable(format!(
        "image {image} is missing and could not be pulled: {detail}; build it with \
         `kterm image build` or set docker.image"
    ))
}

/// The HTTP status of a daemon's error answer, if it was one.
pub(super) fn status_of(error: &bollard::errors::Error) -> Option<u16> {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// A daemon error while doing `what`: its own message for answers, 503 for a daemon that is
/// not there.
pub(super) fn map_error(what: &str, error: bollard::errors::Error) -> Error {
    match &error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            Error::BackendUnavailable(format!("{what}: {message}"))
        }
        _ => Error::BackendUnavailable(format!(
            "{what}: the Docker daemon is not reachable ({error})"
        )),
    }
}

/// Like [`map_error`], but a missing or stopped container is [`Error::SandboxGone`].
pub(super) fn sandbox_error(id: &str, what: &str, error: bollard::errors::Error) -> Error {
    match status_of(&error) {
        Some(404) | Some(409) => Error::SandboxGone(format!("sandbox {id}: {error}")),
        _ => map_error(what, error),
    }
}
