//! A pseudo-terminal on the host with a child process on its slave side, read and written
//! asynchronously through the master (non-blocking, driven by tokio's reactor: no thread per
//! terminal). Used by the `local` backend and by the benchmark's raw-PTY baseline.
//!
//! [`HostPty`] is the master with no reactor of its own: the `local` backend's sessions read it
//! through a [`PtyReader`], which registers with the runtime of whoever reads it (and can be
//! released to move, so that a session's output is read on the thread that serves its client),
//! write keystrokes to it directly ([`HostPty::try_write`]), and queue larger input through a
//! [`PtyWriter`], which registers only while the terminal is full.
//!
//! Invariants:
//! - Each registration is of a descriptor of its own (a duplicate), so a reader and a writer
//!   registered with the same runtime never collide; a registration is removed before its
//!   descriptor is closed (tokio's `AsyncFd` does so on drop).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::sync::watch;

/// The master side of a PTY, shared by its reader and writer halves.
#[derive(Clone)]
pub struct PtyMaster {
    fd: Arc<AsyncFd<OwnedFd>>,
}

/// The master side of a PTY, not registered with any runtime.
#[derive(Clone)]
pub struct HostPty {
    fd: Arc<OwnedFd>,
}

/// A child process running on a PTY, whose master no runtime watches yet.
pub struct HostPtyChild {
    pub pty: HostPty,
    pub pid: i32,
    /// Becomes `Some(code)` when the child has exited; a signal `n` is reported as `128 + n`.
    pub exited: watch::Receiver<Option<i32>>,
}

/// A child process running on a PTY.
pub struct PtyChild {
    pub master: PtyMaster,
    pub pid: i32,
    /// Becomes `Some(code)` when the child has exited; a signal `n` is reported as `128 + n`.
    pub exited: watch::Receiver<Option<i32>>,
}

/// Starts `argv` on a new PTY of the given size, with exactly `env` as its environment, in `cwd`,
/// as the leader of a new session with the PTY as its controlling terminal; its master is
/// registered with the current runtime.
pub fn spawn(
    argv: &[String],
    env: &[(String, String)],
    cwd: &Path,
    cols: u16,
    rows: u16,
) -> io::Result<PtyChild> {
    let child = spawn_host(argv, env, cwd, cols, rows)?;
    Ok(PtyChild { master: child.pty.master()?, pid: child.pid, exited: child.exited })
}

/// Like [`spawn`], with the master left unregistered (see [`HostPty`]).
pub fn spawn_host(
    argv: &[String],
    env: &[(String, String)],
    cwd: &Path,
    cols: u16,
    rows: u16,
) -> io::Result<HostPtyChild> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let size = winsize(cols, rows);
    let pty = nix::pty::openpty(Some(&size), None).map_err(io::Error::from)?;
    set_cloexec(pty.master.as_raw_fd())?;
    set_cloexec(pty.slave.as_raw_fd())?;
    set_nonblocking(pty.master.as_raw_fd())?;

    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::from(pty.slave.try_clone()?))
        .stdout(Stdio::from(pty.slave.try_clone()?))
        .stderr(Stdio::from(pty.slave.try_clone()?))
        .kill_on_drop(false);
    // SAFETY: only async-signal-safe calls (setsid, ioctl) run between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    drop(pty.slave);
    let pid = child.id().map(|p| p as i32).unwrap_or(-1);
    let (tx, exited) = watch::channel(None);
    tokio::spawn(async move {
        let code = match child.wait().await {
            Ok(status) => exit_code(status),
            Err(_) => 255,
        };
        let _ = tx.send(Some(code));
    });
    Ok(HostPtyChild { pty: HostPty { fd: Arc::new(pty.master) }, pid, exited })
}

impl HostPty {
    /// The master registered (for reading and writing) with the current runtime.
    pub fn master(&self) -> io::Result<PtyMaster> {
        let fd = self.register(Interest::READABLE | Interest::WRITABLE)?;
        Ok(PtyMaster { fd: Arc::new(fd) })
    }

    /// A reader that registers with the runtime it is first polled on.
    pub fn reader(&self) -> PtyReader {
        PtyReader { pty: self.clone(), registration: None }
    }

    /// A writer that registers with the current runtime only while the terminal is full.
    pub fn writer(&self) -> PtyWriter {
        PtyWriter { pty: self.clone(), registration: None }
    }

    /// Writes what the terminal takes now, without waiting (`WouldBlock` when it takes nothing).
    pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        write_fd(self.fd.as_raw_fd(), data)
    }

    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        resize_fd(self.fd.as_raw_fd(), cols, rows)
    }

    /// A duplicate of the master registered with the current runtime for `interest`.
    fn register(&self, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
        let fd = self.fd.try_clone()?;
        // SAFETY: an OwnedFd is a valid open descriptor and stays so until the AsyncFd drops it.
        unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
    }
}

/// Reads a [`HostPty`]: registered with the runtime of the task that polls it, until released.
pub struct PtyReader {
    pty: HostPty,
    registration: Option<AsyncFd<OwnedFd>>,
}

impl PtyReader {
    /// Leaves the runtime it is registered with: the next read registers with the runtime it
    /// runs on. Whoever polled it before is not woken again by the terminal.
    pub fn release(&mut self) {
        self.registration = None;
    }
}

impl AsyncRead for PtyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.registration.is_none() {
            self.registration = Some(self.pty.register(Interest::READABLE)?);
        }
        match &self.registration {
            Some(fd) => poll_read_fd(fd, cx, buf),
            None => Poll::Pending,
        }
    }
}

/// Writes to a [`HostPty`]; registers with the current runtime only to wait for room.
pub struct PtyWriter {
    pty: HostPty,
    registration: Option<AsyncFd<OwnedFd>>,
}

impl AsyncWrite for PtyWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.pty.try_write(data) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            result => {
                // Room again: stop watching, so that the terminal's traffic wakes nobody.
                self.registration = None;
                return Poll::Ready(result);
            }
        }
        if self.registration.is_none() {
            self.registration = Some(self.pty.register(Interest::WRITABLE)?);
        }
        let written = loop {
            let Some(fd) = &self.registration else { return Poll::Pending };
            let mut guard = ready!(fd.poll_write_ready(cx))?;
            if let Ok(result) = guard.try_io(|fd| write_fd(fd.as_raw_fd(), data)) {
                break result;
            }
        };
        self.registration = None;
        Poll::Ready(written)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Reads what is ready on a registered master into `buf` (without zeroing it first).
fn poll_read_fd(
    fd: &AsyncFd<OwnedFd>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    loop {
        let mut guard = ready!(fd.poll_read_ready(cx))?;
        // SAFETY: read(2) only writes into the unfilled part, and `assume_init` below covers
        // exactly the bytes it wrote.
        let unfilled = unsafe { buf.unfilled_mut() };
        let result = guard.try_io(|fd| {
            // SAFETY: the buffer is valid for `unfilled.len()` bytes.
            let n =
                unsafe { libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len()) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match result {
            Ok(Ok(n)) => {
                // SAFETY: read(2) initialised the first `n` bytes of the unfilled part.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            // Linux reports EIO on the master once no process holds the slave: end of file.
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
            Ok(Err(e)) => return Poll::Ready(Err(e)),
            Err(_would_block) => continue,
        }
    }
}

fn write_fd(fd: i32, data: &[u8]) -> io::Result<usize> {
    // SAFETY: the buffer is valid for `data.len()` bytes.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn resize_fd(fd: i32, cols: u16, rows: u16) -> io::Result<()> {
    let size = winsize(cols, rows);
    // SAFETY: TIOCSWINSZ reads a `winsize` from the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The shell convention: the exit status, or 128 + the signal that ended the process.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255)
}

impl PtyMaster {
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        let size = winsize(cols, rows);
        // SAFETY: TIOCSWINSZ reads a `winsize` from the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsyncRead for PtyMaster {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let result = guard.try_io(|fd| {
                // SAFETY: the buffer is valid for `unfilled.len()` bytes.
                let n = unsafe {
                    libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Linux reports EIO on the master once no process holds the slave: end of file.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyMaster {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let result = guard.try_io(|fd| {
                // SAFETY: the buffer is valid for `data.len()` bytes.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsFd for PtyMaster {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

fn winsize(cols: u16, rows: u16) -> nix::pty::Winsize {
    nix::pty::Winsize { ws_row: rows.max(1), ws_col: cols.max(1), ws_xpixel: 0, ws_ypixel: 0 }
}

fn set_cloexec(fd: i32) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn set_nonblocking(fd: i32) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
