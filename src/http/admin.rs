//! Admin-only endpoints: `GET /api/v1/audit`, the audit log in pages, newest first.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::record_denial;
use super::routes::Routes;
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::session::Caller;
use crate::store::AuditFilter;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

pub fn routes(routes: &mut Routes<'_>) {
    routes.get("/audit", audit);
}

/// 403 (audited) unless the caller is an admin.
pub async fn require_admin(req: &HttpRequest, state: &AppState, caller: &Caller) -> Result<()> {
    if caller.admin {
        return Ok(());
    }
    let error = Error::Forbidden(format!("{} is not an admin (auth.admins)", caller.user));
    record_denial(state, req, Some(&caller.user), None, &error).await;
    Err(error)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<u32>,
    before: Option<i64>,
    user: Option<String>,
    action: Option<String>,
    session: Option<String>,
}

/// `?limit=` (1 to 1000, default 100), `?before=ID` (the previous page's `next`), and the
/// filters `user`, `action`, `session`. Answers `{"events": [...], "next": ID|null}`.
async fn audit(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse> {
    require_admin(&req, &state, &caller).await?;
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::BadRequest(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let filter = AuditFilter {
        user: query.user,
        action: query.action,
        session_id: query.session,
        before: query.before,
        limit,
    };
    let events = state.store.list_audit(filter).await?;
    let next = if events.len() == limit as usize { events.last().map(|e| e.id) } else { None };
    let events: Vec<_> = events
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "action": e.action,
                "outcome": e.outcome,
                "user": e.user,
                "client": e.client,
                "session": e.session_id,
                "detail": e.detail,
            })
        })
        .collect();
    // Control and invisible characters (a user name with U+202E...) are sent as \u escapes.
    let body = crate::audit::escape_json(&json!({ "events": events, "next": next }).to_string());
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}
