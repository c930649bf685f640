//! `kterm healthcheck`: asks a running kterm's `/healthz` and exits 0 when it answers 200, for
//! container health checks (the image has no curl). Plain HTTP/1.1 over loopback, no
//! dependencies; with TLS configured it checks that the port accepts connections.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;

const TIMEOUT: Duration = Duration::from_secs(3);

/// The address to ask: `server.listen`, with an unspecified address (`0.0.0.0`, `::`) replaced
/// by loopback.
pub fn target(config: &Config) -> Result<SocketAddr, String> {
    let mut addr = config.listen_addr().map_err(|e| e.0)?;
    if addr.ip().is_unspecified() {
        let loopback = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        addr.set_ip(loopback);
    }
    Ok(addr)
}

/// Checks `addr`; `Ok` with what was seen, or `Err` with why it is not healthy.
pub fn check(addr: SocketAddr, tls: bool) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    if tls {
        return Ok(format!("{addr} accepts connections (TLS: /healthz not read)"));
    }
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut answer = Vec::new();
    stream.take(4096).read_to_end(&mut answer).map_err(|e| format!("reading from {addr}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default();
    match status.split(' ').nth(1) {
        Some("200") => Ok(format!("http://{addr}/healthz: {status}")),
        _ => Err(format!("http://{addr}/healthz answered {status:?}")),
    }
}
