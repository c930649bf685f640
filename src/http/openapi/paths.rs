//! One entry per route: method, path, parameters, bodies and answers. These functions are
//! never called; `tests/openapi.rs` checks that this list and the served routes
//! ([`crate::http::routes::registered`]) are the same.

#![allow(dead_code)]

use super::schemas::*;

#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "The process serves", content_type = "text/plain", body = String)))]
pub fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready", content_type = "text/plain", body = String),
        (status = 503, description = "The state store or the backend is not usable; the reason", body = ErrorBody)))]
pub fn readyz() {}

#[utoipa::path(get, path = "/metrics", tag = "health",
    security((), ("bearer" = []), ("cookie" = []), ("proxy" = [])),
    description = "Open in auth mode `none`; otherwise `server.metrics_token` as a bearer token, or an admin's credentials.",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody)))]
pub fn metrics() {}

#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions",
    request_body(content = CreateSession, description = "Optional; empty is all defaults"),
    responses(
        (status = 201, description = "The session (`pending` while a cold sandbox starts)", body = Session,
            headers(("Location" = String, description = "The session's URL"))),
        (status = 400, description = "Bad input (unknown profile, bad context)", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Namespace or profile not allowed", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Session limit or creation rate reached", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds, for a rate limit"))),
        (status = 503, description = "Backend unavailable", body = ErrorBody)))]
pub fn create_session() {}

#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    params(("all" = Option<bool>, Query, description = "Include ended sessions")),
    responses(
        (status = 200, description = "The caller's sessions (all for admins)", body = SessionList),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody)))]
pub fn list_sessions() {}

#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = Session),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown, or another user's", body = ErrorBody)))]
pub fn get_session() {}

#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "The shell is ended"),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown, or another user's", body = ErrorBody)))]
pub fn delete_session() {}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/resize", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    request_body = Resize,
    responses(
        (status = 204, description = "Resized"),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown, or another user's", body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody)))]
pub fn resize_session() {}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/ws", tag = "sessions",
    security(("bearer" = []), ("cookie" = []), ("proxy" = []), ("ticket" = [])),
    description = "The terminal WebSocket (see the README's protocol section): binary frames are terminal bytes, text frames JSON control messages.",
    params(("id" = String, Path, description = "Session id"),
        ("ticket" = Option<String>, Query, description = "A single-use ticket instead of credentials"),
        ("Upgrade" = String, Header, pattern = "^websocket$"),
        ("Connection" = String, Header, pattern = "^Upgrade$"),
        ("Sec-WebSocket-Version" = String, Header, pattern = "^13$"),
        ("Sec-WebSocket-Key" = String, Header, pattern = "^[A-Za-z0-9+/]{22}==$")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket handshake", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Foreign Origin", body = ErrorBody),
        (status = 404, description = "Unknown, ended, or another user's", body = ErrorBody)))]
pub fn attach() {}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/ticket", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 201, description = "A single-use WebSocket ticket", body = Ticket),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown, or another user's", body = ErrorBody),
        (status = 429, description = "Too many live tickets", body = ErrorBody)))]
pub fn ticket() {}

#[utoipa::path(get, path = "/api/v1/me", tag = "users",
    responses(
        (status = 200, description = "Who the caller is", body = Me),
        (status = 401, description = "No or bad credentials", body = ErrorBody)))]
pub fn me() {}

#[utoipa::path(get, path = "/api/v1/profiles", tag = "users",
    responses(
        (status = 200, description = "The profiles the caller may use", body = ProfileList),
        (status = 401, description = "No or bad credentials", body = ErrorBody)))]
pub fn profiles() {}

#[utoipa::path(get, path = "/api/v1/pool", tag = "admin",
    responses(
        (status = 200, description = "Warm pool state and counters", body = PoolStatus),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody)))]
pub fn pool() {}

#[utoipa::path(get, path = "/api/v1/backend", tag = "admin",
    responses(
        (status = 200, description = "The backend: kind, reachability, engine version, sandboxes per namespace", body = BackendStatus),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody)))]
pub fn backend() {}

#[utoipa::path(get, path = "/api/v1/audit", tag = "admin",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100"),
        ("before" = Option<i64>, Query, description = "The previous page's `next`"),
        ("user" = Option<String>, Query), ("action" = Option<String>, Query),
        ("session" = Option<String>, Query)),
    responses(
        (status = 200, description = "Audit events, newest first", body = AuditPage),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody)))]
pub fn audit() {}

#[utoipa::path(get, path = "/api/v1/auth/login", tag = "auth", security(()),
    responses((status = 200, description = "What the login form asks for", body = LoginForm)))]
pub fn login_form() {}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", security(()),
    request_body = Login,
    responses(
        (status = 204, description = "Logged in; the `kterm_session` cookie is set",
            headers(("Set-Cookie" = String))),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "Wrong credentials", body = ErrorBody),
        (status = 429, description = "Too many failed logins; retry later", body = ErrorBody)))]
pub fn login() {}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Logged out; the cookie is removed and the login's WebSockets closed"),
        (status = 401, description = "No or bad credentials", body = ErrorBody)))]
pub fn logout() {}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/files", tag = "files",
    params(("id" = String, Path, description = "Session id"),
        ("path" = Option<String>, Query, pattern = "^[^\\x00]*$", description = "A directory, relative to the workspace")),
    responses(
        (status = 200, description = "The directory's entries", body = FileList),
        (status = 400, description = "A path that leaves the workspace, or not a directory", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session or path", body = ErrorBody)))]
pub fn files_list() {}

#[utoipa::path(delete, path = "/api/v1/sessions/{id}/files", tag = "files",
    params(("id" = String, Path, description = "Session id"),
        ("path" = String, Query, pattern = "^[^\\x00]+$", description = "What to delete, relative to the workspace"),
        ("recursive" = Option<bool>, Query, description = "Delete a non-empty directory")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad path", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session or path", body = ErrorBody),
        (status = 409, description = "A non-empty directory without `recursive`", body = ErrorBody)))]
pub fn files_delete() {}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/files/content", tag = "files",
    params(("id" = String, Path, description = "Session id"),
        ("path" = String, Query, pattern = "^[^\\x00]+$", description = "A file, relative to the workspace"),
        ("download" = Option<bool>, Query, description = "As an attachment")),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>,
            headers(("ETag" = String))),
        (status = 400, description = "Bad path, or not a file", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session or path", body = ErrorBody),
        (status = 413, description = "Larger than files.max_read", body = ErrorBody)))]
pub fn files_read() {}

#[utoipa::path(put, path = "/api/v1/sessions/{id}/files/content", tag = "files",
    params(("id" = String, Path, description = "Session id"),
        ("path" = String, Query, pattern = "^[^\\x00]+$", description = "A file, relative to the workspace"),
        ("If-Match" = Option<String>, Header, description = "Write only over this ETag (or `*`: an existing file)"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: only a new file")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Written", headers(("ETag" = String))),
        (status = 400, description = "Bad path", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session", body = ErrorBody),
        (status = 409, description = "Changed underneath (If-Match), or exists (If-None-Match: *)", body = ErrorBody),
        (status = 413, description = "Larger than files.max_write", body = ErrorBody),
        (status = 503, description = "Uploads in progress hold files.memory; retry", body = ErrorBody)))]
pub fn files_write() {}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/files/stat", tag = "files",
    params(("id" = String, Path, description = "Session id"),
        ("path" = Option<String>, Query, pattern = "^[^\\x00]*$", description = "Relative to the workspace")),
    responses(
        (status = 200, description = "The entry", body = FileStat, headers(("ETag" = String))),
        (status = 400, description = "Bad path", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session or path", body = ErrorBody)))]
pub fn files_stat() {}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/files/mkdir", tag = "files",
    params(("id" = String, Path, description = "Session id"),
        ("path" = String, Query, pattern = "^[^\\x00]+$", description = "The new directory, relative to the workspace"),
        ("parents" = Option<bool>, Query, description = "Make missing parents too")),
    responses(
        (status = 201, description = "Made", body = CreatedPath),
        (status = 400, description = "Bad path", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session, or a missing parent", body = ErrorBody),
        (status = 409, description = "It exists", body = ErrorBody)))]
pub fn files_mkdir() {}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/files/rename", tag = "files",
    params(("id" = String, Path, description = "Session id")),
    request_body = Rename,
    responses(
        (status = 204, description = "Renamed"),
        (status = 400, description = "Bad path or body", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session or path", body = ErrorBody),
        (status = 409, description = "The target exists", body = ErrorBody)))]
pub fn files_rename() {}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/files/archive", tag = "files",
    params(("id" = String, Path, description = "Session id"),
        ("path" = Option<String>, Query, pattern = "^[^\\x00]*$", description = "A directory, relative to the workspace")),
    responses(
        (status = 200, description = "The directory as a tar stream", content_type = "application/x-tar", body = Vec<u8>),
        (status = 400, description = "Bad path", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session or path", body = ErrorBody)))]
pub fn files_archive() {}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses(
        (status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json"),
        (status = 401, description = "No or bad credentials", body = ErrorBody)))]
pub fn openapi_json() {}

#[utoipa::path(get, path = "/api/v1/sandboxes", tag = "sandboxes",
    responses(
        (status = 200, description = "The caller's sandboxes (everyone's for admins)", body = SandboxList),
        (status = 401, description = "No or bad credentials", body = ErrorBody)))]
pub fn list_sandboxes() {}

#[utoipa::path(delete, path = "/api/v1/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 204, description = "Its sessions ended (`sandbox_deleted`) and it is removed"),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown, or another user's", body = ErrorBody)))]
pub fn delete_sandbox() {}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/recording", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session's asciicast v2 recording", content_type = "application/x-asciicast", body = String),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown, another user's, or not recorded", body = ErrorBody)))]
pub fn recording() {}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/exec", tag = "agents",
    params(("id" = String, Path, description = "Session id"),
        ("Accept" = Option<String>, Header, description = "`application/x-ndjson`: stream the output as it comes")),
    request_body = ExecRequest,
    description = "Runs a non-interactive command in the session's sandbox, as the sandbox's user, in the workspace (or `cwd`). Audited (an `exec` row with the argv).",
    responses(
        (status = 200, description = "The command ended (or was killed at its timeout: `exit_code` null, `timed_out` true)",
            content((ExecResult = "application/json"), (ExecStreamLine = "application/x-ndjson"))),
        (status = 400, description = "Bad body: the field is named (argv, timeout, env, cwd, stdin_base64)", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session, or another user's", body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody),
        (status = 413, description = "Body larger than server.max_request_body", body = ErrorBody),
        (status = 429, description = "exec.per_minute or exec.max_concurrent reached", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 503, description = "The sandbox is gone or does not answer", body = ErrorBody)))]
pub fn exec() {}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/input", tag = "agents",
    params(("id" = String, Path, description = "Session id")),
    request_body = InputRequest,
    description = "Types into the session's shell as a user would, whether or not a browser is attached. Audited only with `audit.record_input`.",
    responses(
        (status = 204, description = "Typed"),
        (status = 400, description = "Bad body, or an unknown key name (named)", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session, or another user's", body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody),
        (status = 429, description = "exec.per_minute reached", body = ErrorBody)))]
pub fn input() {}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/screen", tag = "agents",
    params(("id" = String, Path, description = "Session id"),
        ("format" = Option<String>, Query, description = "`text` (default) or `ansi` (lines with SGR sequences)"),
        ("scrollback" = Option<u32>, Query, description = "Add up to this many lines above the screen (at most 10000)")),
    responses(
        (status = 200, description = "The screen", body = Screen),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session, or another user's", body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody),
        (status = 429, description = "exec.per_minute reached", body = ErrorBody)))]
pub fn screen() {}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/wait", tag = "agents",
    params(("id" = String, Path, description = "Session id")),
    request_body = WaitRequest,
    description = "Returns when the pattern matches the screen or the output since the call, so that a client never sleeps to wait for a program.",
    responses(
        (status = 200, description = "It matched", body = WaitMatch),
        (status = 400, description = "Bad body (pattern too long or invalid, bad timeout)", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 404, description = "Unknown session, or another user's", body = ErrorBody),
        (status = 408, description = "No match within the timeout", body = ErrorBody),
        (status = 409, description = "The session has ended (or ended while waiting)", body = ErrorBody),
        (status = 429, description = "exec.per_minute or exec.max_concurrent reached", body = ErrorBody)))]
pub fn wait() {}
