//! A WebSocket client over a raw TCP stream, for sending frames no library would: reserved
//! bits, reserved opcodes, lying lengths. Every read has a deadline.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the server sent, as a frame.
#[derive(Debug)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Close(Option<u16>),
    Other(u8),
    /// The server closed the TCP connection.
    Eof,
}

pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// A masked client frame: `first` is the first byte (FIN, RSV bits, opcode); the length is
/// encoded in the shortest form.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(first, payload.len() as u64);
    let mask = [0x5a, 0xa5, 0x3c, 0xc3];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The first bytes of a masked frame that declares `len` payload bytes (the mask included).
pub fn declared(first: u8, len: u64) -> Vec<u8> {
    let mut out = header(first, len);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

fn header(first: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out
}

impl RawWs {
    /// Opens `path` on `addr` with the upgrade handshake and `headers` (a `host` among them
    /// replaces the default); returns the stream after a 101, or the status line and body of
    /// any other answer.
    pub async fn connect(
        addr: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<RawWs, String> {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
            request.push_str(&format!("Host: {addr}\r\n"));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut raw = RawWs { stream, buf: Vec::new() };
        let head = raw.read_head().await?;
        if head.starts_with("HTTP/1.1 101") {
            return Ok(raw);
        }
        // Whatever body came with the refusal, for the message.
        let _ = tokio::time::timeout(Duration::from_millis(200), raw.fill()).await;
        let status = head.lines().next().unwrap_or_default();
        Err(format!("{status}\n{}", String::from_utf8_lossy(&raw.buf)))
    }

    async fn read_head(&mut self) -> Result<String, String> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return Ok(head);
            }
            if !self.fill().await? {
                return Err("the server closed before answering".into());
            }
        }
    }

    /// Reads more bytes; `false` at EOF.
    async fn fill(&mut self) -> Result<bool, String> {
        let mut chunk = [0u8; 16384];
        let read = tokio::time::timeout(super::WAIT, self.stream.read(&mut chunk))
            .await
            .map_err(|_| "timed out waiting for the server".to_string())?;
        match read {
            Ok(0) | Err(_) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed: a failed write is what the test looks at next.
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next frame from the server (unmasked), or EOF.
    pub async fn next(&mut self) -> Frame {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return frame;
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return Frame::Eof,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Reads frames until a close frame; returns its code (`None` for EOF without one).
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Frame::Close(code) => return code,
                Frame::Eof => return None,
                _ => {}
            }
        }
    }

    /// Whether the server ends the TCP connection within `within`.
    pub async fn closes_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
    let first = *buf.first()?;
    let short = (buf.get(1)? & 0x7F) as usize;
    let (len, start) = match short {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(buf.get(2..10)?);
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        n => (n, 2),
    };
    let payload = buf.get(start..start + len)?;
    let frame = match first & 0x0F {
        1 => Frame::Text(String::from_utf8_lossy(payload).into_owned()),
        2 => Frame::Binary(payload.to_vec()),
        8 => {
            Frame::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])))
        }
        op => Frame::Other(op),
    };
    Some((frame, start + len))
}
