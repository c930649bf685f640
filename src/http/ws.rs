//! The terminal WebSocket: the bridge between one client connection and a session's
//! [`Attachment`]. It checks the Origin and the credentials (or a single-use ticket) before
//! upgrading, audits attach and detach, sends the replay and live output,
//! writes input, relays warnings of the session's coming end (and keep-alives against an idle
//! one), keeps the connection alive with pings, and closes with the SPEC's codes.

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, ProtocolError};
use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;

use super::auth::{authenticate_websocket, client_address, record_denial};
use super::protocol::{self, ClientMessage, ServerMessage, CLOSE_TAKEN_OVER, MAX_INPUT_FRAME};
use super::security::check_origin;
use crate::app::AppState;
use crate::audit::{Action, Audit, Event, InputRecorder, Outcome};
use crate::error::{Error, Result};
use crate::session::{AttachEvent, Attachment};

pub async fn attach(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    // The Origin first: a ticket presented from a foreign page is not even used up.
    if let Err(e) = check_origin(&req, &state.config) {
        tracing::warn!(origin = ?req.headers().get(header::ORIGIN), "refused a WebSocket from a foreign Origin");
        record_denial(&state, &req, None, Some(&id), &e).await;
        return Err(e);
    }
    let caller = authenticate_websocket(&req, &id).await?;
    let session = state.registry.live(&caller, &id)?;
    let attachment = session.attach(state.registry.config().attach)?;
    let (response, ws, messages) = actix_ws::handle(&req, body)
        .map_err(|e| Error::BadRequest(format!("not a WebSocket upgrade: {e}")))?;
    let messages = messages
        .max_frame_size(MAX_INPUT_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_INPUT_FRAME);
    let client = client_address(&req, &state);
    let event = Event::new(Action::Attach, Outcome::Ok)
        .user(&caller.user)
        .client(client.clone())
        .session(&session.info.id);
    state.audit.record_later(event);
    let recorder = state
        .config
        .audit
        .record_input
        .then(|| InputRecorder::new(state.audit.clone(), &caller.user, &session.info.id));
    let bridge = Bridge {
        ws,
        attachment,
        ping_interval: state.config.server.ping_interval.0,
        shutdown: state.shutdown.clone(),
        metrics: state.metrics.clone(),
        pending_input: None,
        audit: state.audit.clone(),
        user: caller.user,
        client,
        recorder,
    };
    actix_web::rt::spawn(bridge.run(messages));
    Ok(response)
}

struct Bridge {
    ws: actix_ws::Session,
    attachment: Attachment,
    ping_interval: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Input received but not yet queued for the process (the queue was full).
    pending_input: Option<Bytes>,
    audit: Audit,
    user: String,
    client: Option<String>,
    /// Set when `audit.record_input` is on.
    recorder: Option<InputRecorder>,
}

/// How a connection ends.
enum Ending {
    Close(CloseCode, &'static str),
    Custom(u16, &'static str),
    /// The client is gone or closed first; nothing more to send.
    Gone,
}

impl Bridge {
    async fn run(mut self, mut messages: actix_ws::AggregatedMessageStream) {
        let ending = self.serve(&mut messages).await;
        // What the client sent is the user's keystrokes: deliver it even though the connection
        // is gone (a command typed just before closing the tab still runs).
        let input = self.attachment.session().input().clone();
        let mut undelivered: Vec<Bytes> = self.pending_input.take().into_iter().collect();
        if matches!(ending, Ending::Gone) {
            let drained = drain_input(&mut messages).await;
            if let Some(recorder) = &mut self.recorder {
                for data in &drained {
                    recorder.push(data).await;
                }
            }
            undelivered.extend(drained);
        }
        if !undelivered.is_empty() {
            actix_web::rt::spawn(async move {
                for data in undelivered {
                    if input.send(data).await.is_err() {
                        break;
                    }
                }
            });
        }
        if let Some(recorder) = &mut self.recorder {
            recorder.flush().await;
        }
        let (reason, why) = match ending {
            Ending::Close(code, text) => (Some(protocol::close(code, text)), text),
            Ending::Custom(code, text) => {
                (Some(protocol::close(CloseCode::Other(code), text)), text)
            }
            Ending::Gone => (None, "client went away"),
        };
        if let Some(reason) = reason {
            let _ = self.ws.close(Some(reason)).await;
        }
        let event = Event::new(Action::Detach, Outcome::Ok)
            .user(&self.user)
            .client(self.client.clone())
            .session(&self.attachment.session().info.id)
            .detail(why);
        self.audit.record(event).await;
    }

    async fn send(&mut self, message: ServerMessage<'_>) -> bool {
        self.ws.text(message.to_text()).await.is_ok()
    }

    async fn serve(&mut self, messages: &mut actix_ws::AggregatedMessageStream) -> Ending {
        let session = self.attachment.session().clone();
        let id = session.info.id.clone();
        let attached =
            ServerMessage::Attached { session: &id, replay_bytes: self.attachment.replay_bytes() };
        if !self.send(attached).await {
            return Ending::Gone;
        }
        let input = session.input().clone();
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.tick().await;
        let mut last_heard = Instant::now();
        if *self.shutdown.borrow() {
            return Ending::Close(CloseCode::Away, "server shutting down");
        }
        loop {
            tokio::select! {
                event = self.attachment.next() => match event {
                    AttachEvent::Output(data) => {
                        if self.ws.binary(data).await.is_err() {
                            return Ending::Gone;
                        }
                    }
                    AttachEvent::Exit(code) => {
                        let reason = session.end_reason();
                        self.send(ServerMessage::Exit { code, reason }).await;
                        return Ending::Close(CloseCode::Normal, "session ended");
                    }
                    AttachEvent::TakenOver => {
                        self.send(ServerMessage::Detached { reason: "taken_over" }).await;
                        return Ending::Custom(CLOSE_TAKEN_OVER, "taken over");
                    }
                    AttachEvent::Warning(warning) => {
                        if !self.send(ServerMessage::warning(&warning)).await {
                            return Ending::Gone;
                        }
                    }
                },
                // Input waits for room in the queue; meanwhile we read no more from the client
                // (backpressure) but keep sending output.
                permit = input.reserve(), if self.pending_input.is_some() => match permit {
                    Ok(permit) => {
                        if let Some(data) = self.pending_input.take() {
                            permit.send(data);
                        }
                    }
                    Err(_) => self.pending_input = None,
                },
                message = messages.recv(), if self.pending_input.is_none() => {
                    last_heard = Instant::now();
                    match message {
                        None => return Ending::Gone,
                        Some(Err(e)) => return protocol_error(e),
                        Some(Ok(message)) => {
                            if let Some(ending) = self.handle(message).await {
                                return ending;
                            }
                        }
                    }
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.ping_interval * 3 {
                        tracing::info!(session = %id, "client stopped answering pings");
                        return Ending::Close(CloseCode::Policy, "ping timeout");
                    }
                    if self.ws.ping(b"kterm").await.is_err() {
                        return Ending::Gone;
                    }
                },
                _ = self.shutdown.changed() => {
                    return Ending::Close(CloseCode::Away, "server shutting down");
                }
            }
        }
    }

    /// Handles one client message; `Some` ends the connection.
    async fn handle(&mut self, message: AggregatedMessage) -> Option<Ending> {
        let session = self.attachment.session().clone();
        match message {
            AggregatedMessage::Binary(data) => {
                if !data.is_empty() {
                    if let Some(recorder) = &mut self.recorder {
                        recorder.push(&data).await;
                    }
                    session.note_input();
                    self.metrics.input_bytes.inc_by(data.len() as u64);
                    // Queue it now if there is room; otherwise hold it, and the client, until
                    // there is.
                    if let Err(TrySendError::Full(data)) = session.input().try_send(data) {
                        self.pending_input = Some(data);
                    }
                }
            }
            AggregatedMessage::Text(text) => {
                let reply = match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(ClientMessage::Resize { cols, rows }) => {
                        session.resize(cols, rows).await.err().map(|e| ServerMessage::Error {
                            code: "bad_resize",
                            message: e.to_string(),
                        })
                    }
                    Ok(ClientMessage::KeepAlive) => {
                        session.note_input();
                        None
                    }
                    Err(e) => Some(ServerMessage::Error {
                        code: "bad_message",
                        message: format!("control message not understood: {e}"),
                    }),
                };
                if let Some(reply) = reply {
                    if !self.send(reply).await {
                        return Some(Ending::Gone);
                    }
                }
            }
            AggregatedMessage::Ping(data) => {
                if self.ws.pong(&data).await.is_err() {
                    return Some(Ending::Gone);
                }
            }
            AggregatedMessage::Pong(_) => {}
            AggregatedMessage::Close(_) => return Some(Ending::Close(CloseCode::Normal, "bye")),
        }
        None
    }
}

fn protocol_error(error: ProtocolError) -> Ending {
    match error {
        ProtocolError::Overflow => Ending::Close(CloseCode::Size, "frame larger than 1 MiB"),
        ProtocolError::Io(e) if e.to_string().contains("continuation size") => {
            Ending::Close(CloseCode::Size, "message larger than 1 MiB")
        }
        // The connection broke (the client went away mid-stream).
        ProtocolError::Io(_) => Ending::Gone,
        _ => Ending::Close(CloseCode::Protocol, "protocol error"),
    }
}

/// Input frames still buffered from a client that went away. actix-ws reports a broken
/// connection before the frames it had already read, and yields them on later polls.
async fn drain_input(messages: &mut actix_ws::AggregatedMessageStream) -> Vec<Bytes> {
    let mut input = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, messages.recv()).await {
        match message {
            Ok(AggregatedMessage::Binary(data)) => input.push(data),
            Ok(AggregatedMessage::Close(_)) => break,
            Ok(_) | Err(ProtocolError::Io(_)) => {}
            Err(_) => break,
        }
    }
    input
}
