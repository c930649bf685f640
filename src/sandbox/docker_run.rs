//! Non-interactive commands in a Docker sandbox ([`super::SandboxBackend::run`]): a non-TTY
//! exec with stdin, stdout and stderr attached. Docker multiplexes stdout and stderr on one
//! stream; a task splits them, hands stdout to the caller through a small channel (so a slow
//! reader slows the command down, memory stays bounded) and keeps the start of stderr.
//!
//! Execs run inside the container's mount namespace, so they see its tmpfs mounts (Docker's
//! archive API does not).

use std::io;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use super::docker::{sandbox_error, WORKSPACE};
use super::{keep_stderr, ByteStream, CommandExit, RunningCommand};
use crate::error::{Error, Result};

/// Stdout chunks buffered between the exec and a reader that has not taken them.
const STDOUT_QUEUE: usize = 16;

pub async fn run(
    docker: Docker,
    sandbox: &str,
    user: &str,
    argv: &[String],
    stdin: Option<ByteStream>,
) -> Result<RunningCommand> {
    let options = CreateExecOptions {
        attach_stdin: Some(stdin.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        cmd: Some(argv.to_vec()),
        user: Some(user.to_string()),
        working_dir: Some(WORKSPACE.to_string()),
        env: Some(vec!["HOME=/home/user".into(), "LANG=C.UTF-8".into()]),
        ..Default::default()
    };
    let exec = docker
        .create_exec(sandbox, options)
        .await
        .map_err(|e| sandbox_error(sandbox, "running a command in the sandbox", e))?;
    let start = StartExecOptions { detach: false, tty: false, output_capacity: Some(64 * 1024) };
    let started = docker
        .start_exec(&exec.id, Some(start))
        .await
        .map_err(|e| sandbox_error(sandbox, "running a command in the sandbox", e))?;
    let StartExecResults::Attached { mut output, mut input } = started else {
        return Err(Error::Internal("Docker started the exec detached".into()));
    };

    if let Some(mut body) = stdin {
        tokio::spawn(async move {
            while let Some(Ok(chunk)) = body.next().await {
                if input.write_all(&chunk).await.is_err() {
                    // The command stopped reading (it exited): its exit code tells why.
                    return;
                }
            }
            // Half-closes the connection: the daemon then closes the command's stdin.
            let _ = input.shutdown().await;
        });
    }

    let (stdout_tx, stdout_rx) = mpsc::channel::<io::Result<Bytes>>(STDOUT_QUEUE);
    let (exit_tx, exit_rx) = oneshot::channel();
    let exec_id = exec.id;
    tokio::spawn(async move {
        let mut stderr = Vec::new();
        while let Some(item) = output.next().await {
            match item {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    if stdout_tx.send(Ok(message)).await.is_err() {
                        // Nobody reads any more: let the connection go.
                        break;
                    }
                }
                Ok(LogOutput::StdErr { message }) => keep_stderr(&mut stderr, &message),
                Ok(LogOutput::StdIn { .. }) => {}
                Err(e) => {
                    let _ = stdout_tx.send(Err(io::Error::other(e))).await;
                    break;
                }
            }
        }
        drop(output);
        drop(stdout_tx);
        let code = exit_code(&docker, &exec_id).await;
        let _ = exit_tx.send(CommandExit { code, stderr });
    });

    let stdout = tokio_util::io::StreamReader::new(
        receiver_stream(stdout_rx).filter(|c| std::future::ready(!is_empty(c))),
    );
    Ok(RunningCommand {
        stdout: Box::pin(stdout),
        exit: Box::pin(async move {
            exit_rx.await.unwrap_or(CommandExit { code: None, stderr: Vec::new() })
        }),
    })
}

fn is_empty(chunk: &io::Result<Bytes>) -> bool {
    matches!(chunk, Ok(bytes) if bytes.is_empty())
}

fn receiver_stream(
    mut rx: mpsc::Receiver<io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The exec's exit code once Docker reports it ended (it may say "running" for a moment after
/// its stream closed).
async fn exit_code(docker: &Docker, exec_id: &str) -> Option<i32> {
    for _ in 0..100 {
        match docker.inspect_exec(exec_id).await {
            Ok(inspect) if inspect.running == Some(true) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(inspect) => return inspect.exit_code.map(|c| c as i32),
            Err(_) => return None,
        }
    }
    None
}
