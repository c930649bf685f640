//! The socket under a terminal WebSocket, so its bridge can cut the connection. actix holds a
//! connection while frames are queued for it, and a client that reads nothing never takes
//! them: without a cut, such a connection would stay open for good and a graceful stop would
//! wait its whole `server.shutdown_timeout` for it.
//!
//! Invariant: the descriptor kept is a duplicate made while a request is served on the
//! connection (so it is that connection's socket, never a reused number), owned by the
//! bridge; shutting it down ends the connection for actix too (its reads see the end, its
//! writes fail), whatever is still queued.

use std::any::Any;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use actix_web::HttpRequest;

/// A connection's socket descriptor, recorded by [`on_connect`] for the requests served on it.
#[derive(Clone, Copy)]
struct SocketFd(RawFd);

/// Records the socket of every new connection (plain or TLS) in its connection data.
pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<TcpStream>;
    let fd = if let Some(tcp) = connection.downcast_ref::<TcpStream>() {
        tcp.as_raw_fd()
    } else if let Some(tls) = connection.downcast_ref::<Tls>() {
        tls.get_ref().0.as_raw_fd()
    } else {
        return;
    };
    data.insert(SocketFd(fd));
}

/// A duplicate of the socket of the connection `req` came on, which outlives the request.
pub struct ConnectionSocket(OwnedFd);

impl ConnectionSocket {
    pub fn of(req: &HttpRequest) -> Option<ConnectionSocket> {
        let SocketFd(fd) = *req.conn_data::<SocketFd>()?;
        // SAFETY: `fd` is the socket of the connection this request is being served on, which
        // actix keeps open at least until the request's handler returns; it is only borrowed
        // here, to be duplicated.
        let socket = unsafe { BorrowedFd::borrow_raw(fd) };
        socket.try_clone_to_owned().ok().map(ConnectionSocket)
    }

    /// Ends the connection in both directions.
    pub fn cut(&self) {
        let _ = nix::sys::socket::shutdown(self.0.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    }
}
