//! The HTTP side of authentication: the [`Caller`] extractor every API handler takes, the
//! WebSocket's variant that also takes a single-use ticket, and the helpers that read
//! credentials and the client's address off a request. The decisions are `crate::auth`'s.

use std::collections::HashMap;
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

use crate::app::AppState;
use crate::audit::{Action, Event, Outcome};
use crate::auth::{Credentials, Via, COOKIE_NAME};
use crate::error::{Error, Result};
use crate::session::Caller;

impl FromRequest for Caller {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Caller, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await.map(|(caller, _)| caller) })
    }
}

pub fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| Error::Internal("application state missing".into()))
}

/// The caller of a request and how they proved it, or 401. (Writes from a foreign Origin never
/// get here: [`super::security::guard_writes`] refuses them first, in every mode.)
pub async fn authenticate(req: &HttpRequest) -> Result<(Caller, Via)> {
    let state = app_state(req)?;
    state.auth.authenticate(&credentials(req, &state)).await
}

/// For the terminal WebSocket: `?ticket=` (single use, for this session only) when present,
/// else the usual credentials.
pub async fn authenticate_websocket(req: &HttpRequest, session: &str) -> Result<Caller> {
    let state = app_state(req)?;
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| Error::BadRequest(format!("invalid query string: {e}")))?;
    match query.get("ticket") {
        Some(ticket) => state.auth.redeem_ticket(ticket, session, &credentials(req, &state)).await,
        None => authenticate(req).await.map(|(caller, _)| caller),
    }
}

/// Everything on `req` that may say who is calling.
pub fn credentials(req: &HttpRequest, state: &AppState) -> Credentials {
    let auth = &state.config.auth;
    let text = |name: &str| {
        req.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string());
    let groups =
        (!auth.proxy_groups_header.is_empty()).then(|| text(&auth.proxy_groups_header)).flatten();
    let repeated = |name: &str| !name.is_empty() && req.headers().get_all(name).count() > 1;
    Credentials {
        bearer,
        cookie: cookie(req),
        proxy_user: text(&auth.proxy_user_header),
        proxy_groups: groups,
        proxy_header_repeated: repeated(&auth.proxy_user_header)
            || repeated(&auth.proxy_groups_header),
        peer: req.peer_addr().map(|a| a.ip()),
        client: client_address(req, state),
        request: format!("{} {}", req.method(), req.path()),
    }
}

/// The value of the `kterm_session` cookie.
pub fn cookie(req: &HttpRequest) -> Option<String> {
    req.cookie(COOKIE_NAME).map(|c| c.value().to_string())
}

/// The client's address: the TCP peer, or the last `X-Forwarded-For` hop when the peer is a
/// trusted proxy.
pub fn client_address(req: &HttpRequest, state: &AppState) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    if state.auth.is_trusted_proxy(peer) {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok());
        if let Some(client) = forwarded {
            return Some(client.to_string());
        }
    }
    Some(peer.to_string())
}

/// Audits a request refused after authentication (403, 429), with the error as the reason.
pub async fn record_denial(
    state: &AppState,
    req: &HttpRequest,
    user: Option<&str>,
    session: Option<&str>,
    error: &Error,
) {
    let mut event = Event::new(Action::Denied, Outcome::Denied)
        .client(client_address(req, state))
        .detail(format!("{} {}: {error}", req.method(), req.path()));
    if let Some(user) = user {
        event = event.user(user);
    }
    if let Some(session) = session {
        event = event.session(session);
    }
    state.audit.record(event).await;
}
