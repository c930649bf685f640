//! The HTTP face of kterm: one actix-web app serving the UI, the REST API, the terminal
//! WebSocket, health and metrics on one port (at the root and under `server.public_url`'s path).
//! Nothing here knows a sandbox engine.
//!
//! Every request passes, in order: the logger, the security headers, the header-size limit,
//! the Host check ([`hosts`]), the cross-site write guard ([`security::guard_writes`]) and the
//! base path; only then a handler.

mod admin;
mod agent;
pub mod api;
mod assets;
mod auth;
mod base_path;
mod files;
pub mod hosts;
mod login;
pub mod openapi;
pub mod protocol;
mod recording;
pub mod routes;
mod sandboxes;
pub mod security;
mod socket;
pub mod tls;
mod ws;
pub mod ws_input;

use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpServer};

use crate::app::AppState;
use crate::error::Error;

pub use admin::require_admin;

/// Builds the actix server on an already bound listener, over TLS when `tls` is given.
pub fn server(
    state: web::Data<AppState>,
    listener: std::net::TcpListener,
    tls: Option<Arc<tls::TlsCertificate>>,
) -> std::io::Result<actix_web::dev::Server> {
    let shutdown_timeout = state.config.server.shutdown_timeout.0.as_secs().max(1);
    let body_limit = state.config.server.max_request_body.0 as usize;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(body_limit))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .wrap(from_fn(base_path::strip_base_path))
            .wrap(from_fn(security::guard_writes))
            .wrap(from_fn(hosts::check_host))
            .wrap(from_fn(security::limit_headers))
            .wrap(security::default_headers(&state.config))
            .wrap(
                // Method and path only: a query string may carry a WebSocket ticket.
                actix_web::middleware::Logger::new("%a \"%{request}xi\" %s %b %Dms")
                    .custom_request_replace("request", |req| {
                        format!("{} {}", req.method(), req.path())
                    })
                    .log_target("kterm::http"),
            )
            .configure(routes::serve)
            .route("/", read_only().to(assets::serve))
            .route("/{path:.+}", read_only().to(assets::serve))
            .default_service(web::to(api::not_found))
    })
    // Keystrokes and their echo are tiny writes: never hold them back (Nagle).
    .tcp_nodelay(true)
    .on_connect(socket::on_connect)
    .disable_signals()
    .shutdown_timeout(shutdown_timeout);
    let server = match tls {
        Some(certificate) => {
            let config = certificate
                .server_config()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.0))?;
            server.listen_rustls_0_23(listener, config)?
        }
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// GET or HEAD.
fn read_only() -> actix_web::Route {
    use actix_web::guard;
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    Error::BadRequest(format!("invalid query string: {err}")).into()
}

fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    Error::BadRequest(format!("invalid path: {err}")).into()
}
