//! What kterm takes from systemd when it runs under it: the listening socket of a socket unit
//! (`LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES`), the notification socket for `Type=notify`
//! (`NOTIFY_SOCKET`, `READY=1`, `STOPPING=1`, `WATCHDOG=1`), and whether standard error is the
//! journal (`JOURNAL_STREAM`).
//!
//! Invariant: [`adopt_environment`] runs once, in `main`, before any thread starts; it removes
//! these variables from the environment (so no sandbox shell inherits them) and marks the
//! inherited descriptors close-on-exec (so no child process inherits the socket). Without
//! systemd every function here is a no-op.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::config::ConfigError;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// The `FileDescriptorName=` kterm looks for when it is passed more than one socket.
pub const SOCKET_NAME: &str = "http";

static INHERITED: Mutex<Option<TcpListener>> = Mutex::new(None);
static NOTIFY: OnceLock<Notifier> = OnceLock::new();

#[derive(Debug, Default)]
struct Notifier {
    /// `NOTIFY_SOCKET`: a path, or an abstract name written `@name`.
    socket: Option<String>,
    /// `WATCHDOG_USEC` when it is meant for this process.
    watchdog: Option<Duration>,
}

/// Takes systemd's variables (see the module header). Returns the address of an inherited
/// listening socket, which then replaces `server.listen`.
pub fn adopt_environment() -> Result<Option<SocketAddr>, ConfigError> {
    let pid = std::process::id();
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let for_us = |name: &str| var(name).and_then(|p| p.parse::<u32>().ok()) == Some(pid);

    let watchdog = match var("WATCHDOG_PID") {
        Some(_) if !for_us("WATCHDOG_PID") => None,
        _ => var("WATCHDOG_USEC").and_then(|u| u.parse::<u64>().ok()).map(Duration::from_micros),
    };
    let notifier = Notifier { socket: var("NOTIFY_SOCKET"), watchdog };
    let _ = NOTIFY.set(notifier);

    let listener = match (for_us("LISTEN_PID"), var("LISTEN_FDS")) {
        (true, Some(count)) => {
            let names = var("LISTEN_FDNAMES").unwrap_or_default();
            Some(take_listener(&count, &names)?)
        }
        _ => None,
    };
    for name in [
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ] {
        // Single-threaded here (see the invariant), so changing the environment is sound.
        std::env::remove_var(name);
    }
    let Some(listener) = listener else {
        return Ok(None);
    };
    // Like a socket kterm binds itself: the server's accept loop needs it non-blocking.
    listener.set_nonblocking(true).map_err(|e| {
        ConfigError(format!("the socket passed by systemd cannot be made non-blocking: {e}"))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| ConfigError(format!("the socket passed by systemd has no address: {e}")))?;
    if let Ok(mut slot) = INHERITED.lock() {
        *slot = Some(listener);
    }
    Ok(Some(addr))
}

/// The socket systemd passed, once: the server serves on it instead of binding its own.
pub fn take_inherited_listener() -> Option<TcpListener> {
    INHERITED.lock().ok().and_then(|mut slot| slot.take())
}

/// Picks kterm's socket among those passed: the only one, or the one named [`SOCKET_NAME`].
fn take_listener(count: &str, names: &str) -> Result<TcpListener, ConfigError> {
    let count: RawFd =
        count.parse().ok().filter(|n| (1..=64).contains(n)).ok_or_else(|| {
            ConfigError(format!("LISTEN_FDS={count:?} is not a number of sockets"))
        })?;
    let fds = LISTEN_FDS_START..LISTEN_FDS_START + count;
    for fd in fds.clone() {
        // SAFETY: fcntl on a descriptor number has no memory effects; a bad one fails.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let names: Vec<&str> = names.split(':').collect();
    let fd = match count {
        1 => LISTEN_FDS_START,
        _ => fds
            .clone()
            .zip(names.iter())
            .find(|(_, name)| **name == SOCKET_NAME)
            .map(|(fd, _)| fd)
            .ok_or_else(|| {
                ConfigError(format!(
                    "systemd passed {count} sockets ({}); name kterm's with \
                     FileDescriptorName={SOCKET_NAME}",
                    names.join(", ")
                ))
            })?,
    };
    if !is_listening_tcp(fd) {
        return Err(ConfigError(format!(
            "the socket systemd passed (descriptor {fd}) is not a listening TCP socket: use \
             ListenStream=PORT or ADDRESS:PORT in the socket unit, without Accept=yes"
        )));
    }
    // SAFETY: systemd handed this descriptor to this process (LISTEN_PID is ours) and nothing
    // else in kterm owns it; it is a listening TCP socket (checked above).
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}

fn is_listening_tcp(fd: RawFd) -> bool {
    let option = |name: libc::c_int| -> Option<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writing an int, as getsockopt requires.
        let rc = unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, name, (&raw mut value).cast(), &mut len)
        };
        (rc == 0).then_some(value)
    };
    let inet = matches!(option(libc::SO_DOMAIN), Some(libc::AF_INET | libc::AF_INET6));
    inet && option(libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && option(libc::SO_ACCEPTCONN) == Some(1)
}

/// Tells systemd something (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=…`) when it
/// asked to be told (`NOTIFY_SOCKET`); failures are logged, never fatal.
pub fn notify(state: &str) {
    let Some(socket) = NOTIFY.get().and_then(|n| n.socket.as_deref()) else {
        return;
    };
    if let Err(e) = send_notification(socket, state) {
        tracing::warn!(error = %e, socket, "could not notify systemd");
    }
}

fn send_notification(socket: &str, state: &str) -> std::io::Result<()> {
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let sender = UnixDatagram::unbound()?;
    let addr = match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            UnixAddr::from_abstract_name(name)?
        }
        None => UnixAddr::from_pathname(socket)?,
    };
    sender.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// How often to send `WATCHDOG=1`: half of `WatchdogSec=`, when systemd asked for it.
pub fn watchdog_interval() -> Option<Duration> {
    NOTIFY.get().and_then(|n| n.watchdog).filter(|d| !d.is_zero()).map(|d| d / 2)
}

/// Whether standard error is connected to the journal (`JOURNAL_STREAM` names its device and
/// inode), so that records are better sent in journald's native format.
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var("JOURNAL_STREAM").ok() else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    use std::os::fd::AsRawFd;
    match nix::sys::stat::fstat(std::io::stderr().as_raw_fd()) {
        Ok(stat) => stat.st_dev == dev && stat.st_ino == ino,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_count_of_sockets_is_a_clear_error() {
        for count in ["", "x", "0", "-1", "100000"] {
            let err = take_listener(count, "").unwrap_err();
            assert!(err.0.contains("LISTEN_FDS"), "{count:?}: {err}");
        }
    }

    #[test]
    fn notifications_reach_a_datagram_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        send_notification(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(send_notification("/nonexistent/notify", "READY=1").is_err());
    }
}
