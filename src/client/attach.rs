//! `kterm attach SESSION_OR_URL`: this terminal becomes the session's, like the browser's:
//! raw mode, the session's screen replayed on attach, keystrokes sent as binary frames, the
//! size sent at attach and on every SIGWINCH.
//!
//! Rules, as in the browser:
//! - The detach key (Ctrl-] by default) leaves the session running and exits 0.
//! - The shell's end (`{"type":"exit"}`) ends the client with the shell's exit code.
//! - A newer attach elsewhere takes the session over (`detached`/4000): this client says so
//!   and exits 1 without reconnecting; so does a login that ended (4001).
//! - A connection that breaks otherwise is made again (a few times, waiting longer each
//!   time); the terminal is reset before the replay, so the screen is drawn once.
//!
//! The terminal's settings are restored however the client ends ([`RawMode`]'s drop).

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::{ClientError, ClientResult, Target};

/// Ctrl-]: the default detach key (as telnet's escape).
pub const DEFAULT_DETACH: u8 = 0x1d;
/// Attempts to reconnect after a broken connection.
const RECONNECTS: u32 = 5;

/// The terminal in raw mode until dropped.
struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            // Not a terminal (a pipe): nothing to set or restore.
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// This terminal's size (columns, rows), if it is one.
fn terminal_size() -> Option<(u16, u16)> {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` to the pointer given, which points to ours.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

/// How one connection ended.
enum Ended {
    /// The shell exited with this code.
    Exit(u8),
    Detached,
    /// Detached by the server (taken over, logged out): the reason.
    Refused(String),
    /// Broke: try again.
    Broken(String),
}

/// Attaches until the shell ends or the user detaches; the process's exit code.
pub async fn run(target: &Target, detach_key: u8) -> ClientResult<u8> {
    let _raw = RawMode::enter();
    let (keys_tx, mut keys) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdin.read(&mut buf).await {
            if keys_tx.send(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
    });
    let mut attempt = 0;
    let mut first = true;
    loop {
        match connect_once(target, detach_key, &mut keys, first).await {
            Ok(Ended::Exit(code)) => return Ok(code),
            Ok(Ended::Detached) => {
                eprint!(
                    "\r\nkterm: detached from session {} (it keeps running)\r\n",
                    target.session
                );
                return Ok(0);
            }
            Ok(Ended::Refused(reason)) => {
                eprint!("\r\nkterm: detached: {reason}\r\n");
                return Ok(1);
            }
            Err(e) if first => return Err(e),
            Ok(Ended::Broken(why)) | Err(ClientError(why)) => {
                attempt += 1;
                if attempt > RECONNECTS {
                    return Err(ClientError(format!("the connection broke: {why}")));
                }
                eprint!("\r\nkterm: connection lost ({why}); reconnecting…\r\n");
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(4))).await;
            }
        }
        first = false;
    }
}

async fn connect_once(
    target: &Target,
    detach_key: u8,
    keys: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
    first: bool,
) -> ClientResult<Ended> {
    let mut request = target
        .ws_url()
        .into_client_request()
        .map_err(|e| ClientError(format!("bad session URL: {e}")))?;
    if let Some(token) = &target.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await.map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Http(response) => ClientError(format!(
            "the server refused the attach ({}){}",
            response.status(),
            response
                .body()
                .as_ref()
                .map(|b| format!(": {}", String::from_utf8_lossy(b)))
                .unwrap_or_default()
        )),
        e => ClientError(format!("connecting to {}: {e}", target.server)),
    })?;
    let (mut sink, mut stream) = ws.split();
    let mut out = std::io::stdout();
    if !first {
        // The replay redraws the screen: start from a clean terminal.
        let _ = out.write_all(b"\x1bc");
    }
    let resize = |(cols, rows): (u16, u16)| {
        Message::text(json!({"type": "resize", "cols": cols, "rows": rows}).to_string())
    };
    if let Some(size) = terminal_size() {
        let _ = sink.send(resize(size)).await;
    }
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(|e| ClientError(format!("watching the terminal size: {e}")))?;
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Binary(data))) => {
                    let _ = out.write_all(&data);
                    let _ = out.flush();
                }
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).unwrap_or_default();
                    match message["type"].as_str() {
                        Some("exit") => {
                            let code = message["code"].as_i64().unwrap_or(0).rem_euclid(256);
                            return Ok(Ended::Exit(u8::try_from(code).unwrap_or(1)));
                        }
                        Some("detached") => {
                            let reason = match message["reason"].as_str() {
                                Some("taken_over") => "the session was attached elsewhere".to_string(),
                                Some("logged_out") => "the login ended".to_string(),
                                other => other.unwrap_or("by the server").to_string(),
                            };
                            return Ok(Ended::Refused(reason));
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    return Ok(match code {
                        Some(4000) => Ended::Refused("the session was attached elsewhere".into()),
                        Some(4001) => Ended::Refused("the login ended".into()),
                        Some(1000) => Ended::Exit(0),
                        other => Ended::Broken(format!("closed with {other:?}")),
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Ok(Ended::Broken(e.to_string())),
                None => return Ok(Ended::Broken("the connection closed".into())),
            },
            typed = keys.recv() => {
                let Some(typed) = typed else {
                    // Stdin ended (a pipe): stay attached for output.
                    std::future::pending::<()>().await;
                    continue;
                };
                if let Some(at) = typed.iter().position(|b| *b == detach_key) {
                    if at > 0 {
                        let _ = sink.send(Message::binary(typed[..at].to_vec())).await;
                    }
                    let _ = sink.send(Message::Close(None)).await;
                    return Ok(Ended::Detached);
                }
                if sink.send(Message::binary(typed)).await.is_err() {
                    return Ok(Ended::Broken("sending failed".into()));
                }
            }
            _ = winch.recv() => {
                if let Some(size) = terminal_size() {
                    let _ = sink.send(resize(size)).await;
                }
            }
        }
    }
}

/// The byte of a detach key written `ctrl-X` (or `^X`).
pub fn parse_detach_key(raw: &str) -> Option<u8> {
    let rest = raw
        .strip_prefix("ctrl-")
        .or_else(|| raw.strip_prefix("C-"))
        .or_else(|| raw.strip_prefix('^'))?;
    let mut chars = rest.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else { return None };
    match c.to_ascii_lowercase() {
        c @ 'a'..='z' => Some(c as u8 - b'a' + 1),
        ']' => Some(0x1d),
        '\\' => Some(0x1c),
        '^' => Some(0x1e),
        '_' => Some(0x1f),
        _ => None,
    }
}
