//! Sandbox providers behind one trait, and the process handle they give back.
//!
//! A *sandbox* is where a user's shells run: a working directory on the host (`local`), a
//! container (`docker`) or a pod (`kubernetes`). A user's sessions (tabs) are TTY processes
//! started in the same sandbox. This module knows nothing of HTTP, sessions or the store: it
//! makes, lists and destroys sandboxes and starts processes in them.

pub mod docker;
mod docker_exec;
pub mod docker_image;
mod docker_policy;
mod docker_run;
pub mod local;
pub mod pty;
pub mod stub;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::Result;

/// A name for a user that is safe as a file, directory or volume name: safe characters kept
/// (at most 40), the rest replaced, and 128 bits of the SHA-256 of the whole name, so two users
/// never share one (no collision can be searched for, unlike the 32-bit hash of kterm 0.1,
/// whose names these replace: a workspace volume or directory made by 0.1 is not found again).
pub fn safe_name(user: &str) -> String {
    use sha2::{Digest, Sha256};
    let safe: String = user
        .chars()
        .take(40)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    let digest = Sha256::digest(user.as_bytes());
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{safe}-{hash}")
}

/// What a new sandbox is for.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub user: String,
    pub namespace: String,
}

/// A sandbox that exists.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    pub user: String,
    pub namespace: String,
    /// The workspace directory, as the processes inside see it.
    pub workspace: PathBuf,
    /// Whether it can run processes now (a stopped container cannot).
    pub running: bool,
    /// Made for the warm pool (its labels say so; the store says whether it was claimed).
    pub warm: bool,
}

/// A TTY process to start in a sandbox.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The argv; empty means the backend's login shell (`bash -l`, else `sh -l`).
    pub command: Vec<String>,
    /// A shell snippet run by `sh` before the command; its exports reach the command.
    pub init: Option<String>,
    /// Environment on top of the backend's base (`PATH`, `HOME`, `TERM`, ...).
    pub env: Vec<(String, String)>,
    pub cols: u16,
    pub rows: u16,
}

impl ProcessSpec {
    /// The session this process is for, from its environment.
    pub fn session_id(&self) -> Option<String> {
        self.env.iter().find(|(k, _)| k == "KTERM_SESSION_ID").map(|(_, v)| v.clone())
    }

    /// The argv to execute, with `shell` standing in for an empty command and the init snippet
    /// wrapped around it as `sh -c 'eval "$KTERM_INIT"; exec "$@"' kterm-init ARGV...`, so that
    /// no value is ever pasted into a command line.
    pub fn argv(&self, shell: &[&str]) -> (Vec<String>, Vec<(String, String)>) {
        let mut argv: Vec<String> = if self.command.is_empty() {
            shell.iter().map(|s| s.to_string()).collect()
        } else {
            self.command.clone()
        };
        let mut env = self.env.clone();
        if let Some(init) = self.init.as_ref().filter(|s| !s.trim().is_empty()) {
            let mut wrapped = vec![
                "sh".to_string(),
                "-c".to_string(),
                "eval \"$KTERM_INIT\"; unset KTERM_INIT; exec \"$@\"".to_string(),
                "kterm-init".to_string(),
            ];
            wrapped.append(&mut argv);
            argv = wrapped;
            env.push(("KTERM_INIT".into(), init.clone()));
        }
        (argv, env)
    }
}

/// Control of a started process, apart from its byte streams.
#[async_trait]
pub trait ProcessControl: Send + Sync {
    /// Tells a process started as a stub which session it became.
    fn bind_session(&self, _session_id: &str) {}
    /// Whether the process is known to have ended (without waiting).
    fn has_ended(&self) -> bool;

    async fn resize(&self, cols: u16, rows: u16) -> Result<()>;
    /// Resolves when the process has ended, with its exit code (`None` when killed by a signal
    /// or unknown). Safe to call more than once.
    async fn wait(&self) -> Option<i32>;
    /// Ends the process (hang-up, then kill).
    async fn kill(&self);
}

/// A started TTY process: its output (stdout and stderr merged, as a PTY does), its input, and
/// its control.
pub struct TtyProcess {
    pub output: Pin<Box<dyn AsyncRead + Send>>,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    pub control: Arc<dyn ProcessControl>,
}

/// One implementation per engine; the session registry and the pool use only this.
#[async_trait]
pub trait SandboxBackend: Send + Sync {
    /// `local`, `docker` or `kubernetes`.
    fn kind(&self) -> &'static str;

    /// Whether started processes outlive a restart of kterm (and so sessions can be resumed).
    fn processes_survive_restart(&self) -> bool;

    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<Sandbox>;

    /// Destroys a sandbox and everything running in it. Unknown ids are not an error.
    async fn destroy_sandbox(&self, id: &str) -> Result<()>;

    async fn start_process(&self, sandbox: &Sandbox, spec: &ProcessSpec) -> Result<TtyProcess>;

    /// The sandboxes of this server's instance that exist now.
    async fn list_sandboxes(&self) -> Result<Vec<Sandbox>>;

    /// `Err` with the reason while the backend cannot serve (for `/readyz`).
    async fn health(&self) -> Result<()>;

    /// Ends the processes a previous run of kterm left in an adopted sandbox.
    async fn end_stray_processes(&self, _sandbox: &Sandbox) {}

    /// Whether this backend keeps a warm pool of sandboxes.
    fn supports_pool(&self) -> bool {
        false
    }

    /// A sandbox bound to nobody yet, for the warm pool.
    async fn create_warm_sandbox(&self, _namespace: &str) -> Result<Sandbox> {
        Err(crate::error::Error::Internal(format!("the {} backend has no warm pool", self.kind())))
    }

    /// Starts a stub in `sandbox` (see [`stub`]); `activate` turns it into a session's process.
    async fn start_stub(&self, _sandbox: &Sandbox) -> Result<TtyProcess> {
        Err(crate::error::Error::Internal(format!("the {} backend has no stubs", self.kind())))
    }

    /// The activation line that makes a stub run what [`SandboxBackend::start_process`] would.
    fn activation(&self, _spec: &ProcessSpec) -> Vec<u8> {
        Vec::new()
    }

    /// Starts a non-interactive command (no TTY) in the sandbox, as the sandbox's user, in its
    /// workspace: `stdin` (if any) is fed to it and then closed; its stdout is streamed back;
    /// stderr and the exit code come with [`RunningCommand::exit`]. The argv is executed as is
    /// (no shell unless it names one), so values passed in it are never parsed as code.
    async fn run(
        &self,
        sandbox: &Sandbox,
        argv: &[String],
        stdin: Option<ByteStream>,
    ) -> Result<RunningCommand>;
}

/// Bytes arriving over time: a command's input.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// How a command ended.
#[derive(Debug, Clone)]
pub struct CommandExit {
    /// `None` when killed by a signal or unknown.
    pub code: Option<i32>,
    /// The start of its stderr (at most [`MAX_STDERR`] bytes are kept).
    pub stderr: Vec<u8>,
}

/// How much of a command's stderr is kept.
pub const MAX_STDERR: usize = 64 * 1024;

/// A command started by [`SandboxBackend::run`]. Read `stdout` to its end (or drop it) before
/// awaiting `exit`: output nobody reads holds the command up. Dropping both ends the
/// command's connection (the local backend kills it).
pub struct RunningCommand {
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    pub exit: Pin<Box<dyn Future<Output = CommandExit> + Send>>,
}

/// Appends what fits of `chunk` to a stderr buffer capped at [`MAX_STDERR`].
pub(crate) fn keep_stderr(buffer: &mut Vec<u8>, chunk: &[u8]) {
    let room = MAX_STDERR.saturating_sub(buffer.len());
    buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn safe_names_stay_inside_and_differ() {
        let a = safe_name("../../etc");
        assert!(!a.contains('/') && !a.starts_with('.'), "{a}");
        assert_ne!(safe_name("a/b"), safe_name("a_b"));
        assert_eq!(safe_name("alice").len(), "alice-".len() + 32, "128 bits of hash");
    }

    /// The 32-bit FNV-1a of kterm 0.1's names.
    fn fnv32(name: &str) -> u32 {
        name.bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
            as u32
    }

    /// Two user names whose 0.1 names were equal (same characters once unsafe ones are
    /// replaced, same 32-bit hash: found here by brute force, as an attacker would) get
    /// different names now.
    #[test]
    fn names_that_collided_in_32_bits_differ() {
        use std::collections::HashMap;
        let old = |name: &str| {
            let safe: String = name
                .chars()
                .take(40)
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            format!("{safe}-{:08x}", fnv32(name))
        };
        // "a" and 14 characters that all become "_": one old prefix for 4^14 names.
        let name = |mut i: u64| {
            let mut out = String::from("a");
            for _ in 0..14 {
                out.push(['.', '@', '+', '='][(i % 4) as usize]);
                i /= 4;
            }
            out
        };
        let mut seen: HashMap<u32, String> = HashMap::new();
        let (a, b) = (0u64..)
            .map(name)
            .find_map(|n| seen.insert(fnv32(&n), n.clone()).map(|other| (other, n)))
            .expect("a collision");
        assert_eq!(old(&a), old(&b), "{a} and {b} shared one workspace in 0.1");
        assert_ne!(safe_name(&a), safe_name(&b));
    }
}
