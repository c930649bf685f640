//! The web UI, embedded in the binary with rust-embed and served with a content type, an ETag
//! and revalidation (`no-cache`), so an upgraded binary never serves stale files.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

pub async fn serve(req: HttpRequest, path: Option<web::Path<String>>) -> HttpResponse {
    let path = path.map(|p| p.into_inner()).unwrap_or_default();
    let path = if path.is_empty() { "index.html".to_string() } else { path };
    let Some(file) = Assets::get(&path) else {
        return HttpResponse::NotFound().content_type("text/plain").body("not found\n");
    };
    let etag = format!(
        "\"{}\"",
        file.metadata.sha256_hash()[..12].iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_TYPE, file.metadata.mimetype()));
    if fresh {
        response.finish()
    } else {
        response.body(file.data.into_owned())
    }
}
