//! The shapes of the API's JSON bodies, for the OpenAPI document only. Handlers build their
//! JSON elsewhere; `tests/openapi.rs` compares real answers with these, key by key.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Deserialize;
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
