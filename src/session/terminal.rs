//! One terminal session: its process, the output pump into the scrollback ring, the input
//! writer, and the session's activity and idle clock. Clients attach through
//! [`super::attachment`]; who reads the output when is [`super::output`]'s.
//!
//! Invariants:
//! - Output is read from the process only while there is room: when a client is attached, the
//!   bytes it has not yet taken are never overwritten, so a client that stops reading stops the
//!   reading of the PTY (the process then blocks on its own output) instead of growing memory.
//!   With no client attached the pump reads, and the ring keeps the newest bytes.
//! - Once kterm is ending the session (or its process has ended), the pump reads, and an
//!   attached client no longer holds it back, so the process's last output is drained.
//! - Input goes to the process in order: written directly to a host PTY by the bridge only
//!   while nothing is queued for it, else through the bounded queue and its writer.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};

use super::deadlines::Lifecycle;
use super::input::{InputChunk, InputClosed, InputQueue};
use super::output::{Batch, Output, Reader};
use super::ring::ScrollbackRing;
use super::screen::TerminalState;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::sandbox::pty::HostPty;
use crate::sandbox::{ProcessControl, TtyProcess};
use crate::store::{SessionRecord, SessionStatus};

/// The largest output frame a client is sent.
pub(super) const MAX_FRAME: usize = 64 * 1024;

/// What does not change over a session's life.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub user: String,
    pub namespace: String,
    pub profile: String,
    pub sandbox_id: String,
    pub context: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The terminal size the process started with (columns, rows).
    pub size: (u16, u16),
}

impl SessionInfo {
    /// The slot of the sandbox the session runs in.
    pub fn slot_key(&self) -> super::SlotKey {
        super::SlotKey {
            user: self.user.clone(),
            namespace: self.namespace.clone(),
            profile: self.profile.clone(),
        }
    }
}

pub struct Session {
    pub info: SessionInfo,
    state: Mutex<State>,
    /// Bumped whenever output is appended, the attachment changes, or the process ends.
    pub(super) changed: watch::Sender<()>,
    /// Signalled when the attached client took bytes (or detached): the pump may read again.
    pub(super) room: Notify,
    input: InputQueue,
    /// The process's PTY when it is on this host: keystrokes are written to it directly.
    direct_input: Option<HostPty>,
    /// The process's output, read by the pump or the attached client (see [`super::output`]).
    pub(super) output: Mutex<Output>,
    control: Arc<dyn ProcessControl>,
    last_active_ms: AtomicI64,
    touched: AtomicBool,
    /// Set while a kill of the process is under way.
    killing: AtomicBool,
    /// Set once the registry has recorded the end of the session.
    recorded: watch::Sender<bool>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) lifecycle: Lifecycle,
    /// Where its output goes besides the ring (`[recording]`).
    recorder: Option<super::recording::Recorder>,
    /// `info.expires_at` on the monotonic clock.
    pub(super) expires: Instant,
}

/// What changes over a session's life, behind one lock; [`super::attachment`] reads and moves
/// the attachment's part of it.
pub(super) struct State {
    pub(super) ring: ScrollbackRing,
    /// The terminal's state at the ring's start, for snapshots (see [`super::screen`]).
    pub(super) screen: TerminalState,
    /// Generation of the current attachment, if any.
    pub(super) attached: Option<u64>,
    /// Offset of the next byte the current attachment will take.
    pub(super) reader_offset: u64,
    pub(super) next_generation: u64,
    /// `Some(code)` once the process has ended and all of its output is in the ring.
    pub(super) exit: Option<Option<i32>>,
    /// When `exit` was set.
    pub(super) ended_at: Option<DateTime<Utc>>,
    /// Why the session is being ended by kterm (deleted, idle, expired, shutdown).
    pub(super) ending: Option<String>,
    /// The process has ended: the pump drains what it left.
    pub(super) draining: bool,
    last_output: Instant,
    pub(super) last_detach: Instant,
    /// The last attach, input or keep-alive of a client.
    pub(super) last_input: Instant,
}

impl Session {
    /// Starts the pump and the input writer of `process`. The returned future of the pump
    /// resolves with the exit code when the process has ended and its output is all read.
    pub fn start(
        info: SessionInfo,
        process: TtyProcess,
        scrollback: usize,
        lifecycle: Lifecycle,
        metrics: Arc<Metrics>,
        recorder: Option<super::recording::Recorder>,
    ) -> (Arc<Session>, impl std::future::Future<Output = Option<i32>> + Send) {
        let (input_tx, input_rx) = InputQueue::new();
        let now = Instant::now();
        let lifetime_left = (info.expires_at - Utc::now()).to_std().unwrap_or_default();
        // Past any real deadline if the addition overflows: such a session never expires.
        let expires = now.checked_add(lifetime_left).unwrap_or(now + Duration::from_secs(1 << 40));
        let session = Arc::new(Session {
            state: Mutex::new(State {
                ring: ScrollbackRing::new(scrollback),
                screen: TerminalState::new(info.size.0, info.size.1),
                attached: None,
                reader_offset: 0,
                next_generation: 1,
                exit: None,
                ended_at: None,
                ending: None,
                draining: false,
                last_output: now,
                last_detach: now,
                last_input: now,
            }),
            changed: watch::Sender::new(()),
            room: Notify::new(),
            input: input_tx,
            direct_input: process.host_pty.clone(),
            output: Output::new(process.host_pty.map(|pty| pty.reader()), process.output),
            control: process.control,
            last_active_ms: AtomicI64::new(info.created_at.timestamp_millis()),
            touched: AtomicBool::new(false),
            killing: AtomicBool::new(false),
            recorded: watch::Sender::new(false),
            metrics,
            lifecycle,
            expires,
            info,
            recorder: recorder.clone(),
        });
        tokio::spawn(write_input(process.input, input_rx, recorder));
        let pump = session.clone().pump();
        (session, pump)
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the process's output into the ring while no client does, until it ends; returns
    /// its exit code.
    async fn pump(self: Arc<Self>) -> Option<i32> {
        let capacity = self.state().ring.capacity();
        let low_water = (capacity / 4).clamp(1, MAX_FRAME);
        let control = self.control.clone();
        let mut exit_wait = Box::pin(async move { control.wait().await });
        let mut exited: Option<Option<i32>> = None;
        loop {
            let batch = if exited.is_some() {
                // The process is gone; take what it left, but do not wait on a descendant that
                // keeps the terminal open.
                match tokio::time::timeout(Duration::from_millis(200), self.pump_batch(low_water))
                    .await
                {
                    Ok(batch) => batch,
                    Err(_) => break,
                }
            } else {
                tokio::select! {
                    batch = self.pump_batch(low_water) => batch,
                    code = &mut exit_wait => {
                        exited = Some(code);
                        // From now on the pump reads (an attached client no longer does).
                        self.state().draining = true;
                        self.changed.send_replace(());
                        continue;
                    }
                }
            };
            match batch {
                Batch::Read => {}
                Batch::End(None) => break,
                Batch::End(Some(e)) => {
                    tracing::warn!(session = %self.info.id, error = %e, "the shell's output broke off");
                    self.state().ending.get_or_insert_with(|| "backend_error".into());
                    break;
                }
            }
        }
        // Added to the metrics when the session's output ends, never per read: a live counter
        // would let anyone who polls /metrics see the rhythm of a user's typing (the echo).
        let read_total = self.output().total;
        self.metrics.pty_read_bytes.inc_by(read_total);
        let code = match exited {
            Some(code) => code,
            None => self.control.wait().await,
        };
        let mut state = self.state();
        // The sandbox went (deleted from outside, evicted): the backend says why.
        let lost = self.control.lost();
        match lost {
            Some(why) if matches!(state.ending.as_deref(), None | Some("backend_error")) => {
                state.ending = Some(format!("sandbox_lost: {why}"));
            }
            // The backend could not say how the process ended: it lost track of it.
            _ if code.is_none() => {
                state.ending.get_or_insert_with(|| "backend_error".into());
            }
            _ => {}
        }
        state.exit = Some(code);
        state.ended_at = Some(Utc::now());
        drop(state);
        self.changed.send_replace(());
        code
    }

    /// The pump's next batch of output: waits for its turn, room of at least `want`, and output.
    async fn pump_batch(&self, want: usize) -> Batch {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let read = std::future::poll_fn(|cx| self.poll_output(cx, Reader::Pump, want));
            tokio::select! {
                biased;
                batch = read => return batch,
                () = notified => {}
            }
        }
    }

    pub(super) fn append(&self, data: &[u8]) {
        {
            let mut state = self.state();
            let State { ring, screen, .. } = &mut *state;
            // Bytes leave the ring only into the terminal state (which then holds the screen at
            // the ring's start); nothing is fed to it while output fits in the ring.
            ring.push(data, |at, dropped| screen.consume(at, dropped));
            state.last_output = Instant::now();
        }
        if let Some(recorder) = &self.recorder {
            recorder.output(data);
        }
        self.changed.send_replace(());
    }

    pub fn is_attached(&self) -> bool {
        self.state().attached.is_some()
    }

    /// Input for the process, bounded in bytes: sending waits while the process is not reading.
    pub fn input(&self) -> &InputQueue {
        &self.input
    }

    /// Writes a client's input now, as far as it can without waiting: straight to a PTY on
    /// this host when nothing is queued before it (the keystroke then crosses no other thread),
    /// else into the queue while it has room. What did not fit stays in `data`.
    pub fn write_input_now(&self, data: &mut Bytes) -> std::result::Result<(), InputClosed> {
        if let Some(pty) = &self.direct_input {
            if self.input.queued() == 0 && !data.is_empty() {
                // Full, or broken: the queue's writer waits for room or reports the end.
                if let Ok(n) = pty.try_write(data) {
                    if let Some(recorder) = &self.recorder {
                        recorder.input(&data[..n]);
                    }
                    data.advance(n);
                }
            }
        }
        self.input.offer(data)
    }

    pub async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        if cols == 0 || rows == 0 || cols > 1000 || rows > 1000 {
            return Err(Error::BadRequest(format!(
                "terminal size {cols}x{rows} is out of range (1 to 1000 each)"
            )));
        }
        self.control.resize(cols, rows).await?;
        if let Some(recorder) = &self.recorder {
            recorder.resize(cols, rows);
        }
        let mut state = self.state();
        let at = state.ring.end();
        state.screen.resize(at, cols, rows);
        Ok(())
    }

    /// Ends the process for `reason`; the pump then finishes the session. A kill already
    /// under way is not started twice; a later call tries again if the process outlived it.
    pub async fn terminate(&self, reason: &str) {
        {
            let mut state = self.state();
            if state.exit.is_some() {
                return;
            }
            state.ending.get_or_insert_with(|| reason.to_string());
        }
        // A client that stopped reading must not keep the pump from draining the process.
        self.room.notify_one();
        if self.killing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.control.kill().await;
        self.killing.store(false, Ordering::Release);
    }

    /// The reason kterm gave when it ended the session, if it did.
    pub fn end_reason(&self) -> Option<String> {
        self.state().ending.clone()
    }

    pub fn has_exited(&self) -> bool {
        self.state().exit.is_some()
    }

    /// Called by the registry once the end is in the store.
    pub fn mark_recorded(&self) {
        self.recorded.send_replace(true);
    }

    /// Resolves when the process has ended and the registry has recorded it.
    pub async fn recorded(&self) {
        let mut recorded = self.recorded.subscribe();
        let _ = recorded.wait_for(|done| *done).await;
    }

    /// When the session times out as idle unless something happens; `None` while a client is
    /// attached, unless `sessions.idle_when_attached`.
    pub fn idle_deadline(&self) -> Option<Instant> {
        self.idle_deadline_of(&self.state())
    }

    pub(super) fn idle_deadline_of(&self, state: &State) -> Option<Instant> {
        let since = match state.attached {
            Some(_) if !self.lifecycle.idle_when_attached => return None,
            Some(_) => state.last_output.max(state.last_input),
            // Output nobody sees counts as activity only for `idle_timeout` after the detach:
            // a detached program that prints without end (`yes`) still idles out, at the
            // latest twice the timeout after the last client left.
            None => {
                let seen_until = state.last_detach.checked_add(self.lifecycle.idle_timeout);
                let output = seen_until.map_or(state.last_output, |t| state.last_output.min(t));
                output.max(state.last_detach)
            }
        };
        since.checked_add(self.lifecycle.idle_timeout)
    }

    /// Records input or a keep-alive from the attached client: activity that restarts the idle
    /// clock (and moves the deadline an attachment may have warned of).
    pub fn note_input(&self) {
        self.touch();
        self.state().last_input = Instant::now();
        if self.lifecycle.idle_when_attached {
            self.changed.send_replace(());
        }
    }

    /// Records activity; written to the store in batches.
    pub fn touch(&self) {
        self.last_active_ms.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        self.touched.store(true, Ordering::Relaxed);
    }

    /// The last activity, if it changed since the previous call.
    pub fn take_touched(&self) -> Option<DateTime<Utc>> {
        if self.touched.swap(false, Ordering::Relaxed) {
            Some(self.last_active())
        } else {
            None
        }
    }

    pub fn last_active(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.last_active_ms.load(Ordering::Relaxed))
            .unwrap_or(self.info.created_at)
    }

    /// The session as the API shows it.
    pub fn record(&self) -> SessionRecord {
        let (status, exit_code, end_reason, ended_at) = {
            let state = self.state();
            match state.exit {
                Some(code) => {
                    (SessionStatus::Terminated, code, state.ending.clone(), state.ended_at)
                }
                None => (SessionStatus::Running, None, None, None),
            }
        };
        SessionRecord {
            id: self.info.id.clone(),
            user: self.info.user.clone(),
            namespace: self.info.namespace.clone(),
            profile: self.info.profile.clone(),
            sandbox_id: self.info.sandbox_id.clone(),
            status,
            context: self.info.context.clone(),
            created_at: self.info.created_at,
            last_active: self.last_active(),
            expires_at: self.info.expires_at,
            exit_code,
            end_reason: end_reason.or_else(|| exit_code.map(|_| "exited".into())),
            ended_at,
        }
    }
}

/// Writes queued input to the process until the session is gone or the process stops reading.
async fn write_input(
    mut input: Pin<Box<dyn AsyncWrite + Send>>,
    mut queue: mpsc::UnboundedReceiver<InputChunk>,
    recorder: Option<super::recording::Recorder>,
) {
    // Each chunk's share of the input budget returns when it is dropped, after its write.
    while let Some(chunk) = queue.recv().await {
        if let Some(recorder) = &recorder {
            recorder.input(&chunk.data);
        }
        if input.write_all(&chunk.data).await.is_err() {
            break;
        }
    }
}
