//! The terminal WebSocket: the bridge between one client connection and a session's
//! [`Attachment`]. It checks the Origin and the credentials (or a single-use ticket) before
//! upgrading, audits attach and detach, sends the replay and live output, writes input, relays
//! warnings of the session's coming end (and keep-alives against an idle one), keeps the
//! connection alive with pings, and closes with the SPEC's codes.
//!
//! Invariants:
//! - The client's frames are decoded by [`super::ws_input`]: a malformed frame closes this
//!   connection with 1002 (1009 when too large) and nothing else; the decoder is never polled
//!   again after it reported a violation or the end, so no loop here can spin on one.
//! - Input waits for room in the session's bounded input queue; while it waits, no more is
//!   read from the client (backpressure), but output still flows.
//! - No send waits without bound: one that cannot go out for three ping intervals (the client
//!   reads nothing, so it answers no ping either) drops the connection, and a shutdown ends a
//!   waiting send at once, so a client that stops reading never pins its bridge.
//! - A connection opened by a login session (a cookie, or a ticket issued to one) ends with
//!   `detached`/`logged_out` and close 4001 when that login ends, wherever it was ended.

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use actix_ws::CloseCode;
use bytes::Bytes;

use super::auth::{authenticate_websocket, client_address, record_denial};
use super::protocol::{
    self, ClientMessage, ServerMessage, CLOSE_LOGGED_OUT, CLOSE_TAKEN_OVER, MAX_INPUT_FRAME,
};
use super::security::check_origin;
use super::socket::ConnectionSocket;
use super::ws_input::{dispatch, ClientStream, Handling, Incoming, Received};
use crate::app::AppState;
use crate::audit::{Action, Audit, Event, InputRecorder, Outcome};
use crate::auth::LoginWatch;
use crate::error::{Error, Result};
use crate::session::{AttachEvent, Attachment, PendingSession, PendingState, Session};

/// Messages delivered after the client went away, at most (its last keystrokes).
const DRAIN_MESSAGES: usize = 64;
/// How long the end of a vanished client's input is waited for.
const DRAIN_TIME: Duration = Duration::from_millis(200);
/// How long the closing frame may wait for room to go out.
const CLOSE_TIME: Duration = Duration::from_secs(1);

type Frames = ClientStream<web::Payload>;

pub async fn attach(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    // The Origin first: a ticket presented from a foreign page is not even used up.
    if let Err(e) = check_origin(&req, &state) {
        tracing::warn!(origin = ?req.headers().get(header::ORIGIN), "refused a WebSocket from a foreign Origin");
        record_denial(&state, &req, None, Some(&id), &e).await;
        return Err(e);
    }
    let caller = authenticate_websocket(&req, &id).await?;
    let target = match state.registry.live(&caller, &id) {
        Ok(session) => Target::Live(session),
        Err(not_live) => match state.registry.pending(&caller, &id) {
            Some(pending) => Target::Pending(pending),
            // An ended session kterm no longer holds (a restart ended it): the client is told
            // how it ended, as if it had been attached then.
            None => match state.registry.get(&caller, &id).await {
                Ok(record) if !record.status.is_live() => return tell_ended(&req, &record).await,
                _ => return Err(not_live),
            },
        },
    };
    // Watch the login before attaching, so an end of it in between is not missed.
    let login = caller.login.as_deref().map(|login| state.auth.watch_login(login, &caller.user));
    let attach_config = state.registry.config().attach;
    let attachment = match &target {
        Target::Live(session) => Some(session.attach(attach_config)?),
        Target::Pending(_) => None,
    };
    // actix-ws makes the handshake response and the sending half; the client's frames are
    // read from this request's payload by `ws_input`, so actix-ws gets an empty one.
    let unused = web::Payload::from_request(&req, &mut actix_web::dev::Payload::None)
        .await
        .map_err(|e| Error::Internal(format!("an empty payload: {e}")))?;
    let (response, mut ws, _) = actix_ws::handle(&req, unused)
        .map_err(|e| Error::BadRequest(format!("not a WebSocket upgrade: {e}")))?;
    let frames = ClientStream::new(body, MAX_INPUT_FRAME);
    let socket = ConnectionSocket::of(&req);
    let client = client_address(&req, &state);
    let ping_interval = state.config.server.ping_interval.0;
    let mut shutdown = state.shutdown.clone();
    let state = state.into_inner();
    actix_web::rt::spawn(async move {
        let attachment = match (target, attachment) {
            (_, Some(attachment)) => attachment,
            (Target::Live(_), None) => return,
            (Target::Pending(pending), None) => {
                match follow_pending(&mut ws, &pending, ping_interval, &mut shutdown).await {
                    Started::Ready => {}
                    Started::Failed(reason) => return tell_failed(ws, reason).await,
                    Started::Gone => return,
                }
                let attached = state
                    .registry
                    .live(&caller, &pending.id)
                    .and_then(|session| session.attach(attach_config));
                match attached {
                    Ok(attachment) => attachment,
                    Err(e) => return tell_failed(ws, e.to_string()).await,
                }
            }
        };
        let session = attachment.session().info.id.clone();
        let event = Event::new(Action::Attach, Outcome::Ok)
            .user(&caller.user)
            .client(client.clone())
            .session(&session);
        state.audit.record_later(event);
        let recorder = state
            .config
            .audit
            .record_input
            .then(|| InputRecorder::new(state.audit.clone(), &caller.user, &session));
        let bridge = Bridge {
            ws,
            attachment,
            ping_interval,
            shutdown,
            pending_input: Bytes::new(),
            audit: state.audit.clone(),
            user: caller.user,
            client,
            recorder,
            login,
            socket,
        };
        drop(state);
        bridge.run(frames).await
    });
    Ok(response)
}

/// What a WebSocket attaches to.
enum Target {
    Live(std::sync::Arc<Session>),
    /// A session whose sandbox is still starting: followed until it runs.
    Pending(std::sync::Arc<PendingSession>),
}

/// How following a pending session ended.
enum Started {
    Ready,
    Failed(String),
    /// The client went away, or the server stops.
    Gone,
}

/// Sends the client a `status` message for each phase of `pending`'s start (and pings, so
/// that a long image pull does not look like a dead connection) until it runs or failed.
async fn follow_pending(
    ws: &mut actix_ws::Session,
    pending: &PendingSession,
    ping_interval: Duration,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Started {
    let mut state = pending.follow();
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    loop {
        let now = state.borrow_and_update().clone();
        let sent = match now {
            PendingState::Ready => return Started::Ready,
            PendingState::Failed { reason } => return Started::Failed(reason),
            PendingState::Creating => Ok(()),
            PendingState::Phase { phase, detail } => {
                let status = ServerMessage::Status { phase: phase.as_str(), detail };
                ws.text(status.to_text()).await
            }
        };
        if sent.is_err() {
            return Started::Gone;
        }
        loop {
            tokio::select! {
                changed = state.changed() => match changed {
                    Ok(()) => break,
                    Err(_) => return Started::Failed("the session's creation ended".into()),
                },
                _ = ping.tick() => if ws.ping(b"").await.is_err() {
                    return Started::Gone;
                },
                _ = shutdown.wait_for(|stop| *stop) => return Started::Gone,
            }
        }
    }
}

/// Tells the client a pending session could not start: `exit` with the reason, close 1000.
async fn tell_failed(mut ws: actix_ws::Session, reason: String) {
    let exit = ServerMessage::Exit { code: None, reason: Some(reason) };
    if ws.text(exit.to_text()).await.is_ok() {
        let _ =
            ws.close(Some(protocol::close(CloseCode::Normal, "the session did not start"))).await;
    }
}

/// Upgrades, sends `exit` with the session's code and end reason, and closes with 1000.
async fn tell_ended(
    req: &HttpRequest,
    record: &crate::store::SessionRecord,
) -> Result<HttpResponse> {
    let unused = web::Payload::from_request(req, &mut actix_web::dev::Payload::None)
        .await
        .map_err(|e| Error::Internal(format!("an empty payload: {e}")))?;
    let (response, mut ws, _) = actix_ws::handle(req, unused)
        .map_err(|e| Error::BadRequest(format!("not a WebSocket upgrade: {e}")))?;
    let exit = ServerMessage::Exit { code: record.exit_code, reason: record.end_reason.clone() };
    actix_web::rt::spawn(async move {
        if ws.text(exit.to_text()).await.is_ok() {
            let _ =
                ws.close(Some(protocol::close(CloseCode::Normal, "the session has ended"))).await;
        }
    });
    Ok(response)
}

struct Bridge {
    ws: actix_ws::Session,
    attachment: Attachment,
    ping_interval: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Input received but not yet queued for the process (the queue was full).
    pending_input: Bytes,
    audit: Audit,
    user: String,
    client: Option<String>,
    /// Set when `audit.record_input` is on.
    recorder: Option<InputRecorder>,
    /// The login session this connection was opened with, if any.
    login: Option<LoginWatch>,
    /// The connection's socket, to cut it when its client takes nothing.
    socket: Option<ConnectionSocket>,
}

/// How a connection ends.
enum Ending {
    Close(CloseCode, String),
    /// The client is gone or closed first; nothing more to send.
    Gone,
    /// The client took nothing for three ping intervals; nothing more can be sent.
    Stalled,
}

/// One frame for the client.
enum Outgoing<'a> {
    Binary(Bytes),
    Text(String),
    Ping,
    Pong(&'a [u8]),
}

/// Sends `frame` at once when there is room (the usual case, without a timer), else waits for
/// room, but not past `stall` nor past the start of a shutdown.
async fn deliver(
    ws: &mut actix_ws::Session,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    stall: Duration,
    frame: Outgoing<'_>,
) -> std::result::Result<(), Ending> {
    let send = async {
        match frame {
            Outgoing::Binary(data) => ws.binary(data).await,
            Outgoing::Text(text) => ws.text(text).await,
            Outgoing::Ping => ws.ping(b"kterm").await,
            Outgoing::Pong(data) => ws.pong(data).await,
        }
    };
    let mut send = std::pin::pin!(send);
    let sent = match futures_util::poll!(send.as_mut()) {
        std::task::Poll::Ready(sent) => sent,
        std::task::Poll::Pending => tokio::select! {
            sent = send => sent,
            () = tokio::time::sleep(stall) => return Err(Ending::Stalled),
            _ = shutdown.changed() => {
                return Err(Ending::close(CloseCode::Away, "server shutting down"));
            }
        },
    };
    sent.map_err(|_| Ending::Gone)
}

impl Ending {
    fn close(code: CloseCode, why: &str) -> Ending {
        Ending::Close(code, why.to_string())
    }
}

impl Bridge {
    async fn run(mut self, mut frames: Frames) {
        let ending = self.serve(&mut frames).await;
        // What the client sent is the user's keystrokes: deliver it even though the connection
        // is gone (a command typed just before closing the tab still runs).
        let mut undelivered = vec![std::mem::take(&mut self.pending_input)];
        if matches!(ending, Ending::Gone) {
            let deadline = tokio::time::Instant::now() + DRAIN_TIME;
            for message in frames.drain(DRAIN_MESSAGES, deadline).await {
                if let Incoming::Binary(data) = message {
                    if let Some(recorder) = &mut self.recorder {
                        recorder.push(&data).await;
                    }
                    self.attachment.count_input(data.len());
                    undelivered.push(data);
                }
            }
        }
        undelivered.retain(|data| !data.is_empty());
        if !undelivered.is_empty() {
            let session = self.attachment.session().clone();
            actix_web::rt::spawn(async move {
                for data in undelivered {
                    if session.input().send_all(data).await.is_err() {
                        break;
                    }
                }
            });
        }
        if let Some(recorder) = &mut self.recorder {
            recorder.flush().await;
        }
        let why = match ending {
            Ending::Close(code, why) => {
                let close = self.ws.close(Some(protocol::close(code, &why)));
                if tokio::time::timeout(CLOSE_TIME, close).await.is_err() {
                    // `self.ws` is gone with the close: the socket field alone.
                    if let Some(socket) = &self.socket {
                        socket.cut();
                    }
                }
                why
            }
            Ending::Gone => "client went away".to_string(),
            Ending::Stalled => {
                self.cut();
                tracing::info!(session = %self.attachment.session().info.id, "dropped a client that stopped reading");
                "client stopped reading".to_string()
            }
        };
        // Dropping the frames lets actix end the connection once the close frame is out.
        drop(frames);
        let event = Event::new(Action::Detach, Outcome::Ok)
            .user(&self.user)
            .client(self.client.clone())
            .session(&self.attachment.session().info.id)
            .detail(why);
        self.audit.record(event).await;
    }

    /// Ends the connection under a client that takes nothing (what is queued for it never
    /// goes out).
    fn cut(&self) {
        if let Some(socket) = &self.socket {
            socket.cut();
        }
    }

    async fn send(&mut self, message: ServerMessage<'_>) -> std::result::Result<(), Ending> {
        self.deliver(Outgoing::Text(message.to_text())).await
    }

    async fn deliver(&mut self, frame: Outgoing<'_>) -> std::result::Result<(), Ending> {
        deliver(&mut self.ws, &mut self.shutdown, self.ping_interval * 3, frame).await
    }

    async fn serve(&mut self, frames: &mut Frames) -> Ending {
        let session = self.attachment.session().clone();
        let id = session.info.id.clone();
        let attached =
            ServerMessage::Attached { session: &id, replay_bytes: self.attachment.replay_bytes() };
        if let Err(ending) = self.send(attached).await {
            return ending;
        }
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.tick().await;
        let mut last_heard = Instant::now();
        if *self.shutdown.borrow() {
            return Ending::close(CloseCode::Away, "server shutting down");
        }
        loop {
            let logged_out = async {
                match &mut self.login {
                    Some(login) => login.ended().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = self.attachment.next() => match event {
                    AttachEvent::Output(data) => {
                        if let Err(ending) = self.deliver(Outgoing::Binary(data)).await {
                            return ending;
                        }
                    }
                    AttachEvent::Exit(code) => {
                        let reason = session.end_reason();
                        if let Err(ending) = self.send(ServerMessage::Exit { code, reason }).await {
                            return ending;
                        }
                        return Ending::close(CloseCode::Normal, "session ended");
                    }
                    AttachEvent::TakenOver => {
                        if let Err(ending) = self.send(ServerMessage::Detached { reason: "taken_over" }).await {
                            return ending;
                        }
                        return Ending::close(CloseCode::Other(CLOSE_TAKEN_OVER), "taken over");
                    }
                    AttachEvent::Warning(warning) => {
                        if let Err(ending) = self.send(ServerMessage::warning(&warning)).await {
                            return ending;
                        }
                    }
                },
                () = logged_out => {
                    if let Err(ending) = self.send(ServerMessage::Detached { reason: "logged_out" }).await {
                        return ending;
                    }
                    return Ending::close(CloseCode::Other(CLOSE_LOGGED_OUT), "logged out");
                }
                // Input waits for room in the queue; meanwhile we read no more from the client
                // (backpressure) but keep sending output.
                sent = session.input().send_some(&mut self.pending_input),
                    if !self.pending_input.is_empty() =>
                {
                    if sent.is_err() {
                        self.pending_input = Bytes::new();
                    }
                }
                received = frames.recv(), if self.pending_input.is_empty() => {
                    last_heard = Instant::now();
                    match received {
                        Received::Gone => return Ending::Gone,
                        Received::Violation(violation) => {
                            tracing::info!(session = %id, reason = violation.reason(), "closed a WebSocket that broke the protocol");
                            return Ending::Close(violation.close_code(), violation.reason().to_string());
                        }
                        Received::Message(message) => {
                            if let Some(ending) = self.handle(message).await {
                                return ending;
                            }
                        }
                    }
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.ping_interval * 3 {
                        tracing::info!(session = %id, "client stopped answering pings");
                        return Ending::close(CloseCode::Policy, "ping timeout");
                    }
                    if let Err(ending) = self.deliver(Outgoing::Ping).await {
                        return ending;
                    }
                },
                _ = self.shutdown.changed() => {
                    return Ending::close(CloseCode::Away, "server shutting down");
                }
            }
        }
    }

    /// Does what [`dispatch`] decides for one client message; `Some` ends the connection.
    async fn handle(&mut self, message: Incoming) -> Option<Ending> {
        let session = self.attachment.session().clone();
        match dispatch(message) {
            Handling::Input(mut data) => {
                if let Some(recorder) = &mut self.recorder {
                    recorder.push(&data).await;
                }
                session.note_input();
                self.attachment.count_input(data.len());
                // Write or queue what fits now; hold the rest, and the client, until there is
                // room.
                if session.write_input_now(&mut data).is_ok() {
                    self.pending_input = data;
                }
            }
            Handling::Control(control) => {
                let reply = match control {
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
                    Err(message) => Some(ServerMessage::Error { code: "bad_message", message }),
                };
                if let Some(reply) = reply {
                    if let Err(ending) = self.send(reply).await {
                        return Some(ending);
                    }
                }
            }
            Handling::Pong(data) => {
                if let Err(ending) = self.deliver(Outgoing::Pong(&data)).await {
                    return Some(ending);
                }
            }
            Handling::Nothing => {}
            Handling::Close => return Some(Ending::close(CloseCode::Normal, "bye")),
        }
        None
    }
}
