//! How an exec's bytes travel as JSON. Output that is valid UTF-8 is a string field
//! (`stdout`); output that is not is also given exactly, base64-encoded (`stdout_base64`, the
//! standard alphabet with padding), next to its lossy text. In the NDJSON stream a chunk is
//! `{"type":"stdout","data":"…"}` when it is text, else `{"type":"stdout","data_base64":"…"}`;
//! a character cut between two reads is held back and sent whole with the next chunk.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{ExecEnd, ExecEvent, ExecResult};

pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()
}

/// Puts `bytes` into `fields` as `name` (text) and, when they are not UTF-8, `name_base64`.
fn put_bytes(fields: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            fields.insert(name.into(), json!(text));
        }
        Err(_) => {
            fields.insert(name.into(), json!(String::from_utf8_lossy(bytes)));
            fields.insert(format!("{name}_base64"), json!(encode_base64(bytes)));
        }
    }
}

/// The JSON answer of a buffered exec.
pub fn result_json(result: &ExecResult) -> Value {
    let mut fields = Map::new();
    fields.insert("exit_code".into(), json!(result.exit_code));
    put_bytes(&mut fields, "stdout", &result.stdout);
    put_bytes(&mut fields, "stderr", &result.stderr);
    fields.insert("truncated".into(), json!(result.truncated));
    fields.insert("timed_out".into(), json!(result.timed_out));
    fields.insert("duration_ms".into(), json!(result.duration.as_millis() as u64));
    Value::Object(fields)
}

fn end_json(end: &ExecEnd) -> Value {
    json!({
        "type": "exit",
        "exit_code": end.exit_code,
        "timed_out": end.timed_out,
        "duration_ms": end.duration.as_millis() as u64,
    })
}

/// Turns exec events into NDJSON lines, holding back characters cut between chunks.
#[derive(Default)]
pub struct NdjsonEncoder {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl NdjsonEncoder {
    /// The lines for `event` (none while a chunk is only the start of a character).
    pub fn encode(&mut self, event: ExecEvent) -> Vec<u8> {
        let mut out = Vec::new();
        match event {
            ExecEvent::Stdout(data) => chunk_line(&mut out, "stdout", &mut self.stdout, &data),
            ExecEvent::Stderr(data) => chunk_line(&mut out, "stderr", &mut self.stderr, &data),
            ExecEvent::Exit(end) => {
                for (name, carry) in [("stdout", &mut self.stdout), ("stderr", &mut self.stderr)] {
                    if !carry.is_empty() {
                        let rest = std::mem::take(carry);
                        line(&mut out, json!({"type": name, "data_base64": encode_base64(&rest)}));
                    }
                }
                line(&mut out, end_json(&end));
            }
        }
        out
    }
}

fn line(out: &mut Vec<u8>, value: Value) {
    out.extend_from_slice(value.to_string().as_bytes());
    out.push(b'\n');
}

fn chunk_line(out: &mut Vec<u8>, name: &str, carry: &mut Vec<u8>, data: &[u8]) {
    carry.extend_from_slice(data);
    let bytes = std::mem::take(carry);
    match std::str::from_utf8(&bytes) {
        Ok(text) => line(out, json!({"type": name, "data": text})),
        // Only an incomplete character at the end: send the rest, keep it for the next chunk.
        Err(e) if e.error_len().is_none() => {
            let (text, tail) = bytes.split_at(e.valid_up_to());
            if !text.is_empty() {
                let text = String::from_utf8_lossy(text);
                line(out, json!({"type": name, "data": text}));
            }
            *carry = tail.to_vec();
        }
        Err(_) => line(out, json!({"type": name, "data_base64": encode_base64(&bytes)})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn text_and_bytes_are_told_apart() {
        let result = ExecResult {
            stdout: b"caf\xc3\xa9\n".to_vec(),
            stderr: vec![0xff, 0x00, 0x01],
            ..Default::default()
        };
        let json = result_json(&result);
        assert_eq!(json["stdout"], "café\n");
        assert!(json.get("stdout_base64").is_none());
        assert_eq!(decode_base64(json["stderr_base64"].as_str().unwrap()).unwrap(), [0xff, 0, 1]);
    }

    #[test]
    fn a_character_cut_between_chunks_is_sent_whole() {
        let mut encoder = NdjsonEncoder::default();
        let first = encoder.encode(ExecEvent::Stdout(Bytes::from_static(b"a\xc3")));
        let second = encoder.encode(ExecEvent::Stdout(Bytes::from_static(b"\xa9b")));
        let parse = |line: Vec<u8>| serde_json::from_slice::<Value>(&line).unwrap();
        assert_eq!(parse(first), json!({"type": "stdout", "data": "a"}));
        assert_eq!(parse(second), json!({"type": "stdout", "data": "éb"}));
    }
}
