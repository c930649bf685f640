//! Non-interactive commands on this host, with pipes: [`super::SandboxBackend::run`] for the
//! `local` backend and the fake platform of the tests. A command is killed if its handle is
//! dropped before it ends, and its stderr is drained all along so it never blocks on it.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::{feed_stdin, keep_stderr, ByteStream, CommandExit, RunningCommand};
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
    let stderr = tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = stderr_pipe.read(&mut chunk).await {
            keep_stderr(&mut kept, &chunk[..n]);
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
