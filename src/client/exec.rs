//! `kterm exec SESSION -- CMD…`: runs the command through `POST …/exec` with
//! `Accept: application/x-ndjson`, writes its stdout and stderr here as they come, and exits
//! with its exit code (124 when killed at its timeout, as `timeout(1)` does; 125 when kterm
//! itself failed). This terminal's stdin is sent as the command's stdin unless it is a
//! terminal.

use std::io::{IsTerminal, Read, Write};

use base64::Engine as _;
use serde_json::{json, Value};

use super::{error_message, ClientError, ClientResult, Target};

/// The exit code when kterm could not run the command.
pub const FAILED: u8 = 125;
/// The exit code when the command was killed at its timeout.
pub const TIMED_OUT: u8 = 124;

pub async fn run(target: &Target, argv: Vec<String>, timeout: Option<String>) -> ClientResult<u8> {
    let mut body = json!({ "argv": argv });
    if let Some(timeout) = timeout {
        body["timeout"] = json!(timeout);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut input = Vec::new();
        stdin
            .lock()
            .read_to_end(&mut input)
            .map_err(|e| ClientError(format!("reading stdin: {e}")))?;
        if !input.is_empty() {
            body["stdin_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(input));
        }
    }
    let http = reqwest::Client::new();
    let mut request =
        http.post(target.api("exec")).header("accept", "application/x-ndjson").json(&body);
    if let Some(token) = &target.token {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| ClientError(format!("connecting to {}: {e}", target.server)))?;
    let status = response.status().as_u16();
    if status != 200 {
        let text = response.text().await.unwrap_or_default();
        return Err(ClientError(error_message(status, &text)));
    }
    let mut pending = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| ClientError(format!("the output broke off: {e}")))?;
        let Some(chunk) = chunk else { break };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(code) = handle_line(&line)? {
                return Ok(code);
            }
        }
    }
    Err(ClientError("the output ended without the command's exit".into()))
}

/// Writes one NDJSON line's output; `Some(code)` at the exit line.
fn handle_line(line: &[u8]) -> ClientResult<Option<u8>> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| ClientError(format!("a bad line from the server: {e}")))?;
    let bytes = match (value["data"].as_str(), value["data_base64"].as_str()) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| ClientError(format!("bad base64 from the server: {e}")))?,
        (None, None) => Vec::new(),
    };
    let written = match value["type"].as_str() {
        Some("stdout") => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes).and_then(|()| out.flush())
        }
        Some("stderr") => {
            let mut err = std::io::stderr().lock();
            err.write_all(&bytes).and_then(|()| err.flush())
        }
        Some("exit") => {
            if value["timed_out"] == true {
                return Ok(Some(TIMED_OUT));
            }
            let code = value["exit_code"].as_i64().unwrap_or(i64::from(FAILED));
            return Ok(Some(u8::try_from(code.rem_euclid(256)).unwrap_or(FAILED)));
        }
        _ => Ok(()),
    };
    // A closed pipe (`kterm exec … | head`) ends the copy, as it ends a local command.
    written.map_err(|e| ClientError(format!("writing the output: {e}")))?;
    Ok(None)
}
