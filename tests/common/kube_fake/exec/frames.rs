//! The channel framing of the exec WebSocket (`05-exec-websocket.json`): `v4.channel.k8s.io`
//! (binary frames `[channel][data]`), `v4.base64.channel.k8s.io` (text frames: the channel as
//! an ASCII digit, then base64 data) and `v5.channel.k8s.io` (v4 plus channel 255 to close a
//! stream); and the final `Status` on channel 3, byte for byte as a Go server writes it.

use base64::Engine;
use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use super::super::respond::go_json_string;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const STATUS: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    V4,
    V4Base64,
    V5,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V4Base64 => "v4.base64.channel.k8s.io",
            Protocol::V5 => "v5.channel.k8s.io",
        }
    }

    /// The protocol a server picks from the client's offer: v5 only when it speaks v5, then v4,
    /// then v4 base64; `None` (a 403 without upgrade) when nothing fits.
    pub fn choose(offered: &[String], with_v5: bool) -> Option<Protocol> {
        let has = |p: Protocol| offered.iter().any(|o| o == p.name());
        [Protocol::V5, Protocol::V4, Protocol::V4Base64]
            .into_iter()
            .find(|p| has(*p) && (*p != Protocol::V5 || with_v5))
    }

    pub fn encode(self, channel: u8, data: &[u8]) -> Message {
        match self {
            Protocol::V4 | Protocol::V5 => {
                let mut frame = Vec::with_capacity(data.len() + 1);
                frame.push(channel);
                frame.extend_from_slice(data);
                Message::Binary(Bytes::from(frame))
            }
            Protocol::V4Base64 => {
                let text = format!(
                    "{}{}",
                    (b'0' + channel) as char,
                    base64::engine::general_purpose::STANDARD.encode(data)
                );
                Message::text(text)
            }
        }
    }

    /// `(channel, data)` of a client frame; `None` for frames that carry nothing.
    pub fn decode(self, message: &Message) -> Option<(u8, Vec<u8>)> {
        match (self, message) {
            (Protocol::V4 | Protocol::V5, Message::Binary(b)) if !b.is_empty() => {
                Some((b[0], b[1..].to_vec()))
            }
            (Protocol::V4Base64, Message::Text(t)) => {
                let (digit, encoded) = t.as_bytes().split_first()?;
                let channel = digit.checked_sub(b'0').filter(|c| *c <= 9)?;
                let data = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
                Some((channel, data))
            }
            _ => None,
        }
    }
}

/// How an exec ended, as the status channel reports it.
pub enum Outcome {
    Exited(i32),
    /// The command could not start (the runtime's error).
    StartFailed(String),
}

/// The channel-3 `Status` JSON for `outcome` of `command`.
pub fn status_json(command: &[String], outcome: &Outcome) -> String {
    match outcome {
        Outcome::Exited(0) => r#"{"metadata":{},"status":"Success"}"#.to_string(),
        Outcome::Exited(code) => {
            let message =
                format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" "));
            format!(
                r#"{{"metadata":{{}},"status":"Failure","message":{},"reason":"NonZeroExitCode","details":{{"causes":[{{"reason":"ExitCode","message":"{code}"}}]}}}}"#,
                go_json_string(&message)
            )
        }
        Outcome::StartFailed(error) => {
            let cause = format!("error executing command in container: {error}");
            let message = format!("Internal error occurred: {cause}");
            format!(
                r#"{{"metadata":{{}},"status":"Failure","message":{},"reason":"InternalError","details":{{"causes":[{{"message":{}}}]}},"code":500}}"#,
                go_json_string(&message),
                go_json_string(&cause)
            )
        }
    }
}
