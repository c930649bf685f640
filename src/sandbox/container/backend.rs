//! [`ContainerBackend`]: a [`SandboxBackend`] built on any [`ContainerPlatform`], with the
//! capabilities every exec-based engine gets from the shared layer: pre-started shells
//! ([`StubShells`]) always, and warm sandboxes ([`WarmSandboxes`]) where the platform can make a
//! sandbox before its user is known.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::exec::{self, ExecProcess};
use super::{stub, ContainerPlatform, Layout, PipedRequest, TtyRequest};
use crate::config::Persistence;
use crate::error::Result;
use crate::sandbox::shell::{session_command, ShellCommand, SESSION_SCRIPT};
use crate::sandbox::{
    tmux, AccessReview, ByteStream, PersistentShells, ProcessSpec, RunningCommand, Sandbox,
    SandboxBackend, SandboxSpec, StubShells, TtyProcess, WarmSandboxes,
};

/// How long a pre-started shell may take to turn its echo off and say so.
const STUB_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a pre-started shell may take to acknowledge its activation.
const ACTIVATION_TIMEOUT: Duration = Duration::from_secs(3);
/// The long values in every session's command (about 4 KiB as an activation line): stubs
/// start with them, and activation lines refer to them (see `stub::activation_line`).
const SHARED: [&str; 3] = [SESSION_SCRIPT, tmux::CLIENT_SCRIPT, tmux::TMUX_CONF];

pub struct ContainerBackend {
    platform: Arc<dyn ContainerPlatform>,
    /// Whether shells run in tmux (see `sandbox/tmux.rs`); `none` unless set.
    persistence: Persistence,
}

impl ContainerBackend {
    pub fn new(platform: Arc<dyn ContainerPlatform>) -> ContainerBackend {
        ContainerBackend { platform, persistence: Persistence::None }
    }

    /// Runs each session's shell in tmux as `persistence` says (`sessions.persistence`).
    pub fn with_persistence(mut self, persistence: Persistence) -> ContainerBackend {
        self.persistence = persistence;
        self
    }

    pub(super) fn platform(&self) -> &Arc<dyn ContainerPlatform> {
        &self.platform
    }

    /// The argv and environment of `spec`'s session in `sandbox`.
    fn session(&self, layout: &Layout, spec: &ProcessSpec) -> ShellCommand {
        let base = [("HOME".to_string(), layout.home.clone())];
        tmux::wrap(session_command(spec, &base, Some(&layout.run_dir)), self.persistence)
    }
}

#[async_trait]
impl SandboxBackend for ContainerBackend {
    fn kind(&self) -> &'static str {
        self.platform.kind()
    }

    fn processes_survive_restart(&self) -> bool {
        // The sandboxes do, but an exec's stream cannot be re-attached: sessions end with us.
        false
    }

    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        self.platform.create(spec).await
    }

    async fn destroy_sandbox(&self, id: &str) -> Result<()> {
        self.platform.destroy(id).await
    }

    async fn start_process(&self, sandbox: &Sandbox, spec: &ProcessSpec) -> Result<TtyProcess> {
        let layout = self.platform.layout(sandbox);
        let command = self.session(&layout, spec);
        let request = TtyRequest { command: &command, cols: spec.cols, rows: spec.rows };
        let started = self.platform.exec_tty(sandbox, request).await?;
        let session = spec.session_id().unwrap_or_default();
        Ok(ExecProcess::start(self.platform.clone(), sandbox, started, &session))
    }

    async fn list_sandboxes(&self) -> Result<Vec<Sandbox>> {
        self.platform.list().await
    }

    async fn health(&self) -> Result<()> {
        self.platform.health().await
    }

    async fn engine_version(&self) -> Result<Option<String>> {
        self.platform.version().await.map(Some)
    }

    async fn end_stray_processes(&self, sandbox: &Sandbox) -> Result<()> {
        exec::end_all(self.platform.as_ref(), sandbox).await
    }

    async fn run(
        &self,
        sandbox: &Sandbox,
        argv: &[String],
        stdin: Option<ByteStream>,
    ) -> Result<RunningCommand> {
        self.platform.exec(sandbox, PipedRequest { argv, stdin }).await
    }

    fn stubs(&self) -> Option<&dyn StubShells> {
        Some(self)
    }

    fn warm_sandboxes(&self) -> Option<&dyn WarmSandboxes> {
        if self.platform.can_prewarm() {
            Some(self)
        } else {
            None
        }
    }

    fn persistent_shells(&self) -> Option<&dyn PersistentShells> {
        match self.persistence {
            Persistence::None => None,
            Persistence::Auto | Persistence::Tmux => Some(self),
        }
    }

    fn access_review(&self) -> Option<&dyn AccessReview> {
        self.platform.access_review()
    }
}

#[async_trait]
impl StubShells for ContainerBackend {
    async fn start_stub(&self, sandbox: &Sandbox) -> Result<TtyProcess> {
        let layout = self.platform.layout(sandbox);
        let id = stub::new_stub_id();
        let mut env = vec![
            ("HOME".to_string(), layout.home.clone()),
            ("TERM".to_string(), "xterm-256color".to_string()),
        ];
        env.extend(stub::stub_env(&layout.run_dir, &id, &SHARED));
        let argv = vec!["sh".to_string(), "-c".to_string(), stub::STUB_SCRIPT.to_string()];
        let command = ShellCommand { argv, env };
        let started =
            self.platform.exec_tty(sandbox, TtyRequest { command: &command, cols: 80, rows: 24 });
        let started = started.await?;
        let mut process = ExecProcess::start(self.platform.clone(), sandbox, started, &id);
        stub::wait_ready(&mut process, STUB_START_TIMEOUT).await?;
        Ok(process)
    }

    async fn activate(
        &self,
        stub: TtyProcess,
        sandbox: &Sandbox,
        spec: &ProcessSpec,
    ) -> Result<TtyProcess> {
        let layout = self.platform.layout(sandbox);
        let command = self.session(&layout, spec);
        let workspace = sandbox.workspace.to_string_lossy();
        let line = stub::activation_line(&command.env, &command.argv, &workspace, &SHARED);
        // The stub's terminal is 80x24; another size is set alongside the line, and both are
        // done before the session is handed out, so its first command already sees its size.
        let control = stub.control.clone();
        let resize = async {
            if (spec.cols, spec.rows) != (80, 24) {
                if let Err(e) = control.resize(spec.cols, spec.rows).await {
                    tracing::warn!(error = %e, "could not size a started shell's terminal");
                }
            }
        };
        let (activated, ()) = tokio::join!(stub::activate(stub, &line, ACTIVATION_TIMEOUT), resize);
        let process = activated?;
        if let Some(id) = spec.session_id() {
            process.control.bind_session(&id);
        }
        Ok(process)
    }
}

#[async_trait]
impl WarmSandboxes for ContainerBackend {
    async fn create_warm(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        self.platform.create(spec).await
    }

    async fn show_owner(&self, sandbox: &Sandbox, user: &str) -> Result<()> {
        self.platform.show_owner(sandbox, user).await
    }
}
