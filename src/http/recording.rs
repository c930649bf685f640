//! `GET /api/v1/sessions/{id}/recording`: a session's asciicast v2 recording (`[recording]`),
//! for its owner and admins; anyone else gets 404, as for the session itself.

use actix_web::{web, HttpResponse};

use super::routes::Routes;
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::session::Caller;

pub fn routes(routes: &mut Routes<'_>) {
    routes.get("/sessions/{id}/recording", recording);
}

async fn recording(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    // The session first: another user's is 404 whether or not it was recorded.
    let record = state.registry.get(&caller, &id).await?;
    let missing = || Error::NotFound(format!("session {} has no recording", record.id));
    let path = state
        .registry
        .recordings()
        .and_then(|recordings| recordings.path(&record.id))
        .ok_or_else(missing)?;
    let body = match tokio::fs::read(&path).await {
        Ok(body) => body,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    Ok(HttpResponse::Ok()
        .content_type("application/x-asciicast")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"kterm-{}.cast\"", record.id),
        ))
        .body(body))
}
