//! Who is calling: the [`Caller`] extractor every API and WebSocket handler takes.
//!
//! Mode `none` (refused off loopback unless `auth.allow_none_remote`, see config) makes every
//! request the one user `auth.none_user`, who is an admin: there is nobody else. The other
//! modes are refused by the configuration until they are implemented, so no request can reach
//! a handler unauthenticated.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use crate::app::AppState;
use crate::config::AuthMode;
use crate::error::Error;
use crate::session::Caller;

impl FromRequest for Caller {
    type Error = Error;
    type Future = Ready<Result<Caller, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Caller, Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| Error::Internal("application state missing".into()))?;
    let auth = &state.config.auth;
    match auth.mode {
        AuthMode::None => Ok(Caller { user: auth.none_user.clone(), admin: true }),
        mode => Err(Error::Unauthorized(format!("auth mode {mode:?} is not available"))),
    }
}
