//! A TTY exec as a session's process ([`ExecProcess`]): its output as a byte stream that says
//! when it has ended, its exit code, and ending it.
//!
//! No engine has an API to signal an exec. So every session records the PID of its program in
//! the sandbox's run directory under its session id (see `shell.rs`), and a pre-started shell
//! under its stub id (see `stub.rs`); that PID leads the exec's process group. Ending a process
//! is a second, short exec that hangs up that group, waits a little, then kills what is left.
//!
//! Invariant: a process is reported ended only when its output has ended; when the output
//! ended because the connection broke (the engine went away for a moment), the process is
//! ended by a control exec first, so a shell is not reported ended while it runs on. A kill
//! whose control exec failed (the engine did not answer) is retried, and logged when it never
//! succeeds (the registry tries again on its next round).
//!
//! Piped (non-TTY) commands share [`piped_command`]: the engine hands over its demultiplexed
//! output, this turns it into a [`RunningCommand`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot, watch};

use super::{ContainerPlatform, ExecControl, Layout, PipedRequest, TtyExec};
use crate::error::{Error, Result};
use crate::sandbox::{
    CommandExit, ProcessControl, RunningCommand, Sandbox, StderrSink, TtyProcess,
};

/// Hangs up the process group recorded as `$2` in run directory `$1`, then kills what is left.
const END_SCRIPT: &str = r#"f="$1/$2"; p=$(cat "$f" 2>/dev/null) || exit 0
kill -HUP -"$p" 2>/dev/null || kill -HUP "$p" 2>/dev/null
i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL -"$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; rm -f "$f""#;

/// Kills every process recorded in run directory `$1` (what a previous run of kterm left).
const END_ALL_SCRIPT: &str = r#"for f in "$1"/*; do [ -f "$f" ] || continue
p=$(cat "$f"); kill -KILL -"$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; rm -f "$f"; done"#;

/// How often a failed kill is tried.
const KILL_ATTEMPTS: u32 = 3;
/// How long one control exec may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a killed process's output may take to end.
const END_WAIT: Duration = Duration::from_secs(5);
/// How long the engine is asked why a process's sandbox was lost.
const LOST_WAIT: Duration = Duration::from_secs(5);

/// A TTY exec that is a session's (or a stub's) process.
pub struct ExecProcess {
    platform: Arc<dyn ContainerPlatform>,
    sandbox: Sandbox,
    layout: Layout,
    control: Arc<dyn ExecControl>,
    /// The name the process recorded its PID under: a stub's id, then its session's.
    recorded_as: Mutex<String>,
    /// Set when the output has ended: only then is the exit code asked for.
    output_ended: watch::Sender<bool>,
    /// Set when the output ended because the connection broke (the process may live on).
    output_broke: Arc<std::sync::atomic::AtomicBool>,
    /// Why the process was lost, when it ended without an exit code and its sandbox is gone.
    lost: std::sync::OnceLock<String>,
    /// Set when kterm ended it (`kill`): a signal's exit code is then its own doing, and the
    /// sandbox is not asked whether it went.
    killed: std::sync::atomic::AtomicBool,
}

impl ExecProcess {
    /// Wraps a started exec; `recorded_as` is the name its PID file has (or will have).
    pub fn start(
        platform: Arc<dyn ContainerPlatform>,
        sandbox: &Sandbox,
        exec: TtyExec,
        recorded_as: &str,
    ) -> TtyProcess {
        let layout = platform.layout(sandbox);
        let process = Arc::new(ExecProcess {
            platform,
            sandbox: sandbox.clone(),
            layout,
            control: exec.control,
            recorded_as: Mutex::new(recorded_as.to_string()),
            output_ended: watch::Sender::new(false),
            output_broke: Arc::default(),
            lost: std::sync::OnceLock::new(),
            killed: std::sync::atomic::AtomicBool::new(false),
        });
        let ended = process.output_ended.clone();
        let failed = process.output_ended.clone();
        let broke = process.output_broke.clone();
        let bytes = exec
            .output
            .map(move |item| {
                // A broken stream (the engine went away) ends the output too.
                if item.is_err() {
                    broke.store(true, std::sync::atomic::Ordering::Release);
                    failed.send_replace(true);
                }
                item
            })
            .chain(futures_util::stream::once(async move {
                ended.send_replace(true);
                Ok(Bytes::new())
            }))
            .filter(|item| std::future::ready(!matches!(item, Ok(b) if b.is_empty())));
        TtyProcess {
            output: Box::pin(tokio_util::io::StreamReader::new(Box::pin(bytes))),
            input: exec.input,
            control: process,
            host_pty: None,
        }
    }
}

#[async_trait]
impl ProcessControl for ExecProcess {
    fn bind_session(&self, session_id: &str) {
        *self.recorded_as.lock().unwrap_or_else(|p| p.into_inner()) = session_id.to_string();
    }

    fn has_ended(&self) -> bool {
        *self.output_ended.borrow()
    }

    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.control.resize(cols, rows).await
    }

    async fn wait(&self) -> Option<i32> {
        let mut ended = self.output_ended.subscribe();
        let _ = ended.wait_for(|e| *e).await;
        if self.output_broke.load(std::sync::atomic::Ordering::Acquire) {
            // The stream broke, not the process: it may still run in the sandbox. End it, so
            // what is reported ended is.
            self.end_recorded().await;
        }
        let code = self.control.exit_code().await;
        let signalled = code.is_none_or(|code| code >= 128);
        let by_us = self.killed.load(std::sync::atomic::Ordering::Acquire);
        if signalled && !by_us && self.lost.get().is_none() {
            // No exit code, or a signal's: perhaps the sandbox itself went (its container was
            // killed). Ask, to say so.
            let asked = tokio::time::timeout(LOST_WAIT, self.platform.lost(&self.sandbox.id));
            if let Ok(Some(why)) = asked.await {
                let _ = self.lost.set(why);
            }
        }
        code
    }

    fn lost(&self) -> Option<String> {
        self.lost.get().cloned()
    }

    async fn kill(&self) {
        if self.has_ended() {
            return;
        }
        self.killed.store(true, std::sync::atomic::Ordering::Release);
        self.end_recorded().await;
        let mut ended = self.output_ended.subscribe();
        let _ = tokio::time::timeout(END_WAIT, ended.wait_for(|e| *e)).await;
    }
}

impl ExecProcess {
    /// Ends the process group recorded under the process's name, by a control exec, tried
    /// again (with a pause) when the engine does not answer.
    async fn end_recorded(&self) {
        let name = self.recorded_as.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let argv = control_argv(END_SCRIPT, &[&self.layout.run_dir, &name]);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match run_control(self.platform.as_ref(), &self.sandbox, &argv).await {
                Ok(()) => break,
                Err(e) if attempt < KILL_ATTEMPTS && !matches!(e, Error::SandboxGone(_)) => {
                    tracing::debug!(sandbox = %self.sandbox.id, error = %e, "ending a process failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => {
                    tracing::warn!(sandbox = %self.sandbox.id, process = name, error = %e, "could not end a process");
                    break;
                }
            }
        }
    }
}

/// Kills every process a previous run of kterm left in `sandbox`.
pub async fn end_all(platform: &dyn ContainerPlatform, sandbox: &Sandbox) -> Result<()> {
    let layout = platform.layout(sandbox);
    run_control(platform, sandbox, &control_argv(END_ALL_SCRIPT, &[&layout.run_dir])).await
}

pub(super) fn control_argv(script: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["sh".to_string(), "-c".to_string(), script.to_string(), "kterm".into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// Runs a short control command to its end, within [`CONTROL_TIMEOUT`].
pub(super) async fn run_control(
    platform: &dyn ContainerPlatform,
    sandbox: &Sandbox,
    argv: &[String],
) -> Result<()> {
    let work = async {
        let mut command = platform.exec(sandbox, PipedRequest { argv, stdin: None }).await?;
        let mut sink = Vec::new();
        let _ = command.stdout.read_to_end(&mut sink).await;
        let exit = command.exit.await;
        match exit.code {
            Some(0) => Ok(()),
            code => Err(Error::BackendUnavailable(format!(
                "a control command in sandbox {} ended with {code:?}: {}",
                sandbox.id,
                String::from_utf8_lossy(&exit.stderr).trim()
            ))),
        }
    };
    tokio::time::timeout(CONTROL_TIMEOUT, work).await.unwrap_or_else(|_| {
        Err(Error::BackendUnavailable(format!(
            "a control command in sandbox {} did not end within {CONTROL_TIMEOUT:?}",
            sandbox.id
        )))
    })
}

/// One chunk of a piped command's output, as an engine demultiplexes it.
pub enum Piped {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// Stdout chunks buffered between the command and a reader that has not taken them.
const STDOUT_QUEUE: usize = 16;

/// A piped command from its output and a way to learn its exit code once the output ended. A
/// task splits the output: stdout goes to the caller through a small channel (so a slow reader
/// slows the command down and memory stays bounded), the start of stderr is kept.
pub fn piped_command<Fut>(
    mut output: Pin<Box<dyn Stream<Item = io::Result<Piped>> + Send>>,
    exit_code: impl FnOnce() -> Fut + Send + 'static,
) -> RunningCommand
where
    Fut: Future<Output = Option<i32>> + Send,
{
    let (stdout_tx, mut stdout_rx) = mpsc::channel::<io::Result<Bytes>>(STDOUT_QUEUE);
    let (exit_tx, exit_rx) = oneshot::channel();
    let sink = StderrSink::default();
    let stderr = sink.clone();
    tokio::spawn(async move {
        while let Some(item) = output.next().await {
            match item {
                Ok(Piped::Stdout(data)) => {
                    if stdout_tx.send(Ok(data)).await.is_err() {
                        // Nobody reads any more: let the connection go.
                        break;
                    }
                }
                Ok(Piped::Stderr(data)) => stderr.push(data).await,
                Err(e) => {
                    let _ = stdout_tx.send(Err(e)).await;
                    break;
                }
            }
        }
        drop(output);
        drop(stdout_tx);
        stderr.close();
        let code = exit_code().await;
        let _ = exit_tx.send(CommandExit { code, stderr: stderr.take_kept() });
    });
    let chunks = futures_util::stream::poll_fn(move |cx| stdout_rx.poll_recv(cx))
        .filter(|c| std::future::ready(!matches!(c, Ok(b) if b.is_empty())));
    RunningCommand {
        stdout: Box::pin(tokio_util::io::StreamReader::new(chunks)),
        stderr: sink,
        exit: Box::pin(async move {
            exit_rx.await.unwrap_or(CommandExit { code: None, stderr: Vec::new() })
        }),
    }
}
