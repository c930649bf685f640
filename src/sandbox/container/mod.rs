//! What every exec-based backend shares, and the adapter that makes an engine a backend.
//!
//! An exec-based engine (Docker, Kubernetes, the tests' fake) fills in a
//! [`ContainerPlatform`]: make, list, remove and relabel sandboxes, and start commands in them
//! (on a TTY, or with pipes). Everything else is here and the same for all of them:
//! - [`ContainerBackend`]: the [`SandboxBackend`](super::SandboxBackend) built on a platform,
//!   with pre-started shells and warm sandboxes;
//! - `labels.rs`: the SPEC's labels, roles and sandbox names;
//! - `persist.rs`: shells that survive kterm (tmux in the sandbox, see `sandbox/tmux.rs`);
//! - `stub.rs`: the stub protocol (pre-started shells and their activation line);
//! - `exec.rs`: a TTY exec as a session's process, and ending it by the PID it recorded (no
//!   engine can signal an exec);
//! - `hardening.rs`: the vocabulary of a locked-down sandbox (its user, its limits), which
//!   each engine translates into its own terms.

mod backend;
pub mod exec;
pub mod hardening;
pub mod labels;
mod persist;
pub mod stub;

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use tokio::io::AsyncWrite;

use super::shell::ShellCommand;
use super::{ByteStream, RunningCommand, Sandbox, SandboxSpec};
use crate::error::Result;

pub use backend::ContainerBackend;

/// Where the workspace is inside every container and pod sandbox (SPEC).
pub const WORKSPACE: &str = "/home/user/workspace";
/// The sandbox user's home.
pub const HOME: &str = "/home/user";
/// Where sessions record their PIDs (on the sandbox's own tmpfs).
pub const RUN_DIR: &str = "/tmp/.kterm";

/// Where a sandbox keeps its user's home and its sessions' PID files, as its processes see them.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub home: String,
    pub run_dir: String,
}

impl Layout {
    /// The layout of every container and pod sandbox.
    pub fn standard() -> Layout {
        Layout { home: HOME.into(), run_dir: RUN_DIR.into() }
    }
}

/// The calls an exec-based engine fills in; [`ContainerBackend`] does the rest.
#[async_trait]
pub trait ContainerPlatform: Send + Sync + 'static {
    /// `docker`, `kubernetes` or `fake`.
    fn kind(&self) -> &'static str;

    /// Where `sandbox` keeps its home and its run directory.
    fn layout(&self, sandbox: &Sandbox) -> Layout;

    /// Makes a sandbox for `spec` and starts it; it is ready for execs when this returns.
    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox>;

    /// Removes a sandbox and everything in it; an unknown id is not an error.
    async fn destroy(&self, id: &str) -> Result<()>;

    /// The sandboxes of this instance (its instance label only).
    async fn list(&self) -> Result<Vec<Sandbox>>;

    /// `Err` with the reason while the engine cannot serve.
    async fn health(&self) -> Result<()>;

    /// The engine's version, as it reports it.
    async fn version(&self) -> Result<String>;

    /// Why sandbox `id` can run nothing any more (removed, evicted, stopped), as a person
    /// reads it; `None` while it looks fine or the engine cannot be asked.
    async fn lost(&self, _id: &str) -> Option<String> {
        None
    }

    /// Whether a sandbox can be made before its user is known (not, for example, when each
    /// user's workspace is a volume that must be mounted when the sandbox is made).
    fn can_prewarm(&self) -> bool;

    /// Shows that a claimed warm sandbox is `user`'s (renames it, relabels it).
    async fn show_owner(&self, sandbox: &Sandbox, user: &str) -> Result<()>;

    /// Starts a command on a TTY in the sandbox, as its user, in its workspace. A missing or
    /// stopped sandbox is [`crate::error::Error::SandboxGone`].
    async fn exec_tty(&self, sandbox: &Sandbox, request: TtyRequest<'_>) -> Result<TtyExec>;

    /// Starts a command with pipes, as [`super::SandboxBackend::run`] says.
    async fn exec(&self, sandbox: &Sandbox, request: PipedRequest<'_>) -> Result<RunningCommand>;

    /// The engine's own access decisions, where it makes them (see
    /// [`super::SandboxBackend::access_review`]).
    fn access_review(&self) -> Option<&dyn super::AccessReview>;
}

/// A TTY exec to start: the program and its terminal's size.
pub struct TtyRequest<'a> {
    pub command: &'a ShellCommand,
    pub cols: u16,
    pub rows: u16,
}

/// A piped exec to start: its argv (executed as is) and what to feed its stdin.
pub struct PipedRequest<'a> {
    pub argv: &'a [String],
    pub stdin: Option<ByteStream>,
}

/// A started TTY exec, as an engine hands it over.
pub struct TtyExec {
    /// The terminal's output; it ends when the exec has ended (or its connection broke).
    pub output: Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    pub control: Arc<dyn ExecControl>,
}

/// What only the engine can do with a started exec.
#[async_trait]
pub trait ExecControl: Send + Sync {
    async fn resize(&self, cols: u16, rows: u16) -> Result<()>;
    /// The exit code, asked once the output has ended (`None`: killed by a signal, or unknown).
    async fn exit_code(&self) -> Option<i32>;
}
