//! Serving under the path of `server.public_url` (e.g. `/tools/kterm`) as well as at the root,
//! so a reverse proxy in front may strip that prefix or forward it unchanged.
//!
//! Invariants:
//! - The prefix matches on a segment boundary: `/tools/kterm/api/v1/me` is routed as
//!   `/api/v1/me`; `/tools/kternel/…` is not under the prefix and is routed as it is.
//! - A GET or HEAD of the bare prefix (`/tools/kterm`) is redirected (308) to the prefix with a
//!   slash, query kept, so the page's relative URLs resolve under it. `/` is never redirected:
//!   it is what kterm sees when the proxy strips the prefix.
//! - The rewrite happens before routing, inside the logger: logs show the path as requested.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, Uri};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::app::AppState;

/// Routes a request under the base path as if it came without it; redirects the bare base.
pub async fn strip_base_path(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let base = match req.app_data::<web::Data<AppState>>() {
        Some(state) => state.config.server.base_path().to_string(),
        None => String::new(),
    };
    if base.is_empty() {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let path = req.path().to_string();
    if path == base && matches!(*req.method(), Method::GET | Method::HEAD) {
        let location = match req.query_string() {
            "" => format!("{base}/"),
            query => format!("{base}/?{query}"),
        };
        let response =
            HttpResponse::PermanentRedirect().insert_header((header::LOCATION, location)).finish();
        return Ok(req.into_response(response).map_into_right_body());
    }
    if let Some(rest) = path.strip_prefix(base.as_str()).filter(|rest| rest.starts_with('/')) {
        if let Some(uri) = without_prefix(req.uri(), rest) {
            req.match_info_mut().get_mut().update(&uri);
            req.head_mut().uri = uri;
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// `uri` with its path replaced by `path` (which starts with `/`), the query kept.
fn without_prefix(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_goes_and_the_query_stays() {
        let uri: Uri = "/tools/kterm/api/v1/sessions?all=true".parse().unwrap();
        let uri = without_prefix(&uri, "/api/v1/sessions").unwrap();
        assert_eq!(uri.path(), "/api/v1/sessions");
        assert_eq!(uri.query(), Some("all=true"));
    }
}
