//! The API for agents and scripts under `/api/v1/sessions/{id}`: `exec` (a command with its
//! output and exit code, as JSON or as NDJSON while it runs), `input` (typing and tmux-style
//! keys), `screen` (what the terminal shows) and `wait` (a pattern on the screen or in new
//! output). Thin handlers over [`crate::exec`] and the session's agent methods.
//!
//! Every call counts against the caller's `exec.per_minute`; execs and waits also hold a
//! place of their sandbox's `exec.max_concurrent`. Another user's session is 404, an ended one
//! 409. The Origin and cross-site write guard apply as to every POST (see [`super::security`]).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::api::{read_body, read_json};
use super::routes::Routes;
use crate::app::AppState;
use crate::audit::{Action, Event, Outcome};
use crate::error::{Error, Result};
use crate::exec::wire::{result_json, NdjsonEncoder};
use crate::exec::{parse_timeout, Exec, ExecRequest, ExecSpec};
use crate::session::{keys, Caller, ScreenFormat, Session, WaitSource, MAX_SCROLLBACK};

/// The longest `/wait` pattern.
const MAX_PATTERN: usize = 4096;
/// The compiled size a `/wait` pattern may have.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// A wait's time limit when it names none.
const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// An `input` audit row keeps this much of the text.
const AUDIT_INPUT: usize = 4096;

pub fn routes(routes: &mut Routes<'_>) {
    routes
        .post("/sessions/{id}/exec", exec)
        .post("/sessions/{id}/input", input)
        .get("/sessions/{id}/screen", screen)
        .post("/sessions/{id}/wait", wait);
}

/// Counts one agent API call for `caller`; 429 beyond `exec.per_minute`.
fn count_call(state: &AppState, caller: &Caller) -> Result<()> {
    state.agent_rate.hit(&caller.user).map_err(|retry_after| Error::RateLimited {
        message: format!(
            "user {} calls the agent API too often; the limit is {} a minute (exec.per_minute)",
            caller.user, state.config.exec.per_minute
        ),
        retry_after,
    })
}

/// The live session `id`, if `caller` may see it (404 otherwise) and it has not ended (409);
/// one still starting is waited for.
async fn running_session(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<std::sync::Arc<Session>> {
    let session = state.registry.live_when_ready(caller, id).await?;
    if session.has_exited() {
        return Err(Error::Conflict(format!("session {} has ended", session.info.id)));
    }
    Ok(session)
}

fn wants_ndjson(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().starts_with("application/x-ndjson"))
}

async fn exec(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse> {
    count_call(&state, &caller)?;
    let body = read_body(body, state.config.server.max_request_body.0 as usize).await?;
    let request = ExecRequest::from_json(&body)?;
    let spec = ExecSpec::parse(request, &state.config.exec)?;
    let exec =
        Exec::start(&state.registry, &state.exec_limits, &state.audit, &caller, &id, spec).await?;
    if wants_ndjson(&req) {
        let mut events = exec.events();
        let mut encoder = NdjsonEncoder::default();
        let lines = futures_util::stream::poll_fn(move |cx| events.poll_recv(cx))
            .map(move |event| Ok::<_, Error>(Bytes::from(encoder.encode(event))));
        return Ok(HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .streaming(lines));
    }
    let result = exec.collect(state.config.exec.max_output.0 as usize).await;
    Ok(HttpResponse::Ok().json(result_json(&result)))
}

use futures_util::StreamExt as _;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputBody {
    text: Option<String>,
    #[serde(default)]
    keys: Vec<String>,
}

async fn input(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse> {
    count_call(&state, &caller)?;
    let body: InputBody = read_json(body, state.config.server.max_request_body.0 as usize).await?;
    let mut data = body.text.unwrap_or_default().into_bytes();
    let keyed = keys::keys_bytes(&body.keys).map_err(|name| {
        Error::BadRequest(format!(
            "keys: unknown key name {name:?} (tmux names: Enter, Tab, Escape, BSpace, Up, \
             Down, Left, Right, Home, End, PageUp, PageDown, F1-F12, C-a…C-z, M-x, or one \
             character)"
        ))
    })?;
    data.extend(keyed);
    if data.is_empty() {
        return Err(Error::BadRequest("give text or keys (both are empty)".into()));
    }
    let session = running_session(&state, &caller, &id).await?;
    if state.config.audit.record_input {
        let text = String::from_utf8_lossy(&data[..data.len().min(AUDIT_INPUT)]).into_owned();
        state.audit.record_later(
            Event::new(Action::Input, Outcome::Ok)
                .user(&caller.user)
                .session(&session.info.id)
                .detail(text),
        );
    }
    session.type_input(Bytes::from(data)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScreenQuery {
    format: Option<String>,
    scrollback: Option<String>,
}

async fn screen(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<ScreenQuery>,
) -> Result<HttpResponse> {
    count_call(&state, &caller)?;
    let format = match query.format.as_deref() {
        None | Some("text") => ScreenFormat::Text,
        Some("ansi") => ScreenFormat::Ansi,
        Some(other) => {
            return Err(Error::BadRequest(format!("?format={other:?} is not text or ansi")))
        }
    };
    let scrollback = match query.scrollback.as_deref() {
        None => None,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if n <= MAX_SCROLLBACK => Some(n),
            _ => {
                return Err(Error::BadRequest(format!(
                    "?scrollback={raw:?} is not a number of lines from 0 to {MAX_SCROLLBACK}"
                )))
            }
        },
    };
    let session = running_session(&state, &caller, &id).await?;
    let view = session.screen(format, scrollback);
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitBody {
    pattern: String,
    timeout: Option<String>,
    source: Option<WaitSource>,
}

async fn wait(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse> {
    count_call(&state, &caller)?;
    let body: WaitBody = read_json(body, state.config.server.max_request_body.0 as usize).await?;
    if body.pattern.is_empty() {
        return Err(Error::BadRequest("pattern is empty".into()));
    }
    if body.pattern.len() > MAX_PATTERN {
        return Err(Error::BadRequest(format!("pattern is longer than {MAX_PATTERN} bytes")));
    }
    let pattern = regex::RegexBuilder::new(&body.pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .multi_line(true)
        .build()
        .map_err(|e| {
            Error::BadRequest(format!("pattern is not a valid regular expression: {e}"))
        })?;
    let timeout = parse_timeout("timeout", body.timeout.as_deref(), &state.config.exec)?
        .unwrap_or(DEFAULT_WAIT.min(state.config.exec.max_timeout.0));
    let session = running_session(&state, &caller, &id).await?;
    let _slot = state.exec_limits.take(&session.info.sandbox_id)?;
    let found = session.wait_for(&pattern, body.source.unwrap_or(WaitSource::Any), timeout).await?;
    let mut answer = serde_json::to_value(&found)
        .map_err(|e| Error::Internal(format!("serializing a match: {e}")))?;
    answer["matched"] = json!(true);
    Ok(HttpResponse::Ok().json(answer))
}
