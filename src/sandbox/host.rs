//! Non-interactive commands on this host, with pipes: [`super::SandboxBackend::run`] for the
//! `local` backend and the fake platform of the tests. A command is killed if its handle is
//! dropped before it ends, and its stderr is drained all along so it never blocks on it.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::{feed_stdin, ByteStream, CommandExit, RunningCommand, StderrSink};
use crate::error::{Error, Result};

/// Starts `argv` in `dir` with exactly `env` as its environment.
pub fn run_command(
    env: &[(String, String)],
    dir: &Path,
    argv: &[String],
    stdin: Option<ByteStream>,
) -> Result<RunningCommand> {
    let (program, args) =
        argv.split_first().ok_or_else(|| Error::Internal("empty command".into()))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io(format!("starting {program:?}"), e))?;
    if let (Some(body), Some(input)) = (stdin, child.stdin.take()) {
        tokio::spawn(feed_stdin(body, input));
    }
    let stdout = child.stdout.take().ok_or_else(|| Error::Internal("no stdout pipe".into()))?;
    let mut stderr_pipe =
        child.stderr.take().ok_or_else(|| Error::Internal("no stderr pipe".into()))?;
    let sink = StderrSink::default();
    let stderr = sink.clone();
    let drained = tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = stderr_pipe.read(&mut chunk).await {
            stderr.push(bytes::Bytes::copy_from_slice(&chunk[..n])).await;
        }
        stderr.close();
    });
    let kept = sink.clone();
    Ok(RunningCommand {
        stdout: Box::pin(stdout),
        stderr: sink,
        exit: Box::pin(async move {
            let code = child.wait().await.ok().and_then(|status| status.code());
            let _ = drained.await;
            CommandExit { code, stderr: kept.take_kept() }
        }),
    })
}
