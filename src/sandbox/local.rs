//! The `local` backend: shells on the host, like ttyd. A user's "sandbox" is a working directory
//! under `local.root`; each session is a process on its own PTY, running as the server's user.
//!
//! It isolates nothing, so the configuration refuses it on a non-loopback address unless
//! `local.allow_remote` is set. Its processes end with the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::pty::{self, HostPty};
use super::shell::session_command;
use super::{
    host, ByteStream, ProcessControl, ProcessSpec, RunningCommand, Sandbox, SandboxBackend,
    SandboxSpec, StubShells, TtyProcess, WarmSandboxes,
};
use crate::error::{Error, Result};

pub struct LocalBackend {
    root: PathBuf,
    sandboxes: Mutex<HashMap<String, Sandbox>>,
    base_env: Vec<(String, String)>,
}

impl LocalBackend {
    pub fn new(root: &Path) -> Result<LocalBackend> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("creating local.root {}", root.display()), e))?;
        let root = root
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving local.root {}", root.display()), e))?;
        Ok(LocalBackend { root, sandboxes: Mutex::new(HashMap::new()), base_env: base_env() })
    }

    fn sandboxes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sandbox>> {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The host environment a local shell starts from: enough to be a normal login, nothing of
/// kterm's own configuration.
pub fn base_env() -> Vec<(String, String)> {
    let mut env = Vec::new();
    for key in ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ"] {
        if let Ok(value) = std::env::var(key) {
            env.push((key.to_string(), value));
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    if !env.iter().any(|(k, _)| k == "LANG") {
        env.push(("LANG".into(), "C.UTF-8".into()));
    }
    env
}

#[async_trait]
impl SandboxBackend for LocalBackend {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn processes_survive_restart(&self) -> bool {
        false
    }

    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        let user = spec.user.as_deref().unwrap_or_default();
        let dir = self.root.join(super::safe_name(user));
        let created = dir.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&created)
        })
        .await
        .map_err(|e| Error::Internal(format!("creating workspace: {e}")))?
        .map_err(|e| Error::io(format!("creating workspace {}", dir.display()), e))?;
        let id = format!("local-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let sandbox = Sandbox {
            name: id.clone(),
            id,
            user: spec.user.clone(),
            namespace: spec.namespace.clone(),
            profile: spec.profile.name.clone(),
            workspace: dir,
            running: true,
        };
        self.sandboxes().insert(sandbox.id.clone(), sandbox.clone());
        Ok(sandbox)
    }

    async fn destroy_sandbox(&self, id: &str) -> Result<()> {
        // The working directory is the user's files on the host: it is kept.
        self.sandboxes().remove(id);
        Ok(())
    }

    async fn start_process(&self, sandbox: &Sandbox, spec: &ProcessSpec) -> Result<TtyProcess> {
        // Local processes end with kterm: no run directory, it kills them by PID itself.
        let command = session_command(spec, &self.base_env, None);
        let child =
            pty::spawn_host(&command.argv, &command.env, &sandbox.workspace, spec.cols, spec.rows)
                .map_err(|e| Error::io(format!("starting {:?}", spec.command.join(" ")), e))?;
        let control =
            Arc::new(LocalProcess { pty: child.pty.clone(), pid: child.pid, exited: child.exited });
        Ok(TtyProcess {
            output: Box::pin(child.pty.reader()),
            input: Box::pin(child.pty.writer()),
            control,
            host_pty: Some(child.pty),
        })
    }

    async fn list_sandboxes(&self) -> Result<Vec<Sandbox>> {
        Ok(self.sandboxes().values().cloned().collect())
    }

    async fn health(&self) -> Result<()> {
        if self.root.is_dir() {
            Ok(())
        } else {
            Err(Error::BackendUnavailable(format!("{} is not a directory", self.root.display())))
        }
    }

    async fn end_stray_processes(&self, _sandbox: &Sandbox) -> Result<()> {
        // Local processes never outlive kterm.
        Ok(())
    }

    async fn run(
        &self,
        sandbox: &Sandbox,
        argv: &[String],
        stdin: Option<ByteStream>,
    ) -> Result<RunningCommand> {
        host::run_command(&self.base_env, &sandbox.workspace, argv, stdin)
    }

    fn stubs(&self) -> Option<&dyn StubShells> {
        // A local process starts in a millisecond or two: nothing to gain.
        None
    }

    fn warm_sandboxes(&self) -> Option<&dyn WarmSandboxes> {
        None
    }

    fn persistent_shells(&self) -> Option<&dyn super::PersistentShells> {
        // Host shells are the local user's own processes; tmux here is theirs to run.
        None
    }

    fn access_review(&self) -> Option<&dyn super::AccessReview> {
        None
    }

    async fn engine_version(&self) -> Result<Option<String>> {
        Ok(None)
    }
}

struct LocalProcess {
    pty: HostPty,
    pid: i32,
    exited: tokio::sync::watch::Receiver<Option<i32>>,
}

#[async_trait]
impl ProcessControl for LocalProcess {
    fn bind_session(&self, _session_id: &str) {}

    fn has_ended(&self) -> bool {
        self.exited.borrow().is_some()
    }

    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.pty.resize(cols, rows).map_err(|e| Error::io("resizing the terminal", e))
    }

    async fn wait(&self) -> Option<i32> {
        let mut exited = self.exited.clone();
        let result = exited.wait_for(Option::is_some).await;
        result.ok().and_then(|code| *code)
    }

    async fn kill(&self) {
        if self.pid <= 0 || self.exited.borrow().is_some() {
            return;
        }
        // The child leads its own process group (setsid): hang up the whole group, then kill.
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe { libc::kill(-self.pid, libc::SIGHUP) };
        let mut exited = self.exited.clone();
        // A shell that is still starting may ignore the hang-up: do not wait long for it.
        let ended =
            tokio::time::timeout(Duration::from_millis(500), exited.wait_for(Option::is_some));
        if ended.await.is_err() {
            // SAFETY: as above.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
    }
}
