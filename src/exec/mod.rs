//! Commands run for a client in a session's sandbox (`POST /api/v1/sessions/{id}/exec`): a
//! non-interactive argv with its stdin, stdout, stderr and exit code, under a time limit, on
//! any backend through [`SandboxBackend::run`].
//!
//! Invariants:
//! - An [`Exec`] exists only for a caller who may see the session (its owner or an admin);
//!   others get the same 404 as for an unknown session. An ended session is 409.
//! - The argv is executed as given, never through a shell (see [`script`]); `cwd` passes the
//!   files API's path rules and is resolved and checked inside the sandbox.
//! - At most `exec.max_concurrent` execs (and waits) run per sandbox: a [`Slot`] is held from
//!   the start until the exit is known.
//! - A command does not outlive its exec: at its timeout, or when its client goes away before
//!   the end, it and its descendants are killed in the sandbox ([`Killer`]).
//! - Memory is bounded: output is streamed with backpressure, and the JSON answer keeps at
//!   most `exec.max_output` bytes per stream (the rest is read and dropped: `truncated`).

mod script;
pub mod wire;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

use crate::audit::{Action, Audit, Event, Outcome};
use crate::config::ExecConfig;
use crate::error::{Error, Result};
use crate::files::scripts;
use crate::files::RelPath;
use crate::limits::{ConcurrencyLimit, Slot};
use crate::sandbox::{ByteStream, CommandExit, Sandbox, SandboxBackend};
use crate::session::{Caller, SessionRegistry};

/// How long a killed command gets to end its output before kterm stops waiting for it.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long the kill command itself may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most variables one exec may set.
const MAX_ENV: usize = 256;
/// Most argv entries.
const MAX_ARGS: usize = 4096;
/// The audit row's argv is cut at this many bytes.
const AUDIT_ARGV: usize = 2048;

/// The body of `POST …/exec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// Text fed to the command's stdin (then closed); without it (and `stdin_base64`), stdin
    /// is empty.
    pub stdin: Option<String>,
    /// Bytes fed to stdin, base64-encoded (for input that is not UTF-8).
    pub stdin_base64: Option<String>,
    /// `"30s"`, `"2m"`; default `exec.timeout`, at most `exec.max_timeout`.
    pub timeout: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Workspace-relative directory to run in (default: the workspace).
    pub cwd: Option<String>,
}

impl ExecRequest {
    /// Reads a request body; a field of the wrong type is 400 naming it.
    pub fn from_json(body: &[u8]) -> Result<ExecRequest> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))?;
        serde_json::from_value(value.clone()).map_err(|e| {
            let field = value.as_object().and_then(|fields| {
                fields.iter().find_map(|(name, v)| {
                    let v = v.clone();
                    let bad = match name.as_str() {
                        "argv" => serde_json::from_value::<Vec<String>>(v).is_err(),
                        "stdin" | "stdin_base64" | "timeout" | "cwd" => {
                            serde_json::from_value::<Option<String>>(v).is_err()
                        }
                        "env" => serde_json::from_value::<BTreeMap<String, String>>(v).is_err(),
                        _ => false,
                    };
                    bad.then(|| name.clone())
                })
            });
            match field {
                Some(field) => Error::BadRequest(format!("{field}: {e}")),
                None => Error::BadRequest(format!("invalid exec request: {e}")),
            }
        })
    }
}

/// A checked [`ExecRequest`].
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub stdin: Option<Bytes>,
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
    pub cwd: RelPath,
}

impl ExecSpec {
    /// Checks a request; a bad field is 400 naming it.
    pub fn parse(request: ExecRequest, config: &ExecConfig) -> Result<ExecSpec> {
        if request.argv.is_empty() {
            return Err(Error::BadRequest("argv must name a command (it is empty)".into()));
        }
        if request.argv.len() > MAX_ARGS {
            return Err(Error::BadRequest(format!("argv has more than {MAX_ARGS} entries")));
        }
        if let Some(i) = request.argv.iter().position(|a| a.contains('\0')) {
            return Err(Error::BadRequest(format!("argv[{i}] contains a NUL byte")));
        }
        if request.argv[0].is_empty() {
            return Err(Error::BadRequest("argv[0] is empty".into()));
        }
        let stdin = match (request.stdin, request.stdin_base64) {
            (Some(_), Some(_)) => {
                return Err(Error::BadRequest("give stdin or stdin_base64, not both".into()))
            }
            (Some(text), None) => Some(Bytes::from(text)),
            (None, Some(encoded)) => Some(Bytes::from(
                wire::decode_base64(&encoded)
                    .ok_or_else(|| Error::BadRequest("stdin_base64 is not valid base64".into()))?,
            )),
            (None, None) => None,
        };
        let timeout = parse_timeout("timeout", request.timeout.as_deref(), config)?
            .unwrap_or(config.timeout.0);
        if request.env.len() > MAX_ENV {
            return Err(Error::BadRequest(format!("env has more than {MAX_ENV} variables")));
        }
        for (name, value) in &request.env {
            if !is_env_name(name) {
                return Err(Error::BadRequest(format!(
                    "env name {name:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
                )));
            }
            if value.contains('\0') {
                return Err(Error::BadRequest(format!("env {name} contains a NUL byte")));
            }
        }
        let cwd = RelPath::parse(request.cwd.as_deref().unwrap_or(""))
            .map_err(|e| Error::BadRequest(format!("cwd: {e}")))?;
        Ok(ExecSpec {
            argv: request.argv,
            stdin,
            timeout,
            env: request.env.into_iter().collect(),
            cwd,
        })
    }
}

/// A time limit from a request's `field`: `None` when absent; 400 when unreadable, zero or
/// above `exec.max_timeout`.
pub fn parse_timeout(
    field: &str,
    raw: Option<&str>,
    config: &ExecConfig,
) -> Result<Option<Duration>> {
    let Some(raw) = raw else { return Ok(None) };
    let value = humantime::parse_duration(raw.trim()).map_err(|e| {
        Error::BadRequest(format!("{field} {raw:?} is not a duration such as \"30s\": {e}"))
    })?;
    if value.is_zero() {
        return Err(Error::BadRequest(format!("{field} must be above 0s")));
    }
    if value > config.max_timeout.0 {
        return Err(Error::BadRequest(format!(
            "{field} {raw:?} is above exec.max_timeout ({})",
            humantime::format_duration(config.max_timeout.0)
        )));
    }
    Ok(Some(value))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 256
}

/// What happens while a command runs, in order: output chunks as they come, then its end.
#[derive(Debug)]
pub enum ExecEvent {
    Stdout(Bytes),
    Stderr(Bytes),
    Exit(ExecEnd),
}

/// How an exec ended.
#[derive(Debug, Clone, Copy)]
pub struct ExecEnd {
    /// `None` when it was killed (timeout, signal) or the backend could not say.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration: Duration,
}

/// The buffered result of an exec (the JSON answer).
#[derive(Debug, Default)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration: Duration,
}

/// Where the agent API's shared limits live (held by the app state).
pub struct ExecLimits {
    /// Execs and waits in progress per sandbox (`exec.max_concurrent`).
    pub per_sandbox: ConcurrencyLimit,
}

impl ExecLimits {
    pub fn new(config: &ExecConfig) -> ExecLimits {
        ExecLimits { per_sandbox: ConcurrencyLimit::new(config.max_concurrent) }
    }

    /// A place for one more exec or wait in `sandbox_id`; 429 when it has all it may.
    pub fn take(&self, sandbox_id: &str) -> Result<Slot> {
        self.per_sandbox.try_take(sandbox_id).ok_or_else(|| Error::RateLimited {
            message: format!(
                "sandbox {sandbox_id} already runs {} execs and waits (exec.max_concurrent)",
                self.per_sandbox.max()
            ),
            retry_after: Duration::from_secs(1),
        })
    }
}

/// Kills a started command in its sandbox unless disarmed (it ended by itself).
struct Killer {
    backend: Arc<dyn SandboxBackend>,
    sandbox: Sandbox,
    pid: u32,
    armed: bool,
}

impl Killer {
    async fn kill(&mut self) {
        self.armed = false;
        kill_in_sandbox(self.backend.clone(), self.sandbox.clone(), self.pid).await;
    }
}

impl Drop for Killer {
    fn drop(&mut self) {
        if self.armed {
            let (backend, sandbox, pid) = (self.backend.clone(), self.sandbox.clone(), self.pid);
            tokio::spawn(kill_in_sandbox(backend, sandbox, pid));
        }
    }
}

async fn kill_in_sandbox(backend: Arc<dyn SandboxBackend>, sandbox: Sandbox, pid: u32) {
    let work = async {
        let command = backend.run(&sandbox, &script::kill_argv(pid), None).await?;
        let mut sink = Vec::new();
        let _ = command.stdout.take(64 * 1024).read_to_end(&mut sink).await;
        Ok::<CommandExit, Error>(command.exit.await)
    };
    match tokio::time::timeout(KILL_TIMEOUT, work).await {
        Ok(Ok(exit)) if exit.code == Some(0) => {}
        Ok(Ok(exit)) => {
            tracing::warn!(sandbox = %sandbox.id, pid, code = ?exit.code, "killing an exec failed")
        }
        Ok(Err(e)) => {
            tracing::warn!(sandbox = %sandbox.id, pid, error = %e, "killing an exec failed")
        }
        Err(_) => tracing::warn!(sandbox = %sandbox.id, pid, "killing an exec timed out"),
    }
}

/// A command that has started in its sandbox (its checks passed).
pub struct Exec {
    stdout: Pin<Box<dyn AsyncRead + Send>>,
    stderr: Pin<Box<dyn Stream<Item = Bytes> + Send>>,
    exit: Pin<Box<dyn std::future::Future<Output = CommandExit> + Send>>,
    killer: Killer,
    started: Instant,
    timeout: Duration,
    _slot: Slot,
}

impl Exec {
    /// Starts `spec` in session `session_id`'s sandbox for `caller`, and writes its audit row.
    pub async fn start(
        registry: &SessionRegistry,
        limits: &ExecLimits,
        audit: &Audit,
        caller: &Caller,
        session_id: &str,
        spec: ExecSpec,
    ) -> Result<Exec> {
        let (session, sandbox) = registry.sandbox_of(caller, session_id).await?;
        let slot = limits.take(&sandbox.id)?;
        let backend = registry.backend().clone();
        let workspace = sandbox.workspace.to_string_lossy().into_owned();
        let argv = script::start_argv(&workspace, spec.cwd.as_str(), &spec.env, &spec.argv);
        let stdin: Option<ByteStream> =
            spec.stdin.map(|b| Box::pin(futures_util::stream::iter([Ok(b)])) as ByteStream);
        let started = Instant::now();
        let command = backend.run(&sandbox, &argv, stdin).await?;
        let mut stderr = command.stderr.tap();
        let mut stdout = BufReader::new(command.stdout);
        let mut header = Vec::new();
        let mut limited = (&mut stdout).take(64);
        let read = limited.read_until(b'\n', &mut header);
        let header_read = tokio::time::timeout(spec.timeout, read).await;
        let pid = std::str::from_utf8(&header)
            .ok()
            .and_then(|h| h.trim_end().strip_prefix(script::HEADER))
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid else {
            // The checks failed (their exit code says which), or the sandbox did not answer.
            if header_read.is_err() {
                return Err(Error::BackendUnavailable(format!(
                    "the exec in sandbox {} did not start within its timeout",
                    sandbox.id
                )));
            }
            drop(stdout);
            let mut message = Vec::new();
            while let Some(chunk) = stderr.next().await {
                message.extend_from_slice(&chunk[..chunk.len().min(4096)]);
            }
            let exit = tokio::time::timeout(KILL_GRACE, command.exit).await.ok();
            return Err(start_error(&spec.cwd, exit.and_then(|e| e.code), &message));
        };
        let detail: String = serde_json::to_string(&spec.argv).unwrap_or_default();
        let detail = cut(&detail, AUDIT_ARGV);
        audit.record_later(
            Event::new(Action::Exec, Outcome::Ok)
                .user(&caller.user)
                .session(&session.info.id)
                .detail(detail),
        );
        Ok(Exec {
            stdout: Box::pin(stdout),
            stderr,
            exit: command.exit,
            killer: Killer { backend, sandbox, pid, armed: true },
            started,
            timeout: spec.timeout,
            _slot: slot,
        })
    }

    /// The command's output and end as they happen. Dropping the receiver before the end
    /// kills the command.
    pub fn events(self) -> mpsc::Receiver<ExecEvent> {
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(self.pump(tx));
        rx
    }

    /// Runs the command to its end and keeps at most `max` bytes of each stream.
    pub async fn collect(self, max: usize) -> ExecResult {
        let mut events = self.events();
        let mut result = ExecResult::default();
        while let Some(event) = events.recv().await {
            match event {
                ExecEvent::Stdout(data) => {
                    keep(&mut result.stdout, &data, max, &mut result.truncated)
                }
                ExecEvent::Stderr(data) => {
                    keep(&mut result.stderr, &data, max, &mut result.truncated)
                }
                ExecEvent::Exit(end) => {
                    result.exit_code = end.exit_code;
                    result.timed_out = end.timed_out;
                    result.duration = end.duration;
                }
            }
        }
        result
    }

    async fn pump(mut self, tx: mpsc::Sender<ExecEvent>) {
        let mut chunk = vec![0u8; 64 * 1024];
        let (mut stdout_done, mut stderr_done) = (false, false);
        let mut timed_out = false;
        let mut deadline = tokio::time::Instant::from_std(self.started + self.timeout);
        while !(stdout_done && stderr_done) {
            let event = tokio::select! {
                read = self.stdout.read(&mut chunk), if !stdout_done => match read {
                    Ok(n @ 1..) => Some(ExecEvent::Stdout(Bytes::copy_from_slice(&chunk[..n]))),
                    _ => { stdout_done = true; None }
                },
                data = self.stderr.next(), if !stderr_done => match data {
                    Some(data) => Some(ExecEvent::Stderr(data)),
                    None => { stderr_done = true; None }
                },
                () = tokio::time::sleep_until(deadline) => {
                    if timed_out {
                        // Killed, yet its output did not end (a descendant kterm did not
                        // find keeps it open): stop waiting.
                        break;
                    }
                    timed_out = true;
                    self.killer.kill().await;
                    deadline = tokio::time::Instant::now() + KILL_GRACE;
                    None
                }
            };
            if let Some(event) = event {
                if tx.send(event).await.is_err() {
                    // The client went away: the killer ends the command.
                    return;
                }
            }
        }
        let exit = tokio::time::timeout(KILL_GRACE, &mut self.exit).await.ok();
        if exit.is_some() {
            self.killer.armed = false;
        }
        let end = ExecEnd {
            exit_code: if timed_out { None } else { exit.and_then(|e| e.code) },
            timed_out,
            duration: self.started.elapsed(),
        };
        let _ = tx.send(ExecEvent::Exit(end)).await;
    }
}

/// Appends what fits of `data` under `max`, noting when some did not.
fn keep(buffer: &mut Vec<u8>, data: &[u8], max: usize, truncated: &mut bool) {
    let room = max.saturating_sub(buffer.len());
    if data.len() > room {
        *truncated = true;
    }
    buffer.extend_from_slice(&data[..data.len().min(room)]);
}

/// `text` cut at `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Why an exec did not start, from the start script's exit code.
fn start_error(cwd: &RelPath, code: Option<i32>, stderr: &[u8]) -> Error {
    let cwd = if cwd.is_root() { "." } else { cwd.as_str() };
    match code {
        Some(scripts::OUTSIDE) => Error::BadRequest(format!("cwd {cwd} leaves the workspace")),
        Some(scripts::MISSING) => Error::BadRequest(format!("cwd {cwd} does not exist")),
        Some(scripts::NOT_DIR) => Error::BadRequest(format!("cwd {cwd} is not a directory")),
        Some(scripts::NO_WORKSPACE) => {
            Error::SandboxGone("the workspace of the sandbox is not there".into())
        }
        code => Error::BackendUnavailable(format!(
            "the exec did not start (exit {code:?}): {}",
            String::from_utf8_lossy(stderr).trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> Result<ExecSpec> {
        let request: ExecRequest =
            serde_json::from_value(json).map_err(|e| Error::BadRequest(e.to_string()))?;
        ExecSpec::parse(request, &ExecConfig::default())
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (serde_json::json!({"argv": []}), "argv"),
            (serde_json::json!({"argv": ["a\u{0}b"]}), "argv[0]"),
            (serde_json::json!({"argv": ["true"], "timeout": "soon"}), "timeout"),
            (serde_json::json!({"argv": ["true"], "timeout": "2h"}), "exec.max_timeout"),
            (serde_json::json!({"argv": ["true"], "env": {"A=B": "1"}}), "env name"),
            (serde_json::json!({"argv": ["true"], "cwd": "../x"}), "cwd"),
            (serde_json::json!({"argv": ["true"], "cwd": "/etc"}), "cwd"),
            (serde_json::json!({"argv": ["true"], "stdin_base64": "!!"}), "stdin_base64"),
        ];
        for (body, field) in cases {
            let err = request(body.clone()).unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{body}: {err}");
            assert!(err.to_string().contains(field), "{body}: {err}");
        }
        let ok = request(serde_json::json!({"argv": ["ls", "-l"], "timeout": "5s", "cwd": "a/b"}))
            .unwrap();
        assert_eq!(ok.timeout, Duration::from_secs(5));
        assert_eq!(ok.cwd.as_str(), "a/b");
    }

    #[test]
    fn output_is_kept_up_to_the_cap() {
        let (mut out, mut truncated) = (Vec::new(), false);
        keep(&mut out, b"abc", 4, &mut truncated);
        assert!(!truncated);
        keep(&mut out, b"def", 4, &mut truncated);
        assert_eq!(out, b"abcd");
        assert!(truncated);
    }
}
