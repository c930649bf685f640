//! What a terminal client sends, decoded: WebSocket frames read from the connection, checked,
//! reassembled from continuations, and handed to the bridge one message at a time.
//!
//! Invariants:
//! - A malformed frame (reserved bits, a reserved opcode, an unmasked or fragmented control
//!   frame, a control frame over 125 bytes, a continuation with no start, a bad close code,
//!   invalid UTF-8 in a text message or a close reason) or an oversized one ends the stream:
//!   [`ClientFrames::next_message`] returns the [`Violation`] once and nothing after it. No
//!   caller ever decodes the same bad bytes twice, so a hostile frame cannot make a loop spin.
//! - A frame that declares more than the limit is refused from its header, before its body is
//!   waited for or buffered; so is a control frame that declares more than 125 bytes.
//! - Memory is bounded: bytes are read from the connection only when the buffered ones hold no
//!   complete message, so at most one frame (up to the limit, plus its header) and one read are
//!   held, plus one message being reassembled (up to the limit). Not reading is backpressure:
//!   actix stops reading the socket.
//! - Complete messages already received are handed out before the end of the connection is.
//!
//! The decoding is synchronous ([`ClientFrames`]), and so is the decision of what to do with a
//! message ([`dispatch`]), so that both can be fuzzed without a server (`fuzz/`);
//! [`ClientStream`] feeds the decoder from the request's payload.

use actix_codec::Decoder;
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Item, ProtocolError};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::protocol::{parse_control, ClientMessage};

/// Longest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Binary(Bytes),
    Text(String),
    Ping(Bytes),
    Pong,
    Close(Option<CloseReason>),
}

/// Why a client's stream was refused; the connection is closed with [`Violation::close_code`].
#[derive(Debug, PartialEq, Eq)]
pub enum Violation {
    /// A frame or reassembled message over the limit (close 1009).
    TooLarge(String),
    /// Anything else that breaks RFC 6455 (close 1002).
    Malformed(String),
}

impl Violation {
    pub fn close_code(&self) -> CloseCode {
        match self {
            Violation::TooLarge(_) => CloseCode::Size,
            Violation::Malformed(_) => CloseCode::Protocol,
        }
    }

    /// A short reason for the close frame (at most 123 bytes fit) and the audit log.
    pub fn reason(&self) -> &str {
        match self {
            Violation::TooLarge(why) | Violation::Malformed(why) => why,
        }
    }
}

impl From<ProtocolError> for Violation {
    fn from(error: ProtocolError) -> Violation {
        let why = match error {
            ProtocolError::Overflow => {
                return Violation::TooLarge("frame larger than 1 MiB".into())
            }
            ProtocolError::UnmaskedFrame => "unmasked frame from a client",
            ProtocolError::MaskedFrame => "masked frame",
            ProtocolError::InvalidOpcode(_) | ProtocolError::BadOpCode => {
                "reserved opcode, bad close code or invalid close reason"
            }
            ProtocolError::InvalidLength(_) => "control frame of a bad length",
            ProtocolError::ContinuationNotStarted => "continuation frame with no start",
            ProtocolError::ContinuationStarted => "new message inside a fragmented one",
            ProtocolError::ContinuationFragment(_) => "fragmented control frame",
            // The codec reports reserved bits this way.
            ProtocolError::Io(_) => "reserved bits set",
        };
        Violation::Malformed(why.into())
    }
}

/// What the reassembly of a fragmented message holds.
enum Partial {
    Text(BytesMut),
    Binary(BytesMut),
}

/// The synchronous decoder: bytes in, messages out. See the module's invariants.
pub struct ClientFrames {
    codec: Codec,
    buf: BytesMut,
    partial: Option<Partial>,
    max: usize,
    ended: bool,
}

impl ClientFrames {
    /// A decoder for a server's side, refusing frames and messages over `max` bytes.
    pub fn new(max: usize) -> ClientFrames {
        ClientFrames {
            codec: Codec::new().max_size(max),
            buf: BytesMut::new(),
            partial: None,
            max,
            ended: false,
        }
    }

    /// Adds bytes read from the connection.
    pub fn extend(&mut self, data: &[u8]) {
        if !self.ended {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes received but not yet part of a message handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.partial.as_ref().map_or(0, |p| p.len())
    }

    /// Whether a violation ended the stream.
    pub fn has_ended(&self) -> bool {
        self.ended
    }

    /// The next complete message in the bytes received so far; `Ok(None)` when more bytes are
    /// needed (or after the stream ended). A violation is returned once, then `Ok(None)`.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, Violation> {
        while !self.ended {
            if let Err(violation) = check_header(&self.buf, self.max) {
                return Err(self.end(violation));
            }
            let frame = match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.end(e.into())),
            };
            match self.assemble(frame) {
                Ok(Some(message)) => return Ok(Some(message)),
                Ok(None) => {}
                Err(violation) => return Err(self.end(violation)),
            }
        }
        Ok(None)
    }

    fn end(&mut self, violation: Violation) -> Violation {
        self.ended = true;
        self.buf = BytesMut::new();
        self.partial = None;
        violation
    }

    /// A whole message from a frame, or `None` while a fragmented one is incomplete.
    fn assemble(&mut self, frame: Frame) -> Result<Option<Incoming>, Violation> {
        let message = match frame {
            Frame::Text(data) => Incoming::Text(text(data)?),
            Frame::Binary(data) => Incoming::Binary(data),
            Frame::Ping(data) => Incoming::Ping(data),
            Frame::Pong(_) => Incoming::Pong,
            Frame::Close(reason) => Incoming::Close(reason),
            Frame::Continuation(item) => return self.continuation(item),
        };
        Ok(Some(message))
    }

    fn continuation(&mut self, item: Item) -> Result<Option<Incoming>, Violation> {
        let (data, last) = match item {
            Item::FirstText(data) => {
                self.partial = Some(Partial::Text(BytesMut::new()));
                (data, false)
            }
            Item::FirstBinary(data) => {
                self.partial = Some(Partial::Binary(BytesMut::new()));
                (data, false)
            }
            Item::Continue(data) => (data, false),
            Item::Last(data) => (data, true),
        };
        let Some(partial) = self.partial.as_mut() else {
            return Err(Violation::Malformed("continuation frame with no start".into()));
        };
        if partial.len() + data.len() > self.max {
            return Err(Violation::TooLarge("message larger than 1 MiB".into()));
        }
        partial.extend(&data);
        if !last {
            return Ok(None);
        }
        match self.partial.take() {
            Some(Partial::Binary(data)) => Ok(Some(Incoming::Binary(data.freeze()))),
            Some(Partial::Text(data)) => text(data.freeze()).map(|t| Some(Incoming::Text(t))),
            None => Ok(None),
        }
    }
}

impl Partial {
    fn len(&self) -> usize {
        match self {
            Partial::Text(b) | Partial::Binary(b) => b.len(),
        }
    }

    fn extend(&mut self, data: &[u8]) {
        match self {
            Partial::Text(b) | Partial::Binary(b) => b.extend_from_slice(data),
        }
    }
}

fn text(data: Bytes) -> Result<String, Violation> {
    String::from_utf8(data.to_vec())
        .map_err(|_| Violation::Malformed("text message is not valid UTF-8".into()))
}

/// Refuses a frame from its header alone when it declares more than `max` bytes, or more than
/// 125 for a control frame: its body is then never waited for.
fn check_header(buf: &[u8], max: usize) -> Result<(), Violation> {
    let Some(declared) = declared_length(buf) else { return Ok(()) };
    let opcode = buf[0] & 0x0F;
    if opcode >= 0x8 && declared > MAX_CONTROL_PAYLOAD {
        return Err(Violation::Malformed("control frame longer than 125 bytes".into()));
    }
    if declared > max as u64 {
        return Err(Violation::TooLarge("frame larger than 1 MiB".into()));
    }
    Ok(())
}

/// The payload length a frame header declares, once enough of the header is there.
fn declared_length(buf: &[u8]) -> Option<u64> {
    let short = buf.get(1)? & 0x7F;
    match short {
        126 => buf.get(2..4).map(|b| u64::from(u16::from_be_bytes([b[0], b[1]]))),
        127 => buf.get(2..10).map(|b| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(b);
            u64::from_be_bytes(bytes)
        }),
        n => Some(u64::from(n)),
    }
}

/// What the bridge does with a client's message: the whole decision, without I/O, so that it
/// can be fuzzed with the decoder.
#[derive(Debug)]
pub enum Handling {
    /// Bytes for the shell (empty frames are nothing).
    Input(Bytes),
    /// A control message, or why it was not understood (sent back; the connection stays).
    Control(Result<ClientMessage, String>),
    /// Answer a ping with this payload.
    Pong(Bytes),
    /// The client closes: answer 1000.
    Close,
    Nothing,
}

pub fn dispatch(message: Incoming) -> Handling {
    match message {
        Incoming::Binary(data) if data.is_empty() => Handling::Nothing,
        Incoming::Binary(data) => Handling::Input(data),
        Incoming::Text(text) => Handling::Control(parse_control(&text)),
        Incoming::Ping(data) => Handling::Pong(data),
        Incoming::Pong => Handling::Nothing,
        Incoming::Close(_) => Handling::Close,
    }
}

/// What [`ClientStream::recv`] yields.
#[derive(Debug)]
pub enum Received {
    Message(Incoming),
    /// The client broke a rule; close with the violation's code.
    Violation(Violation),
    /// The connection ended or broke; nothing more will come.
    Gone,
}

/// A client's messages, read from the request payload through [`ClientFrames`].
pub struct ClientStream<S> {
    payload: S,
    frames: ClientFrames,
    /// The payload ended or failed.
    eof: bool,
    /// `recv` has returned a violation or `Gone`: it returns `Gone` from now on, untouched.
    done: bool,
}

impl<S, E> ClientStream<S>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
{
    pub fn new(payload: S, max: usize) -> ClientStream<S> {
        ClientStream { payload, frames: ClientFrames::new(max), eof: false, done: false }
    }

    /// The next message, violation or end. Cancel-safe: bytes are only taken from the payload
    /// into the decoder, never lost between polls.
    pub async fn recv(&mut self) -> Received {
        if self.done {
            return Received::Gone;
        }
        loop {
            match self.frames.next_message() {
                Ok(Some(message)) => return Received::Message(message),
                Err(violation) => {
                    self.done = true;
                    return Received::Violation(violation);
                }
                Ok(None) if self.eof || self.frames.has_ended() => {
                    self.done = true;
                    return Received::Gone;
                }
                Ok(None) => {}
            }
            match self.payload.next().await {
                Some(Ok(bytes)) => self.frames.extend(&bytes),
                Some(Err(_)) | None => self.eof = true,
            }
        }
    }

    /// The complete messages still to be read when the connection has gone, within `limit`
    /// messages and without waiting longer than `deadline`: a client's last keystrokes before
    /// it closed the tab.
    pub async fn drain(&mut self, limit: usize, deadline: tokio::time::Instant) -> Vec<Incoming> {
        let mut out = Vec::new();
        while out.len() < limit {
            match tokio::time::timeout_at(deadline, self.recv()).await {
                Ok(Received::Message(message)) => out.push(message),
                Ok(Received::Violation(_) | Received::Gone) | Err(_) => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn decode_all(bytes: &[u8]) -> (Vec<Incoming>, Option<Violation>) {
        let mut frames = ClientFrames::new(1 << 20);
        frames.extend(bytes);
        let mut messages = Vec::new();
        loop {
            match frames.next_message() {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => return (messages, None),
                Err(v) => {
                    assert_eq!(frames.next_message(), Ok(None), "a violation ends the stream");
                    return (messages, Some(v));
                }
            }
        }
    }

    #[test]
    fn good_frames_and_fragments_decode() {
        let mut bytes = frame(0x82, b"ls\n");
        bytes.extend(frame(0x01, b"{\"type\":"));
        bytes.extend(frame(0x89, b"p"));
        bytes.extend(frame(0x80, b"\"keep_alive\"}"));
        bytes.extend(frame(0x88, &[0x03, 0xE8]));
        let (messages, violation) = decode_all(&bytes);
        assert_eq!(violation, None);
        assert_eq!(
            messages,
            vec![
                Incoming::Binary(Bytes::from_static(b"ls\n")),
                Incoming::Ping(Bytes::from_static(b"p")),
                Incoming::Text("{\"type\":\"keep_alive\"}".into()),
                Incoming::Close(Some(CloseCode::Normal.into())),
            ]
        );
    }

    #[test]
    fn every_malformed_frame_ends_the_stream_once() {
        let bad: Vec<(&str, Vec<u8>, CloseCode)> = vec![
            ("RSV1", frame(0xC2, b"x"), CloseCode::Protocol),
            ("RSV2", frame(0xA2, b"x"), CloseCode::Protocol),
            ("RSV3", frame(0x92, b"x"), CloseCode::Protocol),
            ("opcode 3", frame(0x83, b"x"), CloseCode::Protocol),
            ("opcode 0xB", frame(0x8B, b"x"), CloseCode::Protocol),
            ("fragmented ping", frame(0x09, b"x"), CloseCode::Protocol),
            ("long ping", frame(0x89, &[0; 126]), CloseCode::Protocol),
            ("lone continuation", frame(0x80, b"x"), CloseCode::Protocol),
            ("close code 999", frame(0x88, &[0x03, 0xE7]), CloseCode::Protocol),
            ("close reason", frame(0x88, &[0x03, 0xE8, 0xFF]), CloseCode::Protocol),
            ("text", frame(0x81, &[0xC3, 0x28]), CloseCode::Protocol),
            ("unmasked", vec![0x82, 0x01, b'x'], CloseCode::Protocol),
            ("too big", frame(0x82, &vec![0; (1 << 20) + 1]), CloseCode::Size),
        ];
        for (what, bytes, code) in bad {
            let (_, violation) = decode_all(&bytes);
            let violation = violation.unwrap_or_else(|| panic!("{what} was accepted"));
            assert_eq!(violation.close_code(), code, "{what}: {violation:?}");
        }
    }

    #[test]
    fn lying_lengths_are_refused_from_the_header() {
        for header in [
            vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0x10, 0, 0, 0],
            vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
            vec![0x82, 0x80 | 127, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            vec![0x89, 0x80 | 126, 0x00, 0xFF],
        ] {
            let mut frames = ClientFrames::new(1 << 20);
            frames.extend(&header);
            assert!(frames.next_message().is_err(), "{header:?}");
            assert_eq!(frames.buffered(), 0);
        }
        // A frame that declares less than the limit but sends less waits, holding what came.
        let mut frames = ClientFrames::new(1 << 20);
        let mut partial = frame(0x82, &[7; 1000]);
        partial.truncate(500);
        frames.extend(&partial);
        assert_eq!(frames.next_message(), Ok(None));
        assert_eq!(frames.buffered(), 500);
    }
}
