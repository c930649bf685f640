//! Sandbox providers behind one trait, the handles they give back, and what a backend can do
//! beyond the basics, said with types: [`SandboxBackend::stubs`] and
//! [`SandboxBackend::warm_sandboxes`] return a capability object, or `None`.
//!
//! A *sandbox* is where a user's shells run: a working directory on the host (`local`), a
//! container (`docker`) or a pod (`kubernetes`). A user's sessions (tabs) are TTY processes
//! started in the same sandbox. The layout of this folder:
//! - `mod.rs`: the trait, the capabilities and the handle types;
//! - `shell.rs`: the one place a session's argv and environment are built, for every backend;
//!   `tmux.rs`: running them in tmux so that they survive kterm;
//! - `local.rs`: shells on the host, like ttyd; `pty.rs` and `host.rs`: host processes;
//! - `container/`: what every exec-based backend shares (labels, workspace layout, the stub
//!   protocol, exec kill and exit handling, the hardening vocabulary) and
//!   [`container::ContainerBackend`], which turns a [`container::ContainerPlatform`] (the few
//!   calls an engine fills in) into a [`SandboxBackend`];
//! - `docker/`: the Docker platform (bollard); `fake.rs`: an in-memory platform for tests.
//!
//! This module knows nothing of HTTP, sessions or the store. Dependencies inside it point one
//! way: engines (`docker/`, `fake.rs`) -> `container/` -> `shell.rs`, `mod.rs`.

pub mod container;
pub mod docker;
pub mod fake;
pub mod host;
pub mod kubernetes;
pub mod local;
pub mod pty;
pub mod shell;
pub mod tmux;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::ByteSize;
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

/// The kind of sandbox a profile asks for: its image and resources. `None` is the backend's
/// own setting (`docker.image`, `docker.memory`, ...). A profile's environment and init
/// snippet belong to its sessions, not its sandboxes (see [`ProcessSpec`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub name: String,
    pub image: Option<String>,
    pub memory: Option<ByteSize>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
}

/// What a new sandbox is for: `user`'s, or (`None`) a warm one bound to nobody yet.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub user: Option<String>,
    pub namespace: String,
    pub profile: Arc<Profile>,
    /// Told where a slow start is (a pod being scheduled, its image pulled), if anyone waits.
    pub progress: Option<StartProgress>,
}

/// Where reports of a sandbox's start go (see [`StartPhase`]).
#[derive(Clone)]
pub struct StartProgress(Arc<dyn Fn(StartPhase, Option<String>) + Send + Sync>);

impl StartProgress {
    pub fn new(report: impl Fn(StartPhase, Option<String>) + Send + Sync + 'static) -> Self {
        StartProgress(Arc::new(report))
    }

    pub fn report(&self, phase: StartPhase, detail: Option<String>) {
        (self.0)(phase, detail)
    }
}

impl std::fmt::Debug for StartProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartProgress")
    }
}

/// Where a sandbox that is being made is, for people waiting on it (the SPEC's `status`
/// messages: `scheduling`, `pulling image`, `starting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum StartPhase {
    #[serde(rename = "scheduling")]
    Scheduling,
    #[serde(rename = "pulling image")]
    PullingImage,
    #[serde(rename = "starting")]
    Starting,
}

impl StartPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            StartPhase::Scheduling => "scheduling",
            StartPhase::PullingImage => "pulling image",
            StartPhase::Starting => "starting",
        }
    }
}

/// A sandbox that exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Sandbox {
    /// The engine's stable handle (a container's ID, a pod's name).
    pub id: String,
    /// What operators see (a container's name, which may change when it is claimed).
    pub name: String,
    /// Whose it is, as far as the backend knows (a claimed warm sandbox may not say: the store
    /// does).
    pub user: Option<String>,
    pub namespace: String,
    pub profile: String,
    /// The workspace directory, as the processes inside see it.
    pub workspace: PathBuf,
    /// Whether it can run processes now (a stopped container cannot).
    pub running: bool,
}

/// A TTY process to start in a sandbox.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The argv; empty means the sandbox's login shell (`bash -l`, else `sh -l`).
    pub command: Vec<String>,
    /// A shell snippet run by `sh` before the command; its exports reach the command.
    pub init: Option<String>,
    /// Environment on top of the backend's base (`PATH`, `HOME`, ...).
    pub env: Vec<(String, String)>,
    pub cols: u16,
    pub rows: u16,
}

impl ProcessSpec {
    /// The session this process is for, from its environment.
    pub fn session_id(&self) -> Option<String> {
        self.env.iter().find(|(k, _)| k == "KTERM_SESSION_ID").map(|(_, v)| v.clone())
    }
}

/// Control of a started process, apart from its byte streams.
#[async_trait]
pub trait ProcessControl: Send + Sync {
    /// Tells a process started as a stub which session it became (its end is then that
    /// session's to ask for).
    fn bind_session(&self, session_id: &str);
    /// Whether the process is known to have ended (without waiting).
    fn has_ended(&self) -> bool;

    async fn resize(&self, cols: u16, rows: u16) -> Result<()>;
    /// Resolves when the process has ended, with its exit code (`None` when killed by a signal
    /// or unknown). Safe to call more than once.
    async fn wait(&self) -> Option<i32>;
    /// Ends the process (hang-up, then kill).
    async fn kill(&self);
    /// Why the process was lost, once `wait` found it killed (no exit code, or a signal's)
    /// because its sandbox is gone (deleted from outside, evicted, stopped), as a person
    /// reads it.
    fn lost(&self) -> Option<String> {
        None
    }
}

/// A started TTY process: its output (stdout and stderr merged, as a PTY does), its input, and
/// its control.
pub struct TtyProcess {
    pub output: Pin<Box<dyn AsyncRead + Send>>,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    pub control: Arc<dyn ProcessControl>,
    /// The PTY itself when the process runs on one on this host (the `local` backend): then a
    /// session reads and writes it from the thread that serves its client, not through
    /// `output` and `input`.
    pub host_pty: Option<pty::HostPty>,
}

/// One implementation per engine; the session registry and the pool use only this and the
/// capabilities it hands out.
#[async_trait]
pub trait SandboxBackend: Send + Sync {
    /// `local`, `docker`, `kubernetes` (or `fake` in tests).
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

    /// The engine's version (a Docker daemon's, a Kubernetes API server's), where there is
    /// an engine (`GET /api/v1/backend`).
    async fn engine_version(&self) -> Result<Option<String>>;

    /// Ends the processes a previous run of kterm left in an adopted sandbox.
    async fn end_stray_processes(&self, sandbox: &Sandbox) -> Result<()>;

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

    /// Pre-started shells, where starting a process is slow enough to be worth doing ahead.
    fn stubs(&self) -> Option<&dyn StubShells>;

    /// Sandboxes made before their user is known (the warm pool), where the backend can.
    fn warm_sandboxes(&self) -> Option<&dyn WarmSandboxes>;

    /// Shells that outlive kterm (tmux in the sandbox, `sessions.persistence`), where the
    /// backend runs them.
    fn persistent_shells(&self) -> Option<&dyn PersistentShells>;

    /// The engine's own decision whether a user may act in a namespace (Kubernetes RBAC,
    /// `kubernetes.authorize_with_sar`), where the backend asks it.
    fn access_review(&self) -> Option<&dyn AccessReview>;
}

/// A backend whose engine decides who may do what where.
#[async_trait]
pub trait AccessReview: Send + Sync {
    /// `Err(Forbidden)` with the engine's reason when `user` (in `groups`) may not have
    /// sandboxes and shells in `namespace`.
    async fn authorize(&self, user: &str, groups: &[String], namespace: &str) -> Result<()>;
}

/// A backend whose sessions' shells may outlive kterm (each in its own tmux server in the
/// sandbox): after a restart, kterm finds them and attaches to them again.
#[async_trait]
pub trait PersistentShells: Send + Sync {
    /// The sessions whose shells live on in `sandbox`.
    async fn surviving(&self, sandbox: &Sandbox) -> Result<Vec<String>>;

    /// A new connection to session `session_id`'s shell in `sandbox` (its screen is redrawn);
    /// the previous run's connection, if still there, is detached.
    async fn reattach(
        &self,
        sandbox: &Sandbox,
        session_id: &str,
        cols: u16,
        rows: u16,
    ) -> Result<TtyProcess>;

    /// Ends what a previous run of kterm left in `sandbox` (stubs, shells), except the
    /// shells of the sessions in `keep`.
    async fn end_stray_except(&self, sandbox: &Sandbox, keep: &[String]) -> Result<()>;
}

/// A backend that can start a shell ahead of time: a *stub* waits, with echo off, for one
/// activation line that makes it a session's process (see [`container::stub`]).
#[async_trait]
pub trait StubShells: Send + Sync {
    /// Starts a stub in `sandbox`; resolves once it is ready for its activation line.
    async fn start_stub(&self, sandbox: &Sandbox) -> Result<TtyProcess>;

    /// Turns a stub in `sandbox` into what [`SandboxBackend::start_process`] would start there,
    /// sized for `spec`. Fails, and the stub is not to be used, when the stub does not take it
    /// (it died while it waited).
    async fn activate(
        &self,
        stub: TtyProcess,
        sandbox: &Sandbox,
        spec: &ProcessSpec,
    ) -> Result<TtyProcess>;
}

/// A backend that can make sandboxes before their user is known. Claims are decided by the
/// store; the backend only makes them and, once claimed, shows whose they are.
#[async_trait]
pub trait WarmSandboxes: StubShells {
    /// A sandbox of `spec` (whose `user` is `None`) bound to nobody yet.
    async fn create_warm(&self, spec: &SandboxSpec) -> Result<Sandbox>;

    /// Makes a claimed warm sandbox say whose it is where operators look (a container's name,
    /// a pod's labels). The store already says so; this is for people.
    async fn show_owner(&self, sandbox: &Sandbox, user: &str) -> Result<()>;
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
    /// Its stderr, kept (the start of it) for [`CommandExit::stderr`] unless tapped.
    pub stderr: StderrSink,
    pub exit: Pin<Box<dyn Future<Output = CommandExit> + Send>>,
}

/// Where a command's stderr goes as it comes: into a buffer capped at [`MAX_STDERR`] (what
/// [`CommandExit::stderr`] reports), or, once [`StderrSink::tap`]ped, to a reader that gets all
/// of it (what was kept before the tap first), with backpressure on the command.
///
/// Invariant: every chunk is either kept or sent to the tap, in order; the choice is made
/// under the lock that the tap is installed under.
#[derive(Clone, Default)]
pub struct StderrSink(Arc<std::sync::Mutex<SinkState>>);

#[derive(Default)]
struct SinkState {
    kept: Vec<u8>,
    tap: Option<tokio::sync::mpsc::Sender<Bytes>>,
}

impl StderrSink {
    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a chunk of stderr (waits while a tap's reader is behind).
    pub(crate) async fn push(&self, chunk: Bytes) {
        let tap = {
            let mut state = self.lock();
            match &state.tap {
                Some(tap) => tap.clone(),
                None => {
                    keep_stderr(&mut state.kept, &chunk);
                    return;
                }
            }
        };
        // A reader that went away loses the rest; the command is not held up by it.
        let _ = tap.send(chunk).await;
    }

    /// The end of stderr: a tap's reader sees its end.
    pub(crate) fn close(&self) {
        self.lock().tap = None;
    }

    /// What was kept (for [`CommandExit::stderr`]).
    pub(crate) fn take_kept(&self) -> Vec<u8> {
        std::mem::take(&mut self.lock().kept)
    }

    /// All of stderr from now on, starting with what was kept so far.
    pub fn tap(&self) -> Pin<Box<dyn Stream<Item = Bytes> + Send>> {
        use futures_util::StreamExt;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let mut state = self.lock();
        let kept = Bytes::from(std::mem::take(&mut state.kept));
        state.tap = Some(tx);
        let first = futures_util::stream::iter((!kept.is_empty()).then_some(kept));
        Box::pin(first.chain(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))))
    }
}

/// Feeds a command's input stream to its stdin, then closes it (a half-close, where the
/// connection is a socket). Stops when the command stops reading: its exit code tells why.
pub(crate) async fn feed_stdin(mut body: ByteStream, mut input: impl AsyncWrite + Unpin) {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    while let Some(Ok(chunk)) = body.next().await {
        if input.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = input.shutdown().await;
}

/// Appends what fits of `chunk` to a stderr buffer capped at [`MAX_STDERR`].
fn keep_stderr(buffer: &mut Vec<u8>, chunk: &[u8]) {
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
