//! Execs over kube's WebSocket exec (`v4.channel.k8s.io` on v1.24, `v5` where offered): a TTY
//! exec for a session or a stub (resized through the terminal-size channel, its exit code
//! from the status channel), and a piped one for [`crate::sandbox::SandboxBackend::run`].
//!
//! A Kubernetes exec cannot set its environment or working directory, so every command runs
//! as `sh -c 'cd "$1"; shift; exec env "$@"' kterm WORKDIR K=V… ARGV…`: values travel as argv
//! entries, never as script text.
//!
//! Invariants: kube's exec task is aborted when its [`kube::api::AttachedProcess`] is dropped,
//! so the process handle lives as long as the output stream; an output stream always ends,
//! with an error when the connection broke (kube then never closes its pipes); and stdin is
//! never shut down (on v4, kube answers that by closing the whole connection, output and
//! status included): commands fed input read it by count.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, AttachedProcess, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::client::{within, CallError, CALL_TIMEOUT};
use super::pod::CONTAINER;
use crate::error::{Error, Result};
use crate::sandbox::container::exec::{piped_command, Piped};
use crate::sandbox::container::{ExecControl, PipedRequest, TtyExec, TtyRequest};
use crate::sandbox::{ByteStream, RunningCommand, Sandbox};

/// Changes to the working directory in `$1`, then runs `env "$@"`.
const WRAP: &str = r#"cd "$1" 2>/dev/null; shift; exec env "$@""#;
/// Buffer of each of kube's pipes.
const PIPE_BUFFER: usize = 64 * 1024;
/// How long the output may take to end once the status came, before the connection counts as
/// broken.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// How an exec's connection ended, as its status channel says.
#[derive(Clone, Debug)]
enum Outcome {
    /// The server sent a status: the exit code when it says one.
    Exited(Option<i32>),
    /// The connection ended without a status (it broke, or the server closed it).
    NoStatus,
}

/// The argv that runs `argv` with `env` in `workdir`.
pub fn wrapped(workdir: &str, env: &[(String, String)], argv: &[String]) -> Vec<String> {
    let mut all = vec!["sh".into(), "-c".into(), WRAP.into(), "kterm".into(), workdir.into()];
    all.extend(env.iter().filter(|(k, _)| is_name(k)).map(|(k, v)| format!("{k}={v}")));
    all.extend(argv.iter().cloned());
    all
}

fn is_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An exec's pod.
pub struct ExecTarget<'a> {
    pub pods: Api<Pod>,
    pub sandbox: &'a Sandbox,
    pub pod: &'a str,
}

impl ExecTarget<'_> {
    pub async fn tty(&self, request: TtyRequest<'_>) -> Result<TtyExec> {
        let TtyRequest { command, cols, rows } = request;
        let workdir = self.sandbox.workspace.to_string_lossy();
        let argv = wrapped(&workdir, &command.env, &command.argv);
        let params = AttachParams::interactive_tty()
            .container(CONTAINER)
            .max_stdin_buf_size(PIPE_BUFFER)
            .max_stdout_buf_size(PIPE_BUFFER);
        let mut process = self.start(argv, &params, "starting a shell").await?;
        let input = process.stdin().ok_or_else(|| missing("stdin"))?;
        let stdout = process.stdout().ok_or_else(|| missing("stdout"))?;
        let sizes = process.terminal_size().ok_or_else(|| missing("a terminal-size channel"))?;
        let outcome = watch_outcome(&mut process);
        let holder = Arc::new(Mutex::new(Some(process)));
        let sizes: SizeSink = Box::pin(sizes.sink_map_err(|_| ()));
        let control = KubeExec { sizes: tokio::sync::Mutex::new(sizes), outcome: outcome.clone() };
        control.resize(cols, rows).await?;
        let output = output_stream(stdout, outcome, holder);
        Ok(TtyExec { output: Box::pin(output), input: Box::pin(input), control: Arc::new(control) })
    }

    pub async fn piped(&self, request: PipedRequest<'_>) -> Result<RunningCommand> {
        let PipedRequest { argv, stdin } = request;
        let workdir = self.sandbox.workspace.to_string_lossy();
        let env = [("HOME".to_string(), crate::sandbox::container::HOME.to_string())];
        let argv = wrapped(&workdir, &env, argv);
        let params = AttachParams::default()
            .container(CONTAINER)
            .stdin(stdin.is_some())
            .stdout(true)
            .stderr(true)
            .tty(false)
            .max_stdin_buf_size(PIPE_BUFFER)
            .max_stdout_buf_size(PIPE_BUFFER)
            .max_stderr_buf_size(PIPE_BUFFER);
        let what = "running a command in the sandbox";
        let mut process = self.start(argv, &params, what).await?;
        let input = process.stdin();
        let stdout = process.stdout().ok_or_else(|| missing("stdout"))?;
        let stderr = process.stderr().ok_or_else(|| missing("stderr"))?;
        let outcome = watch_outcome(&mut process);
        let holder = Arc::new(Mutex::new(Some(process)));
        if let (Some(body), Some(input)) = (stdin, input) {
            tokio::spawn(feed_without_eof(body, input, outcome.clone()));
        }
        let out =
            output_stream(stdout, outcome.clone(), holder.clone()).map(|r| r.map(Piped::Stdout));
        let err = output_stream(stderr, outcome.clone(), holder).map(|r| r.map(Piped::Stderr));
        let merged = futures_util::stream::select(out, err);
        Ok(piped_command(Box::pin(merged), move || async move { exit_code(outcome).await }))
    }

    async fn start(
        &self,
        argv: Vec<String>,
        params: &AttachParams,
        what: &str,
    ) -> Result<AttachedProcess> {
        within(what, CALL_TIMEOUT, self.pods.exec(self.pod, argv, params))
            .await
            .map_err(|e: CallError| e.into_sandbox_error(&self.sandbox.id))
    }
}

fn missing(what: &str) -> Error {
    Error::Internal(format!("kube's exec gave no {what}"))
}

/// Resolves the exec's status in the background and publishes how it ended.
fn watch_outcome(process: &mut AttachedProcess) -> watch::Receiver<Option<Outcome>> {
    let (tx, rx) = watch::channel(None);
    if let Some(status) = process.take_status() {
        tokio::spawn(async move {
            let outcome = match status.await {
                Some(status) => Outcome::Exited(exit_code_of(&status)),
                None => Outcome::NoStatus,
            };
            tx.send_replace(Some(outcome));
        });
    }
    rx
}

/// The exit code a status channel's `Status` says: `Success` is 0, `NonZeroExitCode` carries
/// it as the `ExitCode` cause.
fn exit_code_of(status: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> Option<i32> {
    if status.status.as_deref() == Some("Success") {
        return Some(0);
    }
    let causes = status.details.as_ref()?.causes.as_ref()?;
    causes
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.trim().parse().ok())
}

async fn exit_code(mut outcome: watch::Receiver<Option<Outcome>>) -> Option<i32> {
    let ended = tokio::time::timeout(DRAIN_TIMEOUT, outcome.wait_for(|o| o.is_some())).await;
    match ended {
        Ok(Ok(seen)) => match seen.as_ref() {
            Some(Outcome::Exited(code)) => *code,
            _ => None,
        },
        _ => None,
    }
}

type Holder = Arc<Mutex<Option<AttachedProcess>>>;

/// Reads one of kube's pipes until it ends. After a status, the pipe ends once drained (kube
/// closes it); without one, kube may never close it, so a pipe that stays open is the
/// connection breaking: the stream ends with an error. The last stream to go drops the
/// process (and kube's task with it).
fn output_stream(
    reader: impl AsyncRead + Send + Unpin + 'static,
    outcome: watch::Receiver<Option<Outcome>>,
    holder: Holder,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    struct State<R> {
        reader: R,
        outcome: watch::Receiver<Option<Outcome>>,
        _holder: Holder,
        done: bool,
    }
    let state = State { reader, outcome, _holder: holder, done: false };
    futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let mut buffer = vec![0u8; 16 * 1024];
        let ended = s.outcome.borrow().clone();
        let read = match ended {
            None => {
                tokio::select! {
                    biased;
                    read = s.reader.read(&mut buffer) => Some(read),
                    _ = s.outcome.wait_for(|o| o.is_some()) => None,
                }
            }
            Some(_) => Some(
                tokio::time::timeout(DRAIN_TIMEOUT, s.reader.read(&mut buffer))
                    .await
                    .unwrap_or_else(|_| Err(std::io::Error::other("the exec's connection broke"))),
            ),
        };
        match read {
            // The status came while waiting: read on, now with a deadline.
            None => Some((Ok(Bytes::new()), s)),
            Some(Ok(0)) => None,
            Some(Ok(n)) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), s))
            }
            Some(Err(e)) => {
                s.done = true;
                Some((Err(e), s))
            }
        }
    })
    .filter(|item| std::future::ready(!matches!(item, Ok(b) if b.is_empty())))
}

/// Feeds a command's input, then keeps stdin open until the command has ended (see the module
/// header: no EOF is ever sent).
async fn feed_without_eof(
    mut body: ByteStream,
    mut input: impl tokio::io::AsyncWrite + Unpin,
    mut outcome: watch::Receiver<Option<Outcome>>,
) {
    while let Some(Ok(chunk)) = body.next().await {
        if input.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = input.flush().await;
    let _ = outcome.wait_for(|o| o.is_some()).await;
}

/// One started TTY exec: its terminal-size channel and how it ended.
struct KubeExec {
    sizes: tokio::sync::Mutex<SizeSink>,
    outcome: watch::Receiver<Option<Outcome>>,
}

/// kube's terminal-size sender (a `futures` mpsc sender), its error forgotten.
type SizeSink = std::pin::Pin<Box<dyn futures_util::Sink<TerminalSize, Error = ()> + Send>>;

#[async_trait]
impl ExecControl for KubeExec {
    async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        let mut sizes = self.sizes.lock().await;
        sizes
            .send(TerminalSize { width: cols, height: rows })
            .await
            .map_err(|_| Error::SandboxGone("resizing the terminal: the exec has ended".into()))
    }

    async fn exit_code(&self) -> Option<i32> {
        exit_code(self.outcome.clone()).await
    }
}
