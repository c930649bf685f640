//! Pre-started shells: a *stub* is a process already running on a TTY in a sandbox that waits,
//! with echo off, for one activation line, then becomes the session's program. Starting a
//! Docker exec costs ~45 ms before its first byte, a Kubernetes one ~60 ms; a stub pays that
//! before anyone asks, so a claim only writes one line.
//!
//! A stub records its PID in the sandbox's run directory under its stub id (so it can be ended
//! like a session, see `exec.rs`), and removes that record when it is activated: the session's
//! program then records itself under the session's id.
//!
//! A stub acknowledges its activation line with [`GO`] before it runs it, so a stub that died
//! while it waited (its sandbox removed, its engine restarted) is found out before its session
//! is handed to anyone: its write fails, its output ends, or no acknowledgement comes.
//!
//! The activation line carries the environment and the argv single-quoted, and any value with a
//! quote, backslash, newline or other byte outside printable ASCII as `printf %b` octal escapes
//! inside single quotes: no value is ever parsed by the shell, so no context value can run a
//! command, and newlines cannot end the line early.
//!
//! The line is kept short, because a shell's `read` takes it a byte at a time (two system calls
//! a byte: 4 KiB took 12 ms in a Docker container). The long values every session carries (the
//! session and tmux scripts, the tmux configuration: [`ShellCommand`]s of the same backend share
//! them) are given to the stub when it starts, as `KTERM_STUB_V<n>` in its environment; the line
//! refers to them and unsets them before the session's program starts.

use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::sandbox::TtyProcess;

/// What the stub runs: terminal in non-canonical mode without echo (so a long line is not cut
/// at the TTY's 4 KiB line limit and is not shown), say so with [`READY`], read one line,
/// restore, acknowledge it with [`GO`] (the claim waits for it; the `rm` of the PID record
/// comes after), evaluate it. Typed input reaches the session only after [`GO`], so it finds
/// the terminal's modes restored.
pub const STUB_SCRIPT: &str = r#"r="$KTERM_RUN_DIR/$KTERM_STUB_ID"; unset KTERM_RUN_DIR KTERM_STUB_ID
{ [ -d "${r%/*}" ] || mkdir -p "${r%/*}"; echo $$ > "$r"; } 2>/dev/null
s=$(stty -g 2>/dev/null); stty -echo -icanon 2>/dev/null && echo kterm-stub-ready
IFS= read -r line || exit 0
[ -n "$s" ] && stty "$s" 2>/dev/null; echo kterm-stub-go; rm -f "$r"
eval "$line""#;

/// The environment a stub starts with: where it records its PID, under which name, and the
/// `shared` values its activation line may refer to (see [`activation_line`]).
pub fn stub_env(run_dir: &str, stub_id: &str, shared: &[&str]) -> Vec<(String, String)> {
    let mut env =
        vec![("KTERM_RUN_DIR".into(), run_dir.into()), ("KTERM_STUB_ID".into(), stub_id.into())];
    env.extend(shared.iter().enumerate().map(|(n, v)| (shared_name(n), v.to_string())));
    env
}

const SHARED_PREFIX: &str = "KTERM_STUB_V";

fn shared_name(n: usize) -> String {
    format!("{SHARED_PREFIX}{n}")
}

/// A new stub's id, as its PID file is named until it becomes a session.
pub fn new_stub_id() -> String {
    format!("stub-{}", uuid::Uuid::new_v4().simple())
}

/// What the stub prints once echo is off. Until then the TTY would echo an activation line
/// (context values included) into the session's output, so a stub counts as started only
/// after [`wait_ready`] has read this, and nothing before it reaches a session.
pub const READY: &[u8] = b"kterm-stub-ready\r\n";

/// What the stub prints when it has read its activation line, before it runs it.
pub const GO: &[u8] = b"kterm-stub-go\r\n";

/// Reads a fresh stub's output up to and including [`READY`]. A stub that cannot turn its echo
/// off never says it is ready: it is ended here, and sessions start cold instead.
pub async fn wait_ready(process: &mut TtyProcess, timeout: Duration) -> Result<()> {
    let outcome = tokio::time::timeout(timeout, read_through(&mut process.output, READY)).await;
    if !matches!(outcome, Ok(Ok(_))) {
        process.control.kill().await;
    }
    match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Internal(format!("a pre-started shell did not start: {e}"))),
        Err(_) => {
            Err(Error::Internal(format!("a pre-started shell did not start within {timeout:?}")))
        }
    }
}

/// Writes the activation `line` to a stub and waits (up to `timeout`) for its [`GO`]; the
/// process is handed back with the output that followed the acknowledgement in front of the
/// rest. A stub that does not acknowledge is an error: it is never handed out.
pub async fn activate(
    mut process: TtyProcess,
    line: &[u8],
    timeout: Duration,
) -> Result<TtyProcess> {
    let confirm = async {
        process.input.write_all(line).await?;
        read_through(&mut process.output, GO).await
    };
    let after = match tokio::time::timeout(timeout, confirm).await {
        Ok(Ok(after)) => after,
        Ok(Err(e)) => {
            return Err(Error::BackendUnavailable(format!(
                "a pre-started shell did not take its activation: {e}"
            )))
        }
        Err(_) => {
            return Err(Error::BackendUnavailable(format!(
                "a pre-started shell did not acknowledge its activation within {timeout:?}"
            )))
        }
    };
    if !after.is_empty() {
        let rest = std::mem::replace(&mut process.output, Box::pin(tokio::io::empty()));
        process.output = Box::pin(std::io::Cursor::new(after).chain(rest));
    }
    Ok(process)
}

/// Reads `output` up to and including `marker` (which must come within its first 4 KiB);
/// returns what followed it in the same reads.
async fn read_through(
    output: &mut Pin<Box<dyn AsyncRead + Send>>,
    marker: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        if let Some(at) = seen.windows(marker.len()).position(|w| w == marker) {
            return Ok(seen.split_off(at + marker.len()));
        }
        if seen.len() > 4096 {
            return Err(std::io::Error::other("no acknowledgement in its first 4 KiB"));
        }
        let n = output.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        seen.extend_from_slice(&chunk[..n]);
    }
}

/// The line that turns a stub into the session's process: exports `env`, changes to `workdir`
/// and `exec`s `argv`. A value equal to one of `shared` (what the stub was started with, see
/// [`stub_env`]) is written as a reference to it.
pub fn activation_line(
    env: &[(String, String)],
    argv: &[String],
    workdir: &str,
    shared: &[&str],
) -> Vec<u8> {
    let reference = |value: &str| {
        shared.iter().position(|v| *v == value).map(|n| format!("\"${}\"", shared_name(n)))
    };
    let mut line = String::from("d() { printf '%bx' \"$1\"; }; ");
    for (key, value) in env {
        // The shared values' names are the stub's own: no variable may replace them.
        if !is_name(key) || key.starts_with(SHARED_PREFIX) {
            continue;
        }
        match reference(value).or_else(|| literal(value)) {
            Some(quoted) => line.push_str(&format!("export {key}={quoted}; ")),
            None => line.push_str(&format!(
                "{key}=$(d '{}'); export {key}=\"${{{key}%x}}\"; ",
                escape(value)
            )),
        }
    }
    line.push_str("set --; ");
    for arg in argv {
        match reference(arg).or_else(|| literal(arg)) {
            Some(quoted) => line.push_str(&format!("set -- \"$@\" {quoted}; ")),
            None => {
                line.push_str(&format!("a=$(d '{}'); set -- \"$@\" \"${{a%x}}\"; ", escape(arg)))
            }
        }
    }
    let workdir = literal(workdir).unwrap_or_else(|| "/".into());
    line.push_str("unset a");
    for n in 0..shared.len() {
        line.push(' ');
        line.push_str(&shared_name(n));
    }
    line.push_str(&format!("; cd {workdir} 2>/dev/null; exec \"$@\"\n"));
    line.into_bytes()
}

/// A value that can stand single-quoted as it is (printable ASCII without `'` or `\`): most
/// values are, and they cost the shell no command substitution.
fn literal(value: &str) -> Option<String> {
    let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\'' && b != b'\\');
    plain.then(|| format!("'{value}'"))
}

fn is_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Bytes outside a small safe set become `\0ooo`, which `printf %b` turns back into the byte.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || b" _.,:/=+@%-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\0{b:03o}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_escaped_and_the_line_is_one_line() {
        let env = vec![("KTERM_CTX_X".to_string(), "a'b\"c $(id) `id`\n\\x; rm -rf /".to_string())];
        let line = String::from_utf8(activation_line(&env, &["sh".into()], "/w", &[])).unwrap();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        for dangerous in ["$(id)", "`", "rm -rf /;", "'b"] {
            assert!(!line.contains(dangerous), "{dangerous} leaked into {line}");
        }
    }

    #[test]
    fn the_line_rebuilds_values_exactly_in_a_real_shell() {
        let value = "a'b\"c $(echo pwned) `id`\nline2\\n\t\u{e9}\n\n";
        let env = vec![("V".to_string(), value.to_string())];
        let argv = vec![
            "sh".to_string(),
            "-c".to_string(),
            "printf '%s' \"$V\"; printf '|%s' \"$@\"".to_string(),
            "zero".to_string(),
            "x y".to_string(),
            "$(z)".to_string(),
        ];
        let line = activation_line(&env, &argv, "/", &[]);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(String::from_utf8(line).unwrap())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{value}|x y|$(z)"));
    }

    #[test]
    fn shared_values_travel_by_reference_and_do_not_reach_the_program() {
        let script = "printf '%s|' \"$V\" \"$@\"; env | grep -c KTERM_STUB_V || true";
        let long = "a'b\"c $(echo pwned)\nline2\\n\n".repeat(40);
        let shared = [long.as_str(), script];
        let env = vec![("V".to_string(), long.clone()), ("KTERM_STUB_V0".into(), "x".into())];
        let argv: Vec<String> =
            vec!["sh".into(), "-c".into(), script.into(), "zero".into(), long.clone(), "x".into()];
        let line = activation_line(&env, &argv, "/", &shared);
        assert!(line.len() < 300, "{} bytes: {}", line.len(), String::from_utf8_lossy(&line));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(String::from_utf8(line).unwrap())
            .envs(stub_env("/r", "stub-1", &shared).into_iter().skip(2))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{long}|{long}|x|0\n"));
    }
}
