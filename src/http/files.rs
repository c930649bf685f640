//! The files API under `/api/v1/sessions/{id}/files`: thin handlers over
//! [`crate::files::Workspace`], which does the checks and the work.
//!
//! File contents are served with `Content-Security-Policy: sandbox` so that an HTML or SVG file
//! from a workspace never runs script with kterm's origin.

use actix_web::http::header::{
    self, Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::routes::Routes;
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::files::{self, Precondition, RelPath, Workspace};
use crate::session::Caller;

const CONTENT_CSP: &str =
    "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'";

pub fn routes(routes: &mut Routes<'_>) {
    routes
        .get("/sessions/{id}/files", list)
        .delete("/sessions/{id}/files", delete)
        .get("/sessions/{id}/files/content", read)
        .put("/sessions/{id}/files/content", write)
        .get("/sessions/{id}/files/stat", stat)
        .post("/sessions/{id}/files/mkdir", mkdir)
        .post("/sessions/{id}/files/rename", rename)
        .get("/sessions/{id}/files/archive", archive);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileQuery {
    #[serde(default)]
    path: String,
    download: Option<String>,
    recursive: Option<String>,
    parents: Option<String>,
}

/// `?flag`, `?flag=1|true|yes` are on; `0|false|no`, or no flag, off; anything else is 400.
fn on(name: &str, flag: &Option<String>) -> Result<bool> {
    match flag.as_deref() {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("" | "1" | "true" | "yes") => Ok(true),
        Some(other) => Err(Error::BadRequest(format!(
            "?{name}={other:?} is not a flag (1, true, yes, 0, false, no)"
        ))),
    }
}

async fn open(state: &AppState, caller: &Caller, id: &str) -> Result<Workspace> {
    Workspace::open(&state.registry, caller, id, &state.config.files)
        .await
        .map(|w| w.audited(state.audit.clone()).limited(state.files_memory.clone()))
}

async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<FileQuery>,
) -> Result<HttpResponse> {
    let entries = open(&state, &caller, &id).await?.list(&query.path).await?;
    let path = RelPath::parse(&query.path)?;
    Ok(HttpResponse::Ok().json(json!({ "path": path.as_str(), "entries": entries })))
}

async fn stat(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<FileQuery>,
) -> Result<HttpResponse> {
    let (entry, etag) = open(&state, &caller, &id).await?.stat(&query.path).await?;
    let path = RelPath::parse(&query.path)?;
    let mut body = serde_json::to_value(&entry)
        .map_err(|e| Error::Internal(format!("serializing an entry: {e}")))?;
    body["path"] = json!(path.as_str());
    body["etag"] = json!(etag);
    Ok(HttpResponse::Ok().insert_header((header::ETAG, quoted(&etag))).json(body))
}

async fn read(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<FileQuery>,
) -> Result<HttpResponse> {
    let download = on("download", &query.download)?;
    let content = open(&state, &caller, &id).await?.read(&query.path).await?;
    let path = RelPath::parse_entry(&query.path)?;
    let mime = mime_guess::from_path(path.name()).first_or_octet_stream();
    let content_type =
        if mime.type_() == mime_guess::mime::TEXT && mime.get_param("charset").is_none() {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_string()
        };
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::ETAG, quoted(&content.etag)))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_CSP));
    if download {
        response.insert_header(attachment(path.name()));
    }
    Ok(response.no_chunking(content.size).streaming(content.body))
}

async fn write(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<FileQuery>,
    mut payload: web::Payload,
) -> Result<HttpResponse> {
    let workspace = open(&state, &caller, &id).await?;
    let max = state.config.files.max_write.0;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(files::too_large_write(max));
    }
    let when = precondition(&req)?;
    // The body is held in memory until it is written: every upload in progress shares
    // `files.memory`, taken as the bytes arrive (the declared length at once).
    let mut held = state.files_memory.reserve(declared.unwrap_or(0))?;
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("reading the body: {e}")))?;
        if (body.len() + chunk.len()) as u64 > max {
            return Err(files::too_large_write(max));
        }
        let more = (body.len() + chunk.len()).saturating_sub(held.num_permits());
        if more > 0 {
            held.merge(state.files_memory.reserve(more as u64)?);
        }
        body.extend_from_slice(&chunk);
    }
    let etag = workspace.write(&query.path, body.freeze(), when).await?;
    drop(held);
    Ok(HttpResponse::NoContent().insert_header((header::ETAG, quoted(&etag))).finish())
}

/// `If-Match: "ETAG"` or `*`, `If-None-Match: *`.
fn precondition(req: &HttpRequest) -> Result<Precondition> {
    let text = |name| -> Result<Option<String>> {
        match req.headers().get(&name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.trim().to_string()))
                .map_err(|_| Error::BadRequest(format!("{name} is not text"))),
        }
    };
    if let Some(tag) = text(header::IF_MATCH)? {
        if tag == "*" {
            return Ok(Precondition::Exists);
        }
        let tag = tag.strip_prefix("W/").unwrap_or(&tag);
        return Ok(Precondition::ETag(tag.trim_matches('"').to_string()));
    }
    match text(header::IF_NONE_MATCH)?.as_deref() {
        None => Ok(Precondition::None),
        Some("*") => Ok(Precondition::Absent),
        Some(_) => Err(Error::BadRequest("only `If-None-Match: *` is supported on writes".into())),
    }
}

async fn mkdir(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<FileQuery>,
) -> Result<HttpResponse> {
    open(&state, &caller, &id).await?.mkdir(&query.path, on("parents", &query.parents)?).await?;
    let path = RelPath::parse(&query.path)?;
    Ok(HttpResponse::Created().json(json!({ "path": path.as_str() })))
}

async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<FileQuery>,
) -> Result<HttpResponse> {
    open(&state, &caller, &id)
        .await?
        .delete(&query.path, on("recursive", &query.recursive)?)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    from: String,
    to: String,
}

async fn rename(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse> {
    // The body is read only once the caller is known: without credentials, 401 whatever it is.
    let limit = state.config.server.max_request_body.0 as usize;
    let body: Rename = super::api::read_json(body, limit).await?;
    open(&state, &caller, &id).await?.rename(&body.from, &body.to).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn archive(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<FileQuery>,
) -> Result<HttpResponse> {
    let stream = open(&state, &caller, &id).await?.archive(&query.path).await?;
    let path = RelPath::parse(&query.path)?;
    let name = if path.is_root() { "workspace" } else { path.name() };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/x-tar"))
        .insert_header(attachment(&format!("{name}.tar")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream))
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// `attachment; filename="ascii"; filename*=UTF-8''…` for any file name.
fn attachment(name: &str) -> ContentDisposition {
    let ascii: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![
            DispositionParam::Filename(ascii),
            DispositionParam::FilenameExt(ExtendedValue {
                charset: Charset::Ext("UTF-8".into()),
                language_tag: None,
                value: name.as_bytes().to_vec(),
            }),
        ],
    }
}
