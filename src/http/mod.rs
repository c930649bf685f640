//! The HTTP face of kterm: one actix-web app serving the UI, the REST API, the terminal
//! WebSocket, health and metrics on one port. Nothing here knows a sandbox engine.

pub mod api;
mod assets;
mod auth;
mod files;
pub mod protocol;
mod ws;

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpRequest, HttpServer};

use crate::app::AppState;
use crate::error::Error;

/// Request bodies above this are refused with 413 (file uploads get their own limit).
const MAX_JSON_BODY: usize = 64 * 1024;

/// Builds the actix server on an already bound listener.
pub fn server(
    state: web::Data<AppState>,
    listener: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let shutdown_timeout = state.config.server.shutdown_timeout.0.as_secs().max(1);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_JSON_BODY))
            .app_data(web::JsonConfig::default().limit(MAX_JSON_BODY).error_handler(json_error))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .wrap(
                DefaultHeaders::new()
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::REFERRER_POLICY, "no-referrer"))
                    .add((
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                         img-src 'self' data:; connect-src 'self'; frame-ancestors 'self'",
                    )),
            )
            .wrap(
                actix_web::middleware::Logger::new("%a \"%r\" %s %b %Dms")
                    .log_target("kterm::http"),
            )
            .route("/healthz", web::get().to(api::healthz))
            .route("/readyz", web::get().to(api::readyz))
            .route("/metrics", web::get().to(api::metrics))
            .service(web::scope("/api/v1").configure(api::routes).configure(files::routes))
            .route("/", read_only().to(assets::serve))
            .route("/{path:.+}", read_only().to(assets::serve))
            .default_service(web::to(api::not_found))
    })
    // Keystrokes and their echo are tiny writes: never hold them back (Nagle).
    .on_connect(|connection, _| {
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .disable_signals()
    .shutdown_timeout(shutdown_timeout)
    .listen(listener)?
    .run();
    Ok(server)
}

/// GET or HEAD.
fn read_only() -> actix_web::Route {
    use actix_web::guard;
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

fn json_error(err: actix_web::error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    match err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            Error::TooLarge(format!("request body is larger than {MAX_JSON_BODY} bytes")).into()
        }
        other => Error::BadRequest(format!("invalid JSON body: {other}")).into(),
    }
}

fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    Error::BadRequest(format!("invalid query string: {err}")).into()
}

fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    Error::BadRequest(format!("invalid path: {err}")).into()
}
