//! What every response and request goes through: security headers, the request-header limit,
//! the Origin check shared by the WebSocket and every write, and the guard against cross-site
//! writes.
//!
//! Invariant: a state-changing request (anything but GET, HEAD and OPTIONS), in every auth
//! mode, either carries an allowed `Origin`, or carries none and is not of a content type a
//! cross-site form or `fetch` can send without a preflight (`text/plain`, form or multipart).
//! Browsers send `Origin` on every cross-site write, so no other site can make one (a form
//! posted to kterm in mode `none` to create a session is refused).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName};
use actix_web::http::Method;
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{web, HttpRequest};

use crate::app::AppState;
use crate::config::{AuthMode, Config};
use crate::error::{Error, Result};

/// Sent on every response while mode `none` serves a non-loopback address.
pub const WARNING_HEADER: &str = "x-kterm-warning";

/// Headers added to every response that does not set them itself.
pub fn default_headers(config: &Config) -> DefaultHeaders {
    let ancestors = if config.server.frame_ancestors.is_empty() {
        "'none'".to_string()
    } else {
        config.server.frame_ancestors.join(" ")
    };
    // 'wasm-unsafe-eval' lets the page compile WebAssembly (the recording player's terminal
    // emulator), nothing more: no eval, no inline script.
    let csp = format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; \
         form-action 'self'; frame-ancestors {ancestors}"
    );
    let mut headers = DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CONTENT_SECURITY_POLICY, csp))
        // API answers are per user: never cached (assets set their own Cache-Control).
        .add((header::CACHE_CONTROL, "no-store"));
    if anonymous_remote(config) {
        headers = headers.add((
            HeaderName::from_static(WARNING_HEADER),
            "auth.mode is none on a non-loopback address: anyone who reaches this port gets a shell",
        ));
    }
    headers
}

/// Mode `none` on an address others can reach (allowed only with `auth.allow_none_remote`).
pub fn anonymous_remote(config: &Config) -> bool {
    config.auth.mode == AuthMode::None
        && config.listen_addr().is_ok_and(|addr| !addr.ip().is_loopback())
}

/// Refuses a request whose request line and headers exceed `server.max_request_headers`.
pub async fn limit_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> std::result::Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map_or(usize::MAX, |s| s.config.server.max_request_headers.0 as usize);
    let size = req.uri().to_string().len()
        + req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
    if size > limit {
        return Err(Error::HeadersTooLarge(format!(
            "the request line and headers are {size} bytes; the limit is {limit} \
             (server.max_request_headers)"
        ))
        .into());
    }
    next.call(req).await
}

/// SPEC: a present Origin must be the server's own (the scheme and host the request reached us
/// by, believing forwarding headers only from trusted proxies), `public_url`'s, or an allowed
/// one.
pub fn check_origin(req: &HttpRequest, state: &AppState) -> Result<()> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim_end_matches('/').to_ascii_lowercase();
    let own = super::hosts::public_host(req, state)
        .map(|host| format!("{}://{host}", super::hosts::public_scheme(req, state)))
        .map(|own| own.to_ascii_lowercase());
    let server = &state.config.server;
    let allowed = own.is_some_and(|own| origin == own)
        || (!server.public_url.is_empty() && origin == origin_of(&server.public_url))
        || server.allowed_origins.iter().any(|o| origin == origin_of(o));
    if allowed {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "Origin {origin} is not allowed here (server.allowed_origins)"
        )))
    }
}

/// Refuses cross-site writes; see the module's invariant. Audited.
pub async fn guard_writes(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> std::result::Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.call(req).await;
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await;
    };
    let refusal = match check_origin(req.request(), &state) {
        Err(e) => Some(e),
        Ok(()) if !req.headers().contains_key(header::ORIGIN) => simple_content_type(req.request()),
        Ok(()) => None,
    };
    if let Some(error) = refusal {
        super::auth::record_denial(&state, req.request(), None, None, &error).await;
        return Err(error.into());
    }
    // No clone of the request may live on here: routing needs it unshared.
    next.call(req).await
}

/// A write without an Origin whose content type a cross-site page could send: refused.
fn simple_content_type(req: &HttpRequest) -> Option<Error> {
    let kind = req.headers().get(header::CONTENT_TYPE)?;
    let kind = String::from_utf8_lossy(kind.as_bytes()).to_ascii_lowercase();
    let essence = kind.split(';').next().unwrap_or("").trim();
    let simple = matches!(
        essence,
        "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
    );
    simple.then(|| {
        Error::UnsupportedMediaType(format!(
            "Content-Type {essence} is refused on writes without an Origin header (a \
             cross-site form could send it); send application/json, or \
             application/octet-stream for file contents"
        ))
    })
}

/// `scheme://host[:port]` of a URL, lower-cased.
fn origin_of(url: &str) -> String {
    let url = url.to_ascii_lowercase();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split('/').next().unwrap_or("");
            format!("{scheme}://{host}")
        }
        None => url,
    }
}
