//! `GET /api/v1/sandboxes` and `DELETE /api/v1/sandboxes/{id}`: a user's sandboxes (everyone's
//! for admins) and ending one. Another user's sandbox is 404, as for sessions.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::routes::Routes;
use crate::app::AppState;
use crate::error::Result;
use crate::session::{Caller, SandboxSummary};

pub fn routes(routes: &mut Routes<'_>) {
    routes.get("/sandboxes", list).delete("/sandboxes/{id}", delete);
}

fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> serde_json::Value {
    match at {
        Some(at) => json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None => serde_json::Value::Null,
    }
}

/// Whether a sandbox's workspace outlives it (a per-user volume, the local backend's host
/// directory) or goes with it (a tmpfs).
fn workspace_kind(state: &AppState) -> &'static str {
    let persistent = match state.registry.backend().kind() {
        "local" => true,
        "docker" => !state.config.docker.workspace_volume_prefix.is_empty(),
        _ => false,
    };
    if persistent {
        "persistent"
    } else {
        "temporary"
    }
}

fn sandbox_json(state: &AppState, s: &SandboxSummary) -> serde_json::Value {
    json!({
        "id": s.view.id,
        "user": s.view.key.user,
        "namespace": s.view.key.namespace,
        "profile": s.view.key.profile,
        "sessions": s.sessions,
        "created_at": time(s.view.created_at),
        "expires_at": time(s.view.expires_at),
        "idle_expires_at": time(s.view.idle_expires_at),
        "idle_timeout_secs": state.config.sandboxes.idle_timeout.0.as_secs(),
        "workspace": workspace_kind(state),
    })
}

async fn list(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    let sandboxes: Vec<_> =
        state.registry.list_sandboxes(&caller).iter().map(|s| sandbox_json(&state, s)).collect();
    HttpResponse::Ok().json(json!({ "sandboxes": sandboxes }))
}

async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    state.registry.delete_sandbox(&caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
