//! Docker execs as kterm's TTY processes: the session wrapper script, the output stream adapter,
//! and control (resize, exit code, ending a session's process group).
//!
//! Docker has no API to signal an exec, so every session's wrapper writes its PID to
//! `/tmp/.kterm/<session id>` inside the sandbox (it then `exec`s the shell, keeping that PID,
//! which leads the exec's process group); ending a session is a small exec that signals it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWrite;
use tokio::sync::watch;

use super::{ProcessControl, ProcessSpec, TtyProcess};
use crate::error::Result;

/// Run by `sh` with the session's argv as `$@`: records the PID, runs the init snippet, then
/// becomes the program (or the login shell: bash if the image has it, else sh).
const SESSION_SCRIPT: &str = concat!(
    "[ -d /tmp/.kterm ] || mkdir -p /tmp/.kterm 2>/dev/null; echo $$ > \"/tmp/.kterm/$KTERM_SESSION_ID\"; ",
    "if [ -n \"$KTERM_INIT\" ]; then eval \"$KTERM_INIT\"; fi; unset KTERM_INIT; ",
    "if [ $# -eq 0 ]; then if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l; fi; ",
    "exec \"$@\""
);

/// Hangs up the process group recorded for session `$1`, then kills what is left.
const END_SCRIPT: &str = r#"f="/tmp/.kterm/$1"; p=$(cat "$f" 2>/dev/null) || exit 0
kill -HUP -"$p" 2>/dev/null || kill -HUP "$p" 2>/dev/null
i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL -"$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; rm -f "$f""#;

/// Ends every session process recorded in the sandbox (after a restart of kterm).
const END_ALL_SCRIPT: &str = r#"for f in /tmp/.kterm/*; do [ -f "$f" ] || continue
p=$(cat "$f"); kill -KILL -"$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; rm -f "$f"; done"#;

/// The argv and environment of a session's exec.
pub fn session_argv(spec: &ProcessSpec) -> (Vec<String>, Vec<(String, String)>) {
    let mut argv = vec![
        "sh".to_string(),
        "-c".to_string(),
        SESSION_SCRIPT.to_string(),
        "kterm-session".to_string(),
    ];
    argv.extend(spec.command.iter().cloned());
    let mut env = spec.env.clone();
    if let Some(init) = spec.init.as_ref().filter(|s| !s.trim().is_empty()) {
        env.push(("KTERM_INIT".into(), init.clone()));
    }
    env.push(("HOME".into(), "/home/user".into()));
    (argv, env)
}

pub async fn resize(docker: &Docker, exec_id: &str, cols: u16, rows: u16) -> Result<()> {
    let options = bollard::exec::ResizeExecOptions { width: cols, height: rows };
    docker
        .resize_exec(exec_id, options)
        .await
        .map_err(|e| super::docker::map_error("resizing the terminal", e))
}

/// Runs `script` detached in the sandbox as its user, with `args` as `$1…`.
async fn run_detached(
    docker: &Docker,
    sandbox: &str,
    user: Option<&str>,
    script: &str,
    args: &[&str],
) {
    let mut cmd = vec!["sh", "-c", script, "kterm"];
    cmd.extend_from_slice(args);
    let options = CreateExecOptions {
        cmd: Some(cmd),
        user,
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        ..Default::default()
    };
    let Ok(exec) = docker.create_exec(sandbox, options).await else { return };
    let start = StartExecOptions { detach: true, ..Default::default() };
    if let Err(e) = docker.start_exec(&exec.id, Some(start)).await {
        tracing::debug!(sandbox, error = %e, "could not run a control command in the sandbox");
    }
}

pub async fn end_all_sessions(docker: &Docker, sandbox: &str) {
    run_detached(docker, sandbox, None, END_ALL_SCRIPT, &[]).await;
}

/// Control of one session's exec.
pub struct DockerProcess {
    docker: Docker,
    sandbox: String,
    exec_id: String,
    session_id: std::sync::Mutex<String>,
    /// Set when the output stream has ended: only then is the exit code asked for.
    output_ended: watch::Sender<bool>,
}

impl DockerProcess {
    /// `session_id` names the PID file; a stub learns its session only when activated (see
    /// [`ProcessControl::bind_session`]).
    pub fn new(
        docker: Docker,
        sandbox: String,
        exec_id: String,
        session_id: Option<&str>,
    ) -> DockerProcess {
        DockerProcess {
            docker,
            sandbox,
            exec_id,
            session_id: std::sync::Mutex::new(session_id.unwrap_or_default().to_string()),
            output_ended: watch::Sender::new(false),
        }
    }

    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    pub fn into_tty(
        self,
        output: Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
        input: Pin<Box<dyn AsyncWrite + Send>>,
    ) -> TtyProcess {
        let ended = self.output_ended.clone();
        let failed = self.output_ended.clone();
        let bytes = output
            .map(move |item| {
                // A broken stream (the daemon went away) ends the output too.
                if item.is_err() {
                    failed.send_replace(true);
                }
                item.map(LogOutput::into_bytes).map_err(io::Error::other)
            })
            .chain(futures_util::stream::once(async move {
                ended.send_replace(true);
                Ok(bytes::Bytes::new())
            }))
            .filter(|item| std::future::ready(!matches!(item, Ok(b) if b.is_empty())));
        TtyProcess {
            output: Box::pin(tokio_util::io::StreamReader::new(Box::pin(bytes))),
            input,
            control: Arc::new(self),
        }
    }
}

#[async_trait]
impl ProcessControl for DockerProcess {
    fn has_ended(&self) -> bool {
        *self.output_ended.borrow()
    }

    fn bind_session(&self, session_id: &str) {
        *self.session_id.lock().unwrap_or_else(|p| p.into_inner()) = session_id.to_string();
    }

    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        resize(&self.docker, &self.exec_id, cols, rows).await
    }

    async fn wait(&self) -> Option<i32> {
        let mut ended = self.output_ended.subscribe();
        let _ = ended.wait_for(|e| *e).await;
        // The exec may report "running" for a moment after its stream closed.
        for _ in 0..40 {
            match self.docker.inspect_exec(&self.exec_id).await {
                Ok(inspect) if inspect.running == Some(true) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(inspect) => return inspect.exit_code.map(|c| c as i32),
                Err(_) => return None,
            }
        }
        None
    }

    async fn kill(&self) {
        if *self.output_ended.borrow() {
            return;
        }
        let session = self.session_id.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if session.is_empty() {
            return;
        }
        run_detached(&self.docker, &self.sandbox, None, END_SCRIPT, &[&session]).await;
        let mut ended = self.output_ended.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), ended.wait_for(|e| *e)).await;
    }
}
