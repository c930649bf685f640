//! The terminal WebSocket protocol as types (SPEC.md, "The terminal WebSocket"): binary frames
//! carry bytes, text frames carry these JSON control messages.

use actix_ws::CloseCode;
use serde::{Deserialize, Serialize};

use crate::session::Warning;

/// Input frames larger than this close the connection with 1009.
pub const MAX_INPUT_FRAME: usize = 1 << 20;

/// Close code sent to a client whose session was attached by a newer connection.
pub const CLOSE_TAKEN_OVER: u16 = 4000;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Resize {
        cols: u16,
        rows: u16,
    },
    /// The user is there: restarts the idle clock like input does, sends nothing to the shell.
    KeepAlive,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// First message of every attach; `replay_bytes` of scrollback follow before live output.
    Attached { session: &'a str, replay_bytes: u64 },
    /// The shell ended; the connection closes with 1000. `reason` says why when kterm ended
    /// it (`deleted`, `idle_timeout`, `max_lifetime`, `server_shutdown`, `backend_error`).
    Exit {
        code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A newer connection attached; this one closes with 4000.
    Detached { reason: &'a str },
    /// A message the server could not act on; the connection stays open.
    Error { code: &'a str, message: String },
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
