//! The REST API under `/api/v1` and the health endpoints. Handlers are thin: they
//! authenticate (the [`Caller`] extractor), call the registry, and shape JSON.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::{client_address, record_denial};
use super::routes::Routes;
use crate::app::AppState;
use crate::audit::{Action, Event, Outcome};
use crate::error::{Error, Result};
use crate::session::{Caller, CreateSession};
use crate::store::SessionRecord;

pub fn routes(routes: &mut Routes<'_>) {
    routes
        .post("/sessions", create_session)
        .get("/sessions", list_sessions)
        .get("/sessions/{id}", get_session)
        .delete("/sessions/{id}", delete_session)
        .post("/sessions/{id}/resize", resize_session)
        .get("/sessions/{id}/ws", super::ws::attach)
        .get("/me", me)
        .get("/profiles", profiles)
        .get("/pool", pool)
        .get("/backend", backend);
}

/// The SPEC's session object.
pub fn session_json(
    req: &HttpRequest,
    state: &AppState,
    record: &SessionRecord,
) -> serde_json::Value {
    json!({
        "id": record.id,
        "user": record.user,
        "namespace": record.namespace,
        "profile": record.profile,
        "sandbox_id": record.sandbox_id,
        "status": record.status,
        "created_at": record.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "last_active": record.last_active.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "expires_at": record.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "websocket_url": format!("{}/api/v1/sessions/{}/ws", websocket_base(req, state), record.id),
        "context": record.context,
        "exit_code": record.exit_code,
        "end_reason": record.end_reason,
        "ended_at": record.ended_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "recorded": recorded(state, &record.id),
    })
}

/// Whether session `id` has a recording to play (`GET /api/v1/sessions/{id}/recording`).
fn recorded(state: &AppState, id: &str) -> bool {
    state.registry.recordings().and_then(|r| r.path(id)).is_some_and(|path| path.is_file())
}

/// `ws://host[/base]` as the client reached us, or as `server.public_url` says.
pub(super) fn websocket_base(req: &HttpRequest, state: &AppState) -> String {
    let public = state.config.server.public_url.trim_end_matches('/');
    if let Some(rest) = public.strip_prefix("https://") {
        return format!("wss://{rest}");
    }
    if let Some(rest) = public.strip_prefix("http://") {
        return format!("ws://{rest}");
    }
    // As the client reached us; forwarding headers count only from trusted proxies.
    let scheme = if super::hosts::public_scheme(req, state) == "https" { "wss" } else { "ws" };
    let host =
        super::hosts::public_host(req, state).unwrap_or_else(|| state.config.server.listen.clone());
    format!("{scheme}://{host}")
}

async fn create_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Payload,
) -> Result<HttpResponse> {
    let body = read_body(body, state.config.server.max_request_body.0 as usize).await?;
    // An empty body means all defaults; anything else must be the SPEC's object.
    let request: CreateSession = if body.iter().all(u8::is_ascii_whitespace) {
        CreateSession::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error::BadRequest(format!("invalid session request: {e}")))?
    };
    let record = match create_limited(&state, &caller, request).await {
        Ok(record) => record,
        Err(e) => {
            if matches!(e, Error::Forbidden(_) | Error::LimitReached(_) | Error::RateLimited { .. })
            {
                record_denial(&state, &req, Some(&caller.user), None, &e).await;
            }
            return Err(e);
        }
    };
    let event = Event::new(Action::SessionCreate, Outcome::Ok)
        .user(&caller.user)
        .client(client_address(&req, &state))
        .session(&record.id)
        .detail(format!("namespace={} sandbox={}", record.namespace, record.sandbox_id));
    state.audit.record(event).await;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("{}/api/v1/sessions/{}", state.config.server.base_path(), record.id),
        ))
        .json(session_json(&req, &state, &record)))
}

/// Creation under the per-user rate limit (`sessions.create_per_minute`).
async fn create_limited(
    state: &AppState,
    caller: &Caller,
    request: CreateSession,
) -> Result<SessionRecord> {
    state.session_rate.hit(&caller.user).map_err(|retry_after| Error::RateLimited {
        message: format!(
            "user {} creates sessions too fast; the limit is {} a minute \
             (sessions.create_per_minute)",
            caller.user, state.config.sessions.create_per_minute
        ),
        retry_after,
    })?;
    state.registry.create(caller, request).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn list_sessions(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    let records = state.registry.list(&caller, query.all).await?;
    let sessions: Vec<_> = records.iter().map(|r| session_json(&req, &state, r)).collect();
    Ok(HttpResponse::Ok().json(json!({ "sessions": sessions })))
}

async fn get_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let record = state.registry.get(&caller, &id).await?;
    Ok(HttpResponse::Ok().json(session_json(&req, &state, &record)))
}

async fn delete_session(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    state.registry.delete(&caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resize {
    cols: u16,
    rows: u16,
}

async fn resize_session(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse> {
    // The body is read only once the caller is known: without credentials, 401 whatever it is.
    let body: Resize = read_json(body, state.config.server.max_request_body.0 as usize).await?;
    let session = state.registry.live(&caller, &id)?;
    if session.has_exited() {
        return Err(Error::Conflict(format!("session {} has ended", session.info.id)));
    }
    session.resize(body.cols, body.rows).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn me(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "user": caller.user,
        "admin": caller.admin,
        "groups": caller.groups,
        "namespaces": caller.namespaces,
    }))
}

/// `GET /api/v1/profiles`: the profiles the caller may use.
async fn profiles(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    let profiles = state.registry.profiles().usable_by(&caller);
    HttpResponse::Ok().json(json!({ "profiles": profiles }))
}

async fn pool(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    super::require_admin(&req, &state, &caller).await?;
    Ok(HttpResponse::Ok().json(state.registry.pool().status()))
}

/// `GET /api/v1/backend` (admins): the backend's kind, whether its engine answers (and its
/// version), and this instance's sandboxes per namespace.
async fn backend(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    super::require_admin(&req, &state, &caller).await?;
    let backend = state.registry.backend();
    let (version, reason) = match backend.engine_version().await {
        Ok(version) => (version, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut namespaces: std::collections::BTreeMap<String, (u32, u32)> = Default::default();
    let listed = match reason {
        None => backend.list_sandboxes().await.map_err(|e| e.to_string()),
        Some(ref reason) => Err(reason.clone()),
    };
    if let Ok(sandboxes) = &listed {
        for sandbox in sandboxes {
            let counts = namespaces.entry(sandbox.namespace.clone()).or_default();
            counts.0 += 1;
            counts.1 += u32::from(sandbox.running);
        }
    }
    let namespaces: Vec<_> = namespaces
        .into_iter()
        .map(|(name, (sandboxes, running))| json!({"name": name, "sandboxes": sandboxes, "running": running}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "kind": backend.kind(),
        "reachable": listed.is_ok(),
        "reason": listed.err(),
        "server_version": version,
        "namespaces": namespaces,
    })))
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let problem = match state.store.ping().await {
        Err(e) => Some(match e.store_unavailable() {
            Some(reason) => format!("{reason} ({e})"),
            None => format!("state store: {e}"),
        }),
        Ok(()) => state.registry.backend().health().await.err().map(|e| e.to_string()),
    };
    match problem {
        None => HttpResponse::Ok().content_type("text/plain").body("ready\n"),
        Some(reason) => HttpResponse::ServiceUnavailable()
            .json(json!({"error": {"code": "not_ready", "message": reason}})),
    }
}

/// `/metrics`: open in mode `none`; otherwise `Authorization: Bearer <server.metrics_token>`
/// (compared in constant time) or an admin's credentials.
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    if state.config.auth.mode != crate::config::AuthMode::None && !metrics_token(&req, &state) {
        let (caller, _) = super::auth::authenticate(&req).await?;
        super::require_admin(&req, &state, &caller).await?;
    }
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode()))
}

/// Whether the request carries `server.metrics_token` as its bearer token.
fn metrics_token(req: &HttpRequest, state: &AppState) -> bool {
    use crate::auth::secret::{constant_time_eq, sha256};
    let expected = &state.config.server.metrics_token;
    if expected.is_empty() {
        return false;
    }
    let presented = super::auth::credentials(req, state).bearer.unwrap_or_default();
    constant_time_eq(&sha256(&presented), &sha256(expected))
}

/// Reads a JSON body of at most `limit` bytes, after the handler's other extractors (the
/// caller first): actix would otherwise answer a bad body before checking credentials.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    body: web::Payload,
    limit: usize,
) -> Result<T> {
    let bytes = read_body(body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))
}

/// Reads a body of at most `limit` bytes (`server.max_request_body`).
pub async fn read_body(mut body: web::Payload, limit: usize) -> Result<web::Bytes> {
    use futures_util::StreamExt;
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("reading the body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(Error::TooLarge(format!(
                "request body is larger than {limit} bytes (server.max_request_body)"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// Unknown routes: JSON under `/api`, plain text elsewhere.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse> {
    if req.path().starts_with("/api/") {
        return Err(Error::NotFound(format!("no such endpoint: {} {}", req.method(), req.path())));
    }
    Ok(HttpResponse::NotFound().content_type("text/plain").body("not found\n"))
}
