//! Reading a session's output into its scrollback ring, by whichever side drives it: the
//! attached client's bridge, on the HTTP worker thread that serves that client, while one is
//! attached; the session's pump, on the server's main runtime, otherwise (and once the session
//! is ending or its process has ended). So a keystroke's echo is read, put in the ring and sent
//! by one thread, with no wake-up of another one on the way.
//!
//! Invariants:
//! - One side reads at a time: the one [`State::reader`] names. It reads under the output lock
//!   and appends what it read to the ring before it lets go of that lock, so output enters the
//!   ring once and in order, whichever side read it.
//! - A read takes at most the room the current attachment leaves in the ring (the bytes it has
//!   not taken are never overwritten; see [`super::terminal`]), so a client that stops reading
//!   stops the reading of its output, whichever side reads.
//! - A PTY on this host is registered with the runtime of the side that reads it; the side
//!   taking over releases the other's registration first, so the terminal wakes only the thread
//!   that reads it. Other sources (exec streams) stay where their backend made them.
//! - The end of the output (or its error) is recorded once, under the output lock, and only the
//!   pump takes it: an attachment that meets it wakes the pump and leaves the rest to it.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::terminal::{Session, State, MAX_FRAME};
use crate::sandbox::pty::PtyReader;

/// Who reads a session's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    Pump,
    /// The attachment of this generation (its bridge).
    Attachment(u64),
}

/// What one read gave.
#[derive(Debug)]
pub(super) enum Batch {
    /// Bytes went into the ring.
    Read,
    /// The output ended; with the error if it broke off. Only the pump is given this.
    End(Option<io::Error>),
}

/// The process's output stream and who it is registered for.
pub(super) struct Output {
    source: Source,
    home: Reader,
    end: End,
    /// Bytes read, added to the metrics when the output ends.
    pub(super) total: u64,
}

enum Source {
    /// A PTY on this host: it can move to the runtime of whoever reads it.
    Pty(PtyReader),
    Stream(Pin<Box<dyn AsyncRead + Send>>),
}

enum End {
    Open,
    Ended,
    Failed(io::Error),
    /// The pump has taken the end.
    Taken,
}

impl Output {
    pub(super) fn new(
        pty: Option<PtyReader>,
        stream: Pin<Box<dyn AsyncRead + Send>>,
    ) -> Mutex<Output> {
        let source = match pty {
            Some(reader) => Source::Pty(reader),
            None => Source::Stream(stream),
        };
        Mutex::new(Output { source, home: Reader::Pump, end: End::Open, total: 0 })
    }
}

impl Source {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            Source::Pty(reader) => Pin::new(reader).poll_read(cx, buf),
            Source::Stream(stream) => stream.as_mut().poll_read(cx, buf),
        }
    }

    fn release(&mut self) {
        if let Source::Pty(reader) = self {
            reader.release();
        }
    }
}

impl State {
    /// Who reads the output now.
    pub(super) fn reader(&self) -> Reader {
        match self.attached {
            Some(generation) if self.ending.is_none() && !self.draining => {
                Reader::Attachment(generation)
            }
            _ => Reader::Pump,
        }
    }

    /// Room in the ring for more output: all of it, less what the current attachment has not
    /// taken (unless kterm is ending the session: then no client holds the output back).
    pub(super) fn room(&self) -> usize {
        let unread = match self.attached {
            Some(_) if self.ending.is_none() => {
                self.ring.end().saturating_sub(self.reader_offset) as usize
            }
            _ => 0,
        };
        self.ring.capacity().saturating_sub(unread)
    }
}

impl Session {
    pub(super) fn output(&self) -> MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what output is ready into the ring (up to a frame, and at most the room), if
    /// `reader` is the side that reads now and at least `want` bytes of room are free.
    /// Pending (with the terminal set to wake this task) when nothing is ready; pending without
    /// a wake-up when it is not `reader`'s turn: the change of turn wakes it (an attach or
    /// takeover bumps `changed`, a detach or an end of the session notifies `room`).
    pub(super) fn poll_output(
        &self,
        cx: &mut Context<'_>,
        reader: Reader,
        want: usize,
    ) -> Poll<Batch> {
        let mut output = self.output();
        if !matches!(output.end, End::Open) {
            return self.poll_end(&mut output, reader);
        }
        let room = {
            let state = self.state();
            if state.reader() != reader {
                return Poll::Pending;
            }
            state.room()
        };
        if room < want.max(1) {
            return Poll::Pending;
        }
        if output.home != reader {
            output.source.release();
            output.home = reader;
        }
        let mut buf = [const { MaybeUninit::<u8>::uninit() }; MAX_FRAME];
        let limit = room.min(MAX_FRAME);
        let mut read = ReadBuf::uninit(&mut buf[..limit]);
        // Everything that is ready, in one append and one wake-up of the client (a PTY read
        // returns at most 4 KiB).
        while read.remaining() > 0 {
            let before = read.filled().len();
            match output.source.poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().len() == before => {
                    output.end = End::Ended;
                    break;
                }
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    output.end = End::Failed(e);
                    break;
                }
                Poll::Pending => break,
            }
        }
        let data = read.filled();
        if !data.is_empty() {
            output.total += data.len() as u64;
            self.append(data);
            return Poll::Ready(Batch::Read);
        }
        if matches!(output.end, End::Open) {
            return Poll::Pending;
        }
        self.poll_end(&mut output, reader)
    }

    /// The output has ended: the pump takes the end; an attachment wakes the pump for it.
    fn poll_end(&self, output: &mut Output, reader: Reader) -> Poll<Batch> {
        if reader != Reader::Pump {
            self.room.notify_one();
            return Poll::Pending;
        }
        match std::mem::replace(&mut output.end, End::Taken) {
            End::Failed(e) => Poll::Ready(Batch::End(Some(e))),
            _ => Poll::Ready(Batch::End(None)),
        }
    }
}
