//! The web UI: the bundle `assets/dist/` (built by `npm --prefix assets run build`, committed),
//! embedded in the binary with rust-embed.
//!
//! - Content-hashed files under `static/` are cached for a year as immutable; the pages
//!   (`index.html`, `login.html`) and the rest revalidate (`no-cache`) against their ETag, so an
//!   upgraded binary never serves a stale page.
//! - The build leaves `.br` and `.gz` siblings; the one the browser accepts is sent as is, with
//!   `Content-Encoding` and `Vary: Accept-Encoding`. Each variant has its own ETag.

use std::borrow::Cow;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::{EmbeddedFile, RustEmbed};

#[derive(RustEmbed)]
#[folder = "assets/dist/"]
struct Assets;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub async fn serve(req: HttpRequest, path: Option<web::Path<String>>) -> HttpResponse {
    let path = path.map(|p| p.into_inner()).unwrap_or_default();
    let path = if path.is_empty() { "index.html".to_string() } else { path };
    let Some(file) = Assets::get(&path) else {
        return HttpResponse::NotFound().content_type("text/plain").body("not found\n");
    };
    let mime = file.metadata.mimetype().to_string();
    let (file, encoding) = match preferred_encoding(&req, &path) {
        Some((encoded, name)) => (encoded, Some(name)),
        None => (file, None),
    };
    let etag = etag(&file, encoding);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    let cache = if path.starts_with("static/") { IMMUTABLE } else { "no-cache" };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header((header::CONTENT_TYPE, mime));
    if let Some(encoding) = encoding {
        response.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static(encoding)));
    }
    if fresh {
        response.finish()
    } else {
        // Embedded files are static in release builds: sent without a copy.
        let body = match file.data {
            Cow::Borrowed(data) => Bytes::from_static(data),
            Cow::Owned(data) => Bytes::from(data),
        };
        response.body(body)
    }
}

/// The precompressed sibling the client accepts, brotli first.
fn preferred_encoding(req: &HttpRequest, path: &str) -> Option<(EmbeddedFile, &'static str)> {
    let accepted = req.headers().get(header::ACCEPT_ENCODING)?.to_str().ok()?;
    ["br", "gzip"].into_iter().filter(|name| accepts(accepted, name)).find_map(|name| {
        let suffix = if name == "br" { "br" } else { "gz" };
        Assets::get(&format!("{path}.{suffix}")).map(|file| (file, name))
    })
}

/// Whether an `Accept-Encoding` value lists `name` with a non-zero quality.
fn accepts(header: &str, name: &str) -> bool {
    header.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let matches = parts.next().is_some_and(|n| n.eq_ignore_ascii_case(name));
        let zero = parts.any(|p| {
            p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()).is_some_and(|q| q <= 0.0)
        });
        matches && !zero
    })
}

fn etag(file: &EmbeddedFile, encoding: Option<&str>) -> String {
    let hash: String =
        file.metadata.sha256_hash()[..12].iter().map(|b| format!("{b:02x}")).collect();
    match encoding {
        Some(encoding) => format!("\"{hash}-{encoding}\""),
        None => format!("\"{hash}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::accepts;

    #[test]
    fn accept_encoding_respects_quality() {
        assert!(accepts("gzip, deflate, br", "br"));
        assert!(accepts("gzip;q=0.5", "gzip"));
        assert!(!accepts("gzip;q=0, br", "gzip"));
        assert!(!accepts("identity", "gzip"));
        assert!(!accepts("brotli", "br"));
    }
}
