//! The terminal WebSocket protocol as types (SPEC.md, "The terminal WebSocket"): binary frames
//! carry bytes, text frames carry these JSON control messages.

use actix_ws::CloseCode;
use serde::{Deserialize, Serialize};

use crate::session::Warning;

/// Input frames larger than this close the connection with 1009.
pub const MAX_INPUT_FRAME: usize = 1 << 20;

/// Close code sent to a client whose session was attached by a newer connection.
pub const CLOSE_TAKEN_OVER: u16 = 4000;
/// Close code sent to a client whose login session ended (logout, password change, user
/// disabled, or the login expired).
pub const CLOSE_LOGGED_OUT: u16 = 4001;
/// Longest control message accepted (a resize is about 40 bytes).
pub const MAX_CONTROL_MESSAGE: usize = 4096;

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Resize {
        cols: u16,
        rows: u16,
    },
    /// The user is there: restarts the idle clock like input does, sends nothing to the shell.
    KeepAlive,
}

/// Parses a client's control message (a text frame); the error is the reason sent back.
pub fn parse_control(text: &str) -> Result<ClientMessage, String> {
    if text.len() > MAX_CONTROL_MESSAGE {
        return Err(format!("control messages are at most {MAX_CONTROL_MESSAGE} bytes"));
    }
    serde_json::from_str(text).map_err(|e| format!("control message not understood: {e}"))
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// First message of every attach; `replay_bytes` of scrollback follow before live output.
    Attached { session: &'a str, replay_bytes: u64 },
    /// The shell ended; the connection closes with 1000. `reason` says why when kterm ended
    /// it (`deleted`, `sandbox_deleted`, `idle_timeout`, `max_lifetime`, `server_shutdown`,
    /// `server_restart`, `backend_error`, `sandbox_lost: <why>`), or why a pending session
    /// could not start.
    Exit {
        code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `taken_over`: a newer connection attached; this one closes with 4000. `logged_out`: the
    /// login that opened it ended; this one closes with 4001.
    Detached { reason: &'a str },
    /// A message the server could not act on; the connection stays open.
    Error { code: &'a str, message: String },
    /// The session is `pending`: its sandbox is starting (`scheduling`, `pulling image`,
    /// `starting`), with the backend's detail when it has one; `attached` follows when the
    /// shell is there, or `exit` with the reason when it could not start.
    Status {
        phase: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// kterm will end the session at `at` (RFC 3339, UTC, milliseconds), `in_secs` from now,
    /// for `reason` (`idle_timeout`: unless the client sends input or a keep-alive first;
    /// `max_lifetime`). Sent once per deadline, `sessions.warn_before` ahead.
    Warning { reason: &'a str, at: String, in_secs: u64 },
}

impl ServerMessage<'_> {
    pub fn warning(warning: &Warning) -> ServerMessage<'static> {
        ServerMessage::Warning {
            reason: warning.deadline.reason(),
            at: warning.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            in_secs: warning.in_secs,
        }
    }
}

impl ServerMessage<'_> {
    pub fn to_text(&self) -> String {
        // Serializing these plain enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub fn close(code: CloseCode, description: &str) -> actix_ws::CloseReason {
    actix_ws::CloseReason { code, description: Some(description.to_string()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_parse_or_say_why_not() {
        assert_eq!(
            parse_control(r#"{"type":"resize","cols":80,"rows":24}"#),
            Ok(ClientMessage::Resize { cols: 80, rows: 24 })
        );
        assert_eq!(parse_control(r#"{"type":"keep_alive"}"#), Ok(ClientMessage::KeepAlive));
        for bad in ["", "{", "[]", r#"{"type":"resize","cols":-1,"rows":1}"#, r#"{"type":"x"}"#] {
            assert!(parse_control(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(10_000);
        assert!(parse_control(&deep).is_err());
    }
}
