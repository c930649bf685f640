//! The command-line clients of a kterm server: `kterm exec SESSION -- CMD…` (a command in a
//! session's sandbox, exiting with its code) and `kterm attach SESSION_OR_URL` (this terminal
//! connected to a session, as the browser is). Both find the server from `--server` (or the
//! URL given) and a token from `KTERM_TOKEN` or `--token-file`, sent as a bearer token.
//!
//! This module talks to a server over HTTP and WebSocket only; it shares nothing with the
//! serving side but the wire formats. Plain `http://` and `ws://` are spoken here.

pub mod attach;
pub mod exec;

use std::path::Path;

/// A client-side failure, said as a sentence for the terminal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(pub String);

pub type ClientResult<T> = std::result::Result<T, ClientError>;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port[/base]`, without a trailing `/`.
    pub server: String,
    pub session: String,
    pub token: Option<String>,
}

impl Target {
    /// From `SESSION_OR_URL` (a session id, or a URL naming `/sessions/ID`), `--server`, and
    /// the token from `token_file` or `env_token`.
    pub fn resolve(
        session_or_url: &str,
        server: Option<&str>,
        token_file: Option<&Path>,
        env_token: Option<String>,
    ) -> ClientResult<Target> {
        let (server_from_url, session) = match session_or_url.split_once("/sessions/") {
            Some((base, rest)) if session_or_url.contains("://") => {
                let id = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let base = base.trim_end_matches("/api/v1");
                let base = base.replacen("ws://", "http://", 1).replacen("wss://", "https://", 1);
                (Some(base), id.to_string())
            }
            _ => (None, session_or_url.to_string()),
        };
        if session.is_empty() || session.contains('/') {
            return Err(ClientError(format!("{session_or_url:?} names no session")));
        }
        let server = match (server, server_from_url) {
            (Some(s), _) => s.to_string(),
            (None, Some(s)) => s,
            (None, None) => "http://127.0.0.1:8080".to_string(),
        };
        let server = server.trim_end_matches('/').to_string();
        if !server.starts_with("http://") {
            return Err(ClientError(format!(
                "--server {server:?}: only http:// servers are supported by this client (put \
                 a TLS tunnel such as `ssh -L` in front of an https one)"
            )));
        }
        let token = match token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| ClientError(format!("--token-file {}: {e}", path.display())))?
                    .trim()
                    .to_string(),
            ),
            None => env_token.filter(|t| !t.is_empty()),
        };
        Ok(Target { server, session, token })
    }

    pub fn api(&self, endpoint: &str) -> String {
        format!("{}/api/v1/sessions/{}/{endpoint}", self.server, self.session)
    }

    pub fn ws_url(&self) -> String {
        format!("ws{}", self.api("ws").trim_start_matches("http"))
    }
}

/// The message of an API error body, or the body itself.
fn error_message(status: u16, body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    format!("the server answered {status}: {message}")
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn sessions_are_named_by_id_or_url() {
        let t =
            Target::resolve("http://h:1/base/api/v1/sessions/abc/ws", None, None, None).unwrap();
        assert_eq!((t.server.as_str(), t.session.as_str()), ("http://h:1/base", "abc"));
        let t = Target::resolve("ws://h:2/sessions/xyz", None, None, Some("tok".into())).unwrap();
        assert_eq!((t.server.as_str(), t.session.as_str()), ("http://h:2", "xyz"));
        assert_eq!(t.token.as_deref(), Some("tok"));
        assert_eq!(t.ws_url(), "ws://h:2/api/v1/sessions/xyz/ws");
        let t = Target::resolve("abc", Some("http://s:3/"), None, None).unwrap();
        assert_eq!(t.api("exec"), "http://s:3/api/v1/sessions/abc/exec");
        assert!(Target::resolve("", None, None, None).is_err());
        assert!(Target::resolve("abc", Some("https://x"), None, None).is_err());
    }
}
