//! Shells that survive kterm: with `sessions.persistence = "tmux"` (or `"auto"` and a sandbox
//! that has tmux), each session's shell runs in a tmux server of its own inside the sandbox,
//! and kterm's process in the session is only a tmux *client*. When kterm stops or is killed,
//! the client goes and the shell stays; the next kterm attaches a new client and gets the same
//! shell, its environment, its programs and its screen.
//!
//! Layout inside the sandbox: `RUN_DIR/tmux/` (mode 0700) holds, per session, the socket of its
//! server (named by the session id), and `SESSION.exit` once its shell has ended; plus
//! `tmux.conf`, kterm's configuration ([`TMUX_CONF`]), written by every start. The user's own
//! `~/.tmux.conf` is never read, and `TMUX` is unset in the shell, so a `tmux` the user starts
//! runs nested with their own settings.
//!
//! The client is started by [`CLIENT_SCRIPT`]: it decides in the sandbox (no round trip)
//! whether tmux is there; without it, `auto` runs the plain session script and `tmux` says
//! why and ends. The shell's exit code reaches kterm through the `.exit` file, since the
//! client's own is always 0. The session's PID is recorded as without tmux (see `shell.rs`):
//! ending a session kills its shell, its tmux server then exits, and so does the client.
//!
//! Invariant: as in `shell.rs`, no value is pasted into script text; they travel as argv
//! entries and environment variables.

use super::shell::ShellCommand;
use crate::config::Persistence;

/// kterm's tmux configuration: no status bar, no prefix key and no key bindings (every key
/// reaches the shell; the user's own tmux, nested, has its own), no alternate screen (so the
/// browser's scrollback fills as without tmux), no delay after Escape, titles passed through,
/// the window sized by the newest client. `-q` everywhere: an older tmux ignores what it lacks.
pub const TMUX_CONF: &str = "\
set -gq status off
set -gq prefix None
set -gq prefix2 None
unbind-key -a -T prefix
unbind-key -a -T root
set -sq escape-time 0
set -gq mouse off
set -gq default-terminal xterm-256color
set -saq terminal-overrides ',*:smcup@:rmcup@'
set -gq set-titles on
set -gq set-titles-string '#T'
set -gq history-limit 10000
set -sq exit-empty on
set -gq window-size latest
set -gq focus-events on
set -gq update-environment ''
set -gq remain-on-exit off
";

/// Run by `sh` as `sh -c CLIENT_SCRIPT kterm-tmux SESSION_SCRIPT ARGV…` (a new session) or,
/// with `KTERM_TMUX_ATTACH=1`, `sh -c CLIENT_SCRIPT kterm-tmux` (attach again to the session
/// `KTERM_SESSION_ID`).
pub const CLIENT_SCRIPT: &str = r#"p="$KTERM_PERSIST"; conf="$KTERM_TMUX_CONF"; again="$KTERM_TMUX_ATTACH"
unset KTERM_PERSIST KTERM_TMUX_CONF KTERM_TMUX_ATTACH
d="${KTERM_RUN_DIR:-/tmp/.kterm}/tmux"; t="$d/$KTERM_SESSION_ID"
finish() { if [ -f "$t.exit" ]; then c=$(cat "$t.exit"); rm -f "$t.exit"; exit "${c:-0}"; fi; exit "$1"; }
if [ "$again" = 1 ]; then tmux -u -S "$t" attach-session -d -t kterm >/dev/null; finish $?; fi
s="$1"; shift
plain() { exec sh -c "$s" kterm-session "$@"; }
if [ "$p" != tmux ] && [ "$p" != auto ]; then plain "$@"; fi
if ! command -v tmux >/dev/null 2>&1; then
  if [ "$p" = tmux ]; then echo 'kterm: sessions.persistence is "tmux" but this sandbox has no tmux' >&2; exit 127; fi
  plain "$@"
fi
{ mkdir -p "$d" && chmod 700 "$d" && printf '%s\n' "$conf" > "$d/tmux.conf"; } 2>/dev/null
z=$(stty size 2>/dev/null); r=${z% *}; c=${z#* }
export KTERM_TMUX_EXIT="$t.exit"
if tmux -u -S "$t" -f "$d/tmux.conf" new-session -d -s kterm -x "${c:-80}" -y "${r:-24}" \
    sh -c 'sh -c "$0" kterm-session "$@"; echo $? > "$KTERM_TMUX_EXIT"' "$s" "$@" 2>/dev/null; then
  unset KTERM_TMUX_EXIT
  tmux -u -S "$t" attach-session -d -t kterm >/dev/null; a=$?
  [ -f "$t.exit" ] || [ $a -eq 0 ] || { tmux -S "$t" kill-server 2>/dev/null; [ "$p" = auto ] && plain "$@"; }
  finish $a
fi
unset KTERM_TMUX_EXIT
if [ "$p" = tmux ]; then echo 'kterm: tmux could not start a session in this sandbox' >&2; exit 127; fi
plain "$@""#;

/// Lists (one a line) the sessions whose tmux servers answer in run directory `$1`.
pub const SURVIVING_SCRIPT: &str = r#"for s in "$1"/tmux/*; do [ -S "$s" ] || continue
if tmux -S "$s" has-session -t kterm 2>/dev/null; then echo "${s##*/}"; else rm -f "$s"; fi; done; true"#;

/// Wraps a session's command (as [`super::shell::session_command`] built it) so that its shell
/// runs in tmux as `persistence` says; `none` leaves it as it is.
pub fn wrap(command: ShellCommand, persistence: Persistence) -> ShellCommand {
    if persistence == Persistence::None || command.argv.len() < 4 {
        return command;
    }
    let ShellCommand { argv, mut env } = command;
    let mut rest = argv.into_iter().skip(2);
    let session_script = rest.next().unwrap_or_default();
    let mut wrapped = vec![
        "sh".to_string(),
        "-c".to_string(),
        CLIENT_SCRIPT.to_string(),
        "kterm-tmux".to_string(),
        session_script,
    ];
    // Skip the session script's `$0`.
    wrapped.extend(rest.skip(1));
    env.push(("KTERM_PERSIST".into(), persistence.as_str().into()));
    env.push(("KTERM_TMUX_CONF".into(), TMUX_CONF.into()));
    ShellCommand { argv: wrapped, env }
}

/// A new tmux client for session `session_id`'s shell, which a previous run of kterm started;
/// `base` is the sandbox's own environment (`HOME`, ...).
pub fn reattach(session_id: &str, base: &[(String, String)], run_dir: &str) -> ShellCommand {
    let mut env: Vec<(String, String)> = base.to_vec();
    env.push(("TERM".into(), "xterm-256color".into()));
    env.push(("KTERM_SESSION_ID".into(), session_id.into()));
    env.push(("KTERM_RUN_DIR".into(), run_dir.into()));
    env.push(("KTERM_TMUX_ATTACH".into(), "1".into()));
    let argv = vec!["sh".into(), "-c".into(), CLIENT_SCRIPT.into(), "kterm-tmux".into()];
    ShellCommand { argv, env }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::shell::session_command;
    use crate::sandbox::ProcessSpec;

    fn spec(command: &[&str]) -> ProcessSpec {
        ProcessSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            init: Some("export FROM_INIT=yes".into()),
            env: vec![("KTERM_SESSION_ID".into(), "s-1".into()), ("V".into(), "a'b $(id)".into())],
            cols: 80,
            rows: 24,
        }
    }

    #[test]
    fn none_leaves_the_command_alone() {
        let command = session_command(&spec(&["true"]), &[], None);
        assert_eq!(wrap(command.clone(), Persistence::None), command);
    }

    /// Without tmux on the PATH (`auto` falls back), the wrapped command runs the session as
    /// before: values intact, init exported, exit code kept.
    #[test]
    fn auto_without_tmux_runs_the_plain_session() {
        let dir = tempfile::tempdir().unwrap();
        let argv =
            ["sh", "-c", "printf '%s|%s|%s' \"$V\" \"$FROM_INIT\" \"$KTERM_PERSIST\"; exit 5"];
        let command = session_command(&spec(&argv), &[], Some(dir.path().to_str().unwrap()));
        let mut wrapped = wrap(command, Persistence::Auto);
        // A PATH without tmux: only sh and the basics.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in ["sh", "cat", "mkdir", "printf"] {
            if let Ok(path) = which(tool) {
                std::os::unix::fs::symlink(path, bin.join(tool)).unwrap();
            }
        }
        wrapped.env.push(("PATH".into(), bin.to_string_lossy().into_owned()));
        let (program, args) = wrapped.argv.split_first().unwrap();
        let out = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(wrapped.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a'b $(id)|yes|");
        assert_eq!(out.status.code(), Some(5));
    }

    #[test]
    fn tmux_without_tmux_says_why() {
        let command = session_command(&spec(&["true"]), &[], None);
        let mut wrapped = wrap(command, Persistence::Tmux);
        wrapped.env.push(("PATH".into(), "/nonexistent".into()));
        let out = std::process::Command::new("/bin/sh")
            .args(&wrapped.argv[1..])
            .env_clear()
            .envs(wrapped.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127));
        assert!(String::from_utf8_lossy(&out.stderr).contains("has no tmux"));
    }

    fn which(tool: &str) -> std::io::Result<std::path::PathBuf> {
        for dir in ["/usr/bin", "/bin"] {
            let path = std::path::Path::new(dir).join(tool);
            if path.exists() {
                return Ok(path);
            }
        }
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}
