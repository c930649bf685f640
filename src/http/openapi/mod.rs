//! The OpenAPI 3.1 document of the REST API, served at `/api/v1/openapi.json`. Its paths are
//! in [`paths`] and its bodies in [`schemas`]; `tests/openapi.rs` checks that every route the
//! server registers is documented (and nothing else), and that real answers have the documented
//! keys. The document names the auth schemes of every mode; the proxy header is the configured
//! one.

mod paths;
mod schemas;

use actix_web::{web, HttpResponse};
use serde_json::json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Server};
use utoipa::OpenApi;

use super::routes::Routes;
use crate::app::AppState;
use crate::config::Config;
use crate::session::Caller;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kterm",
        description = "Self-hosted web terminal with real sandboxes. Errors are always \
            `{\"error\": {\"code\", \"message\"}}`; a session or sandbox of another user is 404, \
            never 403.",
    ),
    paths(
        paths::healthz, paths::readyz, paths::metrics,
        paths::create_session, paths::list_sessions, paths::get_session, paths::delete_session,
        paths::resize_session, paths::attach, paths::ticket,
        paths::me, paths::profiles, paths::pool, paths::backend, paths::audit,
        paths::login_form, paths::login, paths::logout,
        paths::files_list, paths::files_delete, paths::files_read, paths::files_write,
        paths::files_stat, paths::files_mkdir, paths::files_rename, paths::files_archive,
        paths::list_sandboxes, paths::delete_sandbox, paths::recording,
        paths::exec, paths::input, paths::screen, paths::wait,
        paths::openapi_json,
    ),
    security(("bearer" = []), ("cookie" = []), ("proxy" = [])),
    tags(
        (name = "sessions", description = "Terminal sessions (tabs) and their WebSocket"),
        (name = "sandboxes", description = "A user's sandboxes, which outlive their sessions for a while"),
        (name = "files", description = "The workspace of a session's sandbox"),
        (name = "agents", description = "For agents and scripts: run commands, type, read the screen, wait for text"),
        (name = "auth", description = "Logins (the `kterm_session` cookie)"),
        (name = "users", description = "The caller"),
        (name = "admin", description = "Admins only"),
        (name = "health", description = "Probes, metrics and this document"),
    )
)]
struct ApiDoc;

/// The document for this server: its base path, and the proxy header it trusts.
pub fn document(config: &Config) -> serde_json::Value {
    let mut doc = serde_json::to_value(build(config)).unwrap_or_default();
    // What the derive cannot say of a map: the context's keys and values (session/validate.rs;
    // 256 characters are at most 1 KiB of UTF-8).
    doc["components"]["schemas"]["CreateSession"]["properties"]["context"] = json!({
        "type": ["object", "null"],
        "maxProperties": 32,
        "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,63}$"},
        "additionalProperties": {"type": "string", "maxLength": 256, "pattern": "^[^\\x00]*$"},
        "description": "Each entry becomes `KTERM_CTX_<KEY>` in the shell; values at most 1 KiB.",
    });
    doc
}

fn build(config: &Config) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.servers = Some(vec![Server::new(match config.server.base_path() {
        "" => "/",
        base => base,
    })]);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("auth mode `token`: a configured token"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "kterm_session",
            "set by POST /api/v1/auth/login in every mode",
        ))),
    );
    components.add_security_scheme(
        "proxy",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            config.auth.proxy_user_header.clone(),
            "auth mode `proxy`: the user name, set by a trusted proxy".to_string(),
        ))),
    );
    components.add_security_scheme(
        "ticket",
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            "ticket",
            "WebSocket only: a single-use ticket from POST /api/v1/sessions/{id}/ticket",
        ))),
    );
    doc
}

pub fn routes(routes: &mut Routes<'_>) {
    routes.get("/openapi.json", openapi_json);
}

/// `GET /api/v1/openapi.json`: like every endpoint, for callers with credentials.
async fn openapi_json(state: web::Data<AppState>, _caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(document(&state.config))
}
