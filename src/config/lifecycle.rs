//! The lifecycle keys: how long a sandbox outlives its last session (`[sandboxes]`), whether
//! shells survive kterm (`sessions.persistence`), what a graceful stop does with the
//! sandboxes (`server.on_shutdown`), and session recordings (`[recording]`).

use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use super::units::{ByteSize, HumanDuration};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxesConfig {
    /// A sandbox with no sessions left is removed after this long (`0s`: with its last
    /// session).
    pub idle_timeout: HumanDuration,
}

impl Default for SandboxesConfig {
    fn default() -> Self {
        SandboxesConfig { idle_timeout: HumanDuration::secs(15 * 60) }
    }
}

/// Whether each session's shell runs inside tmux in its sandbox (and so survives kterm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Persistence {
    /// tmux when the sandbox has it, else a plain shell.
    Auto,
    /// Always tmux; a sandbox without it cannot run sessions (the shell says why and ends).
    Tmux,
    /// Plain shells: a restart of kterm ends them.
    None,
}

impl Persistence {
    /// The value the in-sandbox start script reads (`KTERM_PERSIST`).
    pub fn as_str(self) -> &'static str {
        match self {
            Persistence::Auto => "auto",
            Persistence::Tmux => "tmux",
            Persistence::None => "none",
        }
    }
}

/// What a graceful stop (SIGTERM) does with the users' sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnShutdown {
    /// Keep them (and, with tmux, their shells) for the next start to adopt.
    Keep,
    /// End every session and remove every sandbox of this instance.
    Delete,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Record each session's output (and input, with `audit.record_input`) as asciicast v2.
    pub enabled: bool,
    /// Where recordings go; empty: `recordings` beside the state file.
    pub directory: PathBuf,
    /// Recordings older than this are deleted.
    pub retention: HumanDuration,
    /// A session's recording stops growing at this size.
    pub max_size: ByteSize,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            enabled: false,
            directory: PathBuf::new(),
            retention: HumanDuration::secs(30 * 24 * 3600),
            max_size: ByteSize(50 << 20),
        }
    }
}
