//! Login, logout and WebSocket tickets: `/api/v1/auth/*` and `/api/v1/sessions/{id}/ticket`.
//!
//! A login sets the `kterm_session` cookie: HttpOnly, SameSite=Strict, Secure when served over
//! TLS or when `server.public_url` is https, for `auth.cookie_ttl`.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::{authenticate, client_address, cookie};
use super::routes::Routes;
use crate::app::AppState;
use crate::auth::{mode_name, Proof, COOKIE_NAME};
use crate::config::AuthMode;
use crate::error::{Error, Result};
use crate::session::Caller;

pub fn routes(routes: &mut Routes<'_>) {
    routes
        .get("/auth/login", login_form)
        .post("/auth/login", login)
        .post("/auth/logout", logout)
        .post("/sessions/{id}/ticket", ticket);
}

/// What the login form must ask for; needs no credentials.
async fn login_form(state: web::Data<AppState>) -> HttpResponse {
    let mode = state.auth.mode();
    let fields: &[&str] = match mode {
        AuthMode::Local => &["username", "password"],
        AuthMode::Token => &["token"],
        AuthMode::None | AuthMode::Proxy => &[],
    };
    HttpResponse::Ok().json(json!({"mode": mode_name(mode), "fields": fields}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
}

async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    // A foreign Origin was refused before this (`security::guard_writes`).
    let client = client_address(&req, &state);
    let body: LoginBody = if body.iter().all(u8::is_ascii_whitespace) {
        LoginBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error::BadRequest(format!("invalid login request: {e}")))?
    };
    let proof = match (state.auth.mode(), body) {
        (AuthMode::None | AuthMode::Proxy, _) => Proof::Authenticated(authenticate(&req).await?.0),
        (_, LoginBody { username: Some(username), password: Some(password), token: None }) => {
            Proof::Password { username, password }
        }
        (_, LoginBody { username: None, password: None, token: Some(token) }) => {
            Proof::Token(token)
        }
        _ => {
            return Err(Error::BadRequest(
                "send {\"username\", \"password\"} or {\"token\"}".into(),
            ))
        }
    };
    let session = state.auth.login(proof, client).await?;
    let max_age = time::Duration::seconds(
        i64::try_from(state.config.auth.cookie_ttl.0.as_secs()).unwrap_or(i64::MAX),
    );
    let cookie = session_cookie(&req, &state, session.token).max_age(max_age).finish();
    Ok(HttpResponse::NoContent().cookie(cookie).finish())
}

async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    let client = client_address(&req, &state);
    state.auth.logout(cookie(&req).as_deref(), &caller, client).await?;
    let mut gone = session_cookie(&req, &state, String::new()).finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// `POST /api/v1/sessions/{id}/ticket`: a single-use ticket to open this session's WebSocket
/// as `?ticket=`, for clients that cannot send a cookie or header there.
async fn ticket(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    // A session still starting has a ticket too: its WebSocket follows the start.
    let session = match state.registry.live(&caller, &id) {
        Ok(session) => session.info.id.clone(),
        Err(not_live) => state.registry.pending(&caller, &id).ok_or(not_live)?.id.clone(),
    };
    let (ticket, ttl) = state.auth.issue_ticket(&caller, &session)?;
    let url = format!(
        "{}/api/v1/sessions/{session}/ws?ticket={ticket}",
        super::api::websocket_base(&req, &state),
    );
    Ok(HttpResponse::Created().json(json!({
        "ticket": ticket,
        "expires_in": ttl.as_secs(),
        "websocket_url": url,
    })))
}

/// The cookie's attributes; the caller adds its lifetime or makes it a removal.
fn session_cookie(
    req: &HttpRequest,
    state: &AppState,
    value: String,
) -> actix_web::cookie::CookieBuilder<'static> {
    let public = &state.config.server.public_url;
    let secure = state.config.tls.enabled()
        || public.starts_with("https://")
        || super::hosts::public_scheme(req, state) == "https";
    let path = match state.config.server.base_path() {
        "" => "/".to_string(),
        base => base.to_string(),
    };
    Cookie::build(COOKIE_NAME, value)
        .path(path)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
}
