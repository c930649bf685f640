//! A client's attachment to a session: taking the session over (or being refused), sending the
//! replay (a snapshot of the terminal, see [`super::screen`]) and then live output from the
//! scrollback ring, announcing upcoming ends of the session, and detaching on drop.
//!
//! Invariants:
//! - At most one attachment is current: each attach takes a new generation, and an attachment
//!   whose generation is no longer the session's learns that it was taken over.
//! - The snapshot is taken under the session's lock and ends with the ring's last byte; live
//!   output is read from the ring from that byte's successor on. So no byte is lost or repeated
//!   between them. Replay and live output never share a frame.
//! - The replay holds no terminal query (the client's terminal would answer it as input).
//! - While it is the session's reader (see [`super::output`]), the current attachment reads the
//!   process's output itself, on its own thread, when it has sent everything in the ring: it
//!   reads only when asked for its next event, so a client that does not take its output stops
//!   the reading. Otherwise taking bytes (or detaching) wakes the pump, which waits while the
//!   current attachment's unread bytes fill the ring (see [`super::terminal`]).
//! - An attachment announces each upcoming end of the session (see [`super::deadlines`]) once,
//!   never in the middle of the replay.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::watch;

use super::deadlines::{self, Announced, Due, Warning};
use super::output::{Batch, Reader};
use super::terminal::{Session, State, MAX_FRAME};
use crate::config::AttachPolicy;
use crate::error::{Error, Result};

/// What an attached client receives next.
#[derive(Debug)]
pub enum AttachEvent {
    Output(Bytes),
    Exit(Option<i32>),
    TakenOver,
    /// kterm will end the session soon unless (for an idle timeout) the client is active.
    Warning(Warning),
}

impl Session {
    /// Attaches a client. Under [`AttachPolicy::Takeover`] an attached client is detached;
    /// under [`AttachPolicy::Reject`] it makes this a conflict.
    pub fn attach(self: &Arc<Self>, policy: AttachPolicy) -> Result<Attachment> {
        let (generation, replay) = {
            let mut state = self.state();
            if policy == AttachPolicy::Reject && state.attached.is_some() {
                return Err(Error::Conflict(format!(
                    "session {} is attached elsewhere (sessions.attach = \"reject\")",
                    self.info.id
                )));
            }
            let generation = state.next_generation;
            state.next_generation += 1;
            state.attached = Some(generation);
            let ring = state.ring.read(state.ring.start(), state.ring.capacity());
            let replay = Bytes::from(state.screen.snapshot(&ring));
            state.reader_offset = state.ring.end();
            state.last_input = Instant::now();
            (generation, replay)
        };
        let changes = self.changed.subscribe();
        // Wake a previous attachment (so it learns of the takeover) and the pump.
        self.changed.send_replace(());
        self.room.notify_one();
        self.metrics.attaches.inc();
        self.metrics.clients_attached.inc();
        self.touch();
        Ok(Attachment {
            session: self.clone(),
            generation,
            replay,
            replay_sent: 0,
            changes,
            announced: Announced::default(),
            sent: 0,
            received: 0,
        })
    }
}

/// A client's claim on a session's output. Dropping it detaches (if still current).
pub struct Attachment {
    session: Arc<Session>,
    generation: u64,
    /// What is sent before live output, and how much of it was.
    replay: Bytes,
    replay_sent: usize,
    changes: watch::Receiver<()>,
    announced: Announced,
    /// Bytes sent to and received from this client, added to the metrics on detach (never per
    /// frame: a live counter would show the rhythm of a user's typing to whoever polls).
    sent: u64,
    received: u64,
}

impl Attachment {
    /// How many bytes of scrollback come before live output.
    pub fn replay_bytes(&self) -> u64 {
        self.replay.len() as u64
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Counts input this client sent (for the metrics, added on detach).
    pub fn count_input(&mut self, bytes: usize) {
        self.received += bytes as u64;
    }

    /// The next thing to send to the client: the replay, then a due warning, then live output
    /// or the end. Cancel-safe: nothing is taken from the session unless this returns it.
    pub async fn next(&mut self) -> AttachEvent {
        loop {
            let (wake, reads) = {
                let mut state = self.session.state();
                if state.attached != Some(self.generation) {
                    return AttachEvent::TakenOver;
                }
                if self.replay_sent < self.replay.len() {
                    drop(state);
                    let end = (self.replay_sent + MAX_FRAME).min(self.replay.len());
                    let data = self.replay.slice(self.replay_sent..end);
                    self.replay_sent = end;
                    if end == self.replay.len() {
                        // Sent: its memory goes back now, not when the client leaves.
                        self.replay = Bytes::new();
                        self.replay_sent = 0;
                    }
                    self.sent += data.len() as u64;
                    return AttachEvent::Output(data);
                }
                let offset = state.reader_offset.max(state.ring.start());
                let wake = match self.due_warning(&state) {
                    Due::Now(deadline, when) => {
                        drop(state);
                        self.announced.record(deadline, when);
                        let expires_at = self.session.info.expires_at;
                        return AttachEvent::Warning(Warning::new(deadline, when, expires_at));
                    }
                    Due::At(when) => Some(when),
                    Due::Never => None,
                };
                let reads = state.reader() == Reader::Attachment(self.generation);
                if offset < state.ring.end() {
                    let data = state.ring.read(offset, MAX_FRAME);
                    state.reader_offset = offset + data.len() as u64;
                    drop(state);
                    if !reads {
                        self.session.room.notify_one();
                    }
                    self.sent += data.len() as u64;
                    return AttachEvent::Output(data);
                }
                if let Some(code) = state.exit {
                    return AttachEvent::Exit(code);
                }
                (wake, reads)
            };
            let warning_window = async {
                match wake {
                    Some(when) => tokio::time::sleep_until(when.into()).await,
                    None => std::future::pending().await,
                }
            };
            let session = &self.session;
            let me = Reader::Attachment(self.generation);
            let output = async {
                match reads {
                    true => std::future::poll_fn(|cx| session.poll_output(cx, me, 1)).await,
                    false => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return AttachEvent::Exit(None);
                    }
                }
                _ = warning_window => {}
                batch = output => {
                    if let Batch::Read = batch {
                        // Our own append: seen when the ring is read at the top of the loop.
                        self.changes.borrow_and_update();
                    }
                }
            }
        }
    }

    /// Whether a warning is due; none once the session is ending (nor during the replay, which
    /// [`Self::next`] sends first).
    fn due_warning(&self, state: &State) -> Due {
        if state.exit.is_some() || state.ending.is_some() {
            return Due::Never;
        }
        let session = &self.session;
        let idle = session.idle_deadline_of(state);
        deadlines::next_warning(
            &session.lifecycle,
            idle,
            session.expires,
            &self.announced,
            Instant::now(),
        )
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        {
            let mut state = self.session.state();
            if state.attached == Some(self.generation) {
                state.attached = None;
                state.last_detach = Instant::now();
            }
        }
        self.session.room.notify_one();
        let metrics = &self.session.metrics;
        metrics.clients_attached.dec();
        metrics.output_bytes.inc_by(self.sent);
        metrics.input_bytes.inc_by(self.received);
    }
}
