//! Docker execs: a TTY exec for a session or a stub, and a piped one for
//! [`crate::sandbox::SandboxBackend::run`] (stdin, stdout and stderr attached; Docker
//! multiplexes stdout and stderr on one stream, which is split here). Both run as the sandbox
//! user in the workspace, inside the container's mount namespace, so they see its tmpfs mounts
//! (Docker's archive API does not).

use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;

use super::client::{within, CALL_TIMEOUT};
use crate::error::{Error, Result};
use crate::sandbox::container::exec::{piped_command, Piped};
use crate::sandbox::container::{ExecControl, PipedRequest, TtyExec, TtyRequest};
use crate::sandbox::{feed_stdin, RunningCommand, Sandbox};

/// What every exec of a sandbox shares.
pub struct ExecTarget<'a> {
    pub docker: Docker,
    pub sandbox: &'a Sandbox,
    /// `uid:gid`.
    pub user: String,
}

impl ExecTarget<'_> {
    /// Starts a command on a TTY.
    pub async fn tty(&self, request: TtyRequest<'_>) -> Result<TtyExec> {
        let TtyRequest { command, cols, rows } = request;
        let env = command.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut config: bollard::models::ExecConfig = CreateExecOptions {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(true),
            env: Some(env),
            cmd: Some(command.argv.clone()),
            user: Some(self.user.clone()),
            working_dir: Some(self.sandbox.workspace.to_string_lossy().into_owned()),
            ..Default::default()
        }
        .into();
        config.console_size = Some(vec![rows as usize, cols as usize]);
        let (exec_id, output, input) = self.start(config, true, "starting a shell").await?;
        let control = DockerExec { docker: self.docker.clone(), exec_id };
        // Daemons before API 1.42 ignore console_size: set the size now as well.
        let _ = control.resize(cols, rows).await;
        let output = output.map(|item| {
            item.map(LogOutput::into_bytes).map_err(|e| std::io::Error::other(e.to_string()))
        });
        Ok(TtyExec { output: Box::pin(output), input, control: std::sync::Arc::new(control) })
    }

    /// Starts a command with pipes; its stdin (if any) is fed to it, then closed.
    pub async fn piped(&self, request: PipedRequest<'_>) -> Result<RunningCommand> {
        let PipedRequest { argv, stdin } = request;
        let config: bollard::models::ExecConfig = CreateExecOptions {
            attach_stdin: Some(stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(argv.to_vec()),
            user: Some(self.user.clone()),
            working_dir: Some(self.sandbox.workspace.to_string_lossy().into_owned()),
            env: Some(vec!["HOME=/home/user".into(), "LANG=C.UTF-8".into()]),
            ..Default::default()
        }
        .into();
        let what = "running a command in the sandbox";
        let (exec_id, output, input) = self.start(config, false, what).await?;
        if let Some(body) = stdin {
            tokio::spawn(feed_stdin(body, input));
        }
        let output = output.filter_map(|item| {
            std::future::ready(match item {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    Some(Ok(Piped::Stdout(message)))
                }
                Ok(LogOutput::StdErr { message }) => Some(Ok(Piped::Stderr(message))),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
            })
        });
        let control = DockerExec { docker: self.docker.clone(), exec_id };
        Ok(piped_command(Box::pin(output), move || async move { control.exit_code().await }))
    }

    async fn start(
        &self,
        config: bollard::models::ExecConfig,
        tty: bool,
        what: &str,
    ) -> Result<(String, ExecOutput, ExecInput)> {
        let id = &self.sandbox.id;
        let exec = within(what, CALL_TIMEOUT, self.docker.create_exec(id, config))
            .await
            .map_err(|e| e.into_sandbox_error(id, what))?;
        let options = StartExecOptions { detach: false, tty, output_capacity: Some(64 * 1024) };
        let started = within(what, CALL_TIMEOUT, self.docker.start_exec(&exec.id, Some(options)))
            .await
            .map_err(|e| e.into_sandbox_error(id, what))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(Error::Internal("Docker started the exec detached".into()));
        };
        Ok((exec.id, output, input))
    }
}

type ExecOutput = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;
type ExecInput = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// One started exec: its size and its exit code.
struct DockerExec {
    docker: Docker,
    exec_id: String,
}

#[async_trait]
impl ExecControl for DockerExec {
    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        let options = ResizeExecOptions { width: cols, height: rows };
        within(
            "resizing the terminal",
            CALL_TIMEOUT,
            self.docker.resize_exec(&self.exec_id, options),
        )
        .await
        .map_err(|e| e.into_error("resizing the terminal"))
    }

    /// The exit code once Docker reports the exec ended (it may say "running" for a moment
    /// after its stream closed).
    async fn exit_code(&self) -> Option<i32> {
        for _ in 0..100 {
            let inspect = self.docker.inspect_exec(&self.exec_id);
            match within("inspecting an exec", CALL_TIMEOUT, inspect).await {
                Ok(inspect) if inspect.running == Some(true) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(inspect) => return inspect.exit_code.map(|c| c as i32),
                Err(_) => return None,
            }
        }
        None
    }
}
