//! The shapes of the API's JSON bodies, for the OpenAPI document only. Handlers build their
//! JSON elsewhere; `tests/openapi.rs` compares real answers with these, key by key.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error: `{"error": {"code", "message"}}` with a fitting status.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `too_large`,
    /// `unsupported_media_type`, `limit_reached`, `backend_unavailable`, `busy`, `timeout`,
    /// `not_ready`, `internal`.
    pub code: String,
    pub message: String,
}

/// `POST /api/v1/sessions` (every field optional; an empty body is all defaults).
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Defaults to the backend's namespace (or the user's first allowed one).
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
    pub namespace: Option<String>,
    /// Defaults to `default` if the caller may use it, else their first profile
    /// (`GET /api/v1/profiles`).
    #[schema(min_length = 1)]
    pub profile: Option<String>,
    #[schema(minimum = 1, maximum = 1000)]
    pub cols: Option<u16>,
    #[schema(minimum = 1, maximum = 1000)]
    pub rows: Option<u16>,
    /// Keys `[a-z][a-z0-9_]{0,63}`, values at most 1 KiB, at most 32 entries; each becomes
    /// `KTERM_CTX_<KEY>` in the shell.
    pub context: Option<BTreeMap<String, String>>,
}

/// A session (a terminal tab).
#[derive(ToSchema)]
pub struct Session {
    pub id: String,
    pub user: String,
    pub namespace: String,
    pub profile: String,
    pub sandbox_id: String,
    /// `pending`, `running`, `terminated` or `failed`.
    pub status: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub last_active: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub websocket_url: String,
    pub context: BTreeMap<String, String>,
    pub exit_code: Option<i32>,
    /// Why kterm ended it (`deleted`, `idle_timeout`, `max_lifetime`, `server_shutdown`, ...).
    pub end_reason: Option<String>,
    /// When it ended (null while it runs).
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    /// Whether `GET /api/v1/sessions/{id}/recording` has a recording of it (`[recording]`).
    pub recorded: bool,
}

#[derive(ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Session>,
}

#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resize {
    #[schema(minimum = 1, maximum = 1000)]
    pub cols: u16,
    #[schema(minimum = 1, maximum = 1000)]
    pub rows: u16,
}

#[derive(ToSchema)]
pub struct Me {
    pub user: String,
    pub admin: bool,
    pub groups: Vec<String>,
    pub namespaces: Vec<String>,
}

#[derive(ToSchema)]
pub struct Profile {
    pub name: String,
    pub description: String,
}

#[derive(ToSchema)]
pub struct ProfileList {
    pub profiles: Vec<Profile>,
}

/// The warm pool's totals and, per (namespace, profile), its state and counters.
#[derive(ToSchema)]
pub struct PoolStatus {
    pub enabled: bool,
    pub backend: String,
    pub min: u32,
    pub max: u32,
    pub target: u32,
    pub warm: u32,
    pub creating: u32,
    pub hits: u64,
    pub misses: u64,
    pub sandboxes: Vec<String>,
    pub pools: Vec<PoolKey>,
}

/// The sandbox backend as `GET /api/v1/backend` reports it.
#[derive(ToSchema)]
pub struct BackendStatus {
    /// `local`, `docker` or `kubernetes`.
    pub kind: String,
    /// Whether its engine (Docker daemon, API server) answers.
    pub reachable: bool,
    /// Why not, when it does not.
    pub reason: Option<String>,
    /// The engine's version (`v1.24.0` for an API server); null for `local` or unreachable.
    pub server_version: Option<String>,
    /// This instance's sandboxes (pods, containers) per namespace.
    pub namespaces: Vec<BackendNamespace>,
}

#[derive(ToSchema)]
pub struct BackendNamespace {
    pub name: String,
    pub sandboxes: u32,
    pub running: u32,
}

#[derive(ToSchema)]
pub struct PoolKey {
    pub namespace: String,
    pub profile: String,
    pub min: u32,
    pub max: u32,
    pub target: u32,
    pub warm: u32,
    pub creating: u32,
    pub claims_in_window: u32,
    pub hits: u64,
    pub misses: u64,
    pub sandboxes: Vec<String>,
}

/// One directory entry.
#[derive(ToSchema)]
pub struct FileEntry {
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    #[schema(rename = "type")]
    pub kind: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// Permission bits, e.g. `"0644"`.
    pub mode: String,
    /// For symlinks: what the link says.
    pub target: Option<String>,
}

#[derive(ToSchema)]
pub struct FileList {
    pub path: String,
    pub entries: Vec<FileEntry>,
}

/// `stat`: the entry with its path and ETag.
#[derive(ToSchema)]
pub struct FileStat {
    pub path: String,
    pub etag: String,
    pub name: String,
    #[schema(rename = "type")]
    pub kind: String,
    pub size: u64,
    pub mtime: i64,
    pub mode: String,
    pub target: Option<String>,
}

#[derive(ToSchema)]
pub struct CreatedPath {
    pub path: String,
}

#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    #[schema(pattern = "^[^\\x00]+$")]
    pub from: String,
    #[schema(pattern = "^[^\\x00]+$")]
    pub to: String,
}

/// `{"username", "password"}` (mode `local`) or `{"token"}` (mode `token`); in modes `none`
/// and `proxy` the body is ignored (the caller is who the request says).
#[derive(ToSchema, Deserialize)]
#[serde(untagged)]
pub enum Login {
    Password(PasswordLogin),
    Token(TokenLogin),
}

#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordLogin {
    pub username: String,
    pub password: String,
}

#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLogin {
    pub token: String,
}

#[derive(ToSchema)]
pub struct LoginForm {
    /// `none`, `token`, `local` or `proxy`.
    pub mode: String,
    pub fields: Vec<String>,
}

#[derive(ToSchema)]
pub struct Ticket {
    pub ticket: String,
    /// Seconds.
    pub expires_in: u64,
    pub websocket_url: String,
}

#[derive(ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    #[schema(format = DateTime)]
    pub at: String,
    pub action: String,
    pub outcome: String,
    pub user: Option<String>,
    pub client: Option<String>,
    pub session: Option<String>,
    pub detail: Option<String>,
}

#[derive(ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Pass as `before` for the next page; null on the last.
    pub next: Option<i64>,
}

/// A user's sandbox (`GET /api/v1/sandboxes`).
#[derive(ToSchema)]
pub struct Sandbox {
    pub id: String,
    pub user: String,
    pub namespace: String,
    pub profile: String,
    /// Sessions running in it.
    pub sessions: u64,
    /// When it became the user's.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// When it reaches `sessions.max_lifetime`.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// While no session uses it: when it is removed (`sandboxes.idle_timeout`).
    #[schema(format = DateTime)]
    pub idle_expires_at: Option<String>,
    pub idle_timeout_secs: u64,
    /// `persistent` (a volume or host directory outlives it) or `temporary`.
    pub workspace: String,
}

#[derive(ToSchema)]
pub struct SandboxList {
    pub sandboxes: Vec<Sandbox>,
}

/// The body of `POST …/exec`. The argv is executed as given (no shell unless it names one).
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The command and its arguments; `argv[0]` is looked up in the sandbox's `PATH`.
    #[schema(min_items = 1)]
    pub argv: Vec<String>,
    /// Text fed to stdin, then closed (without it and `stdin_base64`, stdin is empty).
    pub stdin: Option<String>,
    /// Bytes fed to stdin, base64 (standard alphabet, padded); not with `stdin`.
    pub stdin_base64: Option<String>,
    /// Time limit such as `"30s"` (default `exec.timeout`, at most `exec.max_timeout`); the
    /// command and its descendants are killed then.
    pub timeout: Option<String>,
    /// Variables set on top of the sandbox's environment; names `[A-Za-z_][A-Za-z0-9_]*`.
    pub env: Option<std::collections::BTreeMap<String, String>>,
    /// Directory to run in, relative to the workspace, checked as files paths are.
    pub cwd: Option<String>,
}

/// The answer of a buffered exec. Output that is valid UTF-8 is a string; output that is not
/// is its lossy text in `stdout`/`stderr` and its exact bytes in `stdout_base64`/`stderr_base64`.
#[derive(ToSchema, Serialize)]
pub struct ExecResult {
    /// `null` when killed (timeout, signal).
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Present only when stdout is not valid UTF-8: its exact bytes, base64.
    #[schema(nullable = false)]
    pub stdout_base64: Option<String>,
    /// Present only when stderr is not valid UTF-8: its exact bytes, base64.
    #[schema(nullable = false)]
    pub stderr_base64: Option<String>,
    /// A stream was longer than `exec.max_output` and was cut there.
    pub truncated: bool,
    /// Killed at its timeout.
    pub timed_out: bool,
    pub duration_ms: u64,
}

/// One line of an exec's NDJSON stream (`Accept: application/x-ndjson`): `stdout`/`stderr`
/// chunks (`data`, or `data_base64` when not UTF-8) as they come, then one `exit`.
#[derive(ToSchema, Serialize)]
pub struct ExecStreamLine {
    /// `stdout`, `stderr` or `exit`.
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(nullable = false)]
    pub data: Option<String>,
    #[schema(nullable = false)]
    pub data_base64: Option<String>,
    /// On `exit`.
    pub exit_code: Option<i32>,
    #[schema(nullable = false)]
    pub timed_out: Option<bool>,
    #[schema(nullable = false)]
    pub duration_ms: Option<u64>,
}

/// The body of `POST …/input`: `text` is typed first, then `keys`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputRequest {
    pub text: Option<String>,
    /// tmux key names: `Enter`, `Tab`, `Escape`, `BSpace`, `Space`, `Up`, `Down`, `Left`,
    /// `Right`, `Home`, `End`, `PageUp`, `PageDown`, `Insert`, `Delete`, `F1`-`F12`,
    /// `C-a`…`C-z`, `M-<key>`, or one character. An unknown name is 400.
    pub keys: Option<Vec<String>>,
}

#[derive(ToSchema, Serialize)]
pub struct ScreenCursor {
    pub row: u32,
    pub col: u32,
    pub visible: bool,
}

/// What the session's terminal shows now.
#[derive(ToSchema, Serialize)]
pub struct Screen {
    pub cols: u16,
    pub rows: u16,
    pub cursor: ScreenCursor,
    /// A full-screen program (vim, less, top) has the alternate screen on.
    pub alternate_screen: bool,
    /// The visible rows, top to bottom, trailing blanks trimmed (with `?format=ansi`, with SGR
    /// sequences).
    pub lines: Vec<String>,
    /// With `?scrollback=N`: up to N lines above the screen, oldest first.
    #[schema(nullable = false)]
    pub scrollback: Option<Vec<String>>,
}

/// The body of `POST …/wait`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitRequest {
    /// A regular expression (Rust `regex` syntax, multi-line: `^`/`$` match at line ends), at
    /// most 4096 bytes.
    pub pattern: String,
    /// Default `"10s"`, at most `exec.max_timeout`.
    pub timeout: Option<String>,
    /// `screen` (the visible lines joined with `\n`), `output` (output since the wait began,
    /// escape sequences removed) or `any` (the default).
    pub source: Option<String>,
}

#[derive(ToSchema, Serialize)]
pub struct WaitMatch {
    pub matched: bool,
    /// `screen` or `output`.
    pub source: String,
    /// The text that matched.
    #[serde(rename = "match")]
    pub text: String,
    /// Capture groups (`null` for one that took no part).
    pub groups: Vec<Option<String>>,
    /// On the screen: the row the match starts on.
    #[schema(nullable = false)]
    pub row: Option<u32>,
    pub elapsed_ms: u64,
}
