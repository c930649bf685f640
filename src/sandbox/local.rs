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

use super::pty::{self, PtyMaster};
use super::{
    ByteStream, CommandExit, ProcessControl, ProcessSpec, RunningCommand, Sandbox, SandboxBackend,
    SandboxSpec, TtyProcess,
};
use crate::error::{Error, Result};

pub struct LocalBackend {
    root: PathBuf,
    sandboxes: Mutex<HashMap<String, Sandbox>>,
    base_env: Vec<(String, String)>,
    shell: Vec<&'static str>,
}

impl LocalBackend {
    pub fn new(root: &Path) -> Result<LocalBackend> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("creating local.root {}", root.display()), e))?;
        let root = root
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving local.root {}", root.display()), e))?;
        let shell =
            if find_in_path("bash").is_some() { vec!["bash", "-l"] } else { vec!["sh", "-l"] };
        Ok(LocalBackend {
            root,
            sandboxes: Mutex::new(HashMap::new()),
            base_env: base_env(),
            shell,
        })
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

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
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
        let dir = self.root.join(super::safe_name(&spec.user));
        let created = dir.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&created)
        })
        .await
        .map_err(|e| Error::Internal(format!("creating workspace: {e}")))?
        .map_err(|e| Error::io(format!("creating workspace {}", dir.display()), e))?;
        let sandbox = Sandbox {
            id: format!("local-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            user: spec.user.clone(),
            namespace: spec.namespace.clone(),
            workspace: dir,
            running: true,
            warm: false,
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
        let (argv, extra_env) = spec.argv(&self.shell);
        let mut env = self.base_env.clone();
        env.retain(|(k, _)| !extra_env.iter().any(|(e, _)| e == k));
        env.extend(extra_env);
        let child = pty::spawn(&argv, &env, &sandbox.workspace, spec.cols, spec.rows)
            .map_err(|e| Error::io(format!("starting {:?}", argv.join(" ")), e))?;
        let control = Arc::new(LocalProcess {
            master: child.master.clone(),
            pid: child.pid,
            exited: child.exited,
        });
        Ok(TtyProcess {
            output: Box::pin(child.master.clone()),
            input: Box::pin(child.master),
            control,
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

    async fn run(
        &self,
        sandbox: &Sandbox,
        argv: &[String],
        stdin: Option<ByteStream>,
    ) -> Result<RunningCommand> {
        run_command(&self.base_env, &sandbox.workspace, argv, stdin)
    }
}

/// A command on the host in the workspace, with pipes; it is killed if its handle is dropped
/// before it ends.
fn run_command(
    env: &[(String, String)],
    workspace: &Path,
    argv: &[String],
    stdin: Option<ByteStream>,
) -> Result<RunningCommand> {
    use futures_util::StreamExt;
    use std::process::Stdio;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (program, args) =
        argv.split_first().ok_or_else(|| Error::Internal("empty command".into()))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(workspace)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io(format!("starting {program:?}"), e))?;
    if let (Some(mut body), Some(mut input)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            while let Some(Ok(chunk)) = body.next().await {
                if input.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = input.shutdown().await;
        });
    }
    let stdout = child.stdout.take().ok_or_else(|| Error::Internal("no stdout pipe".into()))?;
    let mut stderr_pipe =
        child.stderr.take().ok_or_else(|| Error::Internal("no stderr pipe".into()))?;
    // Drained all along, so that a chatty stderr never blocks the command.
    let stderr = tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = stderr_pipe.read(&mut chunk).await {
            super::keep_stderr(&mut kept, &chunk[..n]);
        }
        kept
    });
    Ok(RunningCommand {
        stdout: Box::pin(stdout),
        exit: Box::pin(async move {
            let code = child.wait().await.ok().and_then(|status| status.code());
            let stderr = stderr.await.unwrap_or_default();
            CommandExit { code, stderr }
        }),
    })
}

struct LocalProcess {
    master: PtyMaster,
    pid: i32,
    exited: tokio::sync::watch::Receiver<Option<i32>>,
}

#[async_trait]
impl ProcessControl for LocalProcess {
    fn has_ended(&self) -> bool {
        self.exited.borrow().is_some()
    }

    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.master.resize(cols, rows).map_err(|e| Error::io("resizing the terminal", e))
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
