//! The two `sh` programs behind an exec, built on the files scripts' prelude (so a `cwd` is
//! resolved and checked exactly as a files path is, see [`crate::files::scripts`]):
//! - [`start_argv`]: enters the checked directory, exports the requested variables, prints the
//!   header line `kterm-exec PID`, then `exec`s the argv, which keeps that PID. The argv and
//!   the variables are positional parameters, never script text: nothing the client sends is
//!   parsed by a shell.
//! - [`kill_argv`]: stops the process and every descendant (found through `/proc/*/stat`, so
//!   a command that forks is ended whole), then kills them all.

use crate::files::scripts::PRELUDE;

/// The first line an exec prints before the command's own output.
pub const HEADER: &str = "kterm-exec ";

/// `CWD N NAME=VALUE… ARGV…` after the workspace.
const START: &str = r#"resolve "$1"
[ -d "$R" ] || fail 12
cd -P -- "$R" || fail 20
shift
n=$1
shift
while [ "$n" -gt 0 ]; do export "$1" || fail 20; shift; n=$((n - 1)); done
printf 'kterm-exec %s\n' "$$"
exec "$@"
"#;

/// `PID`: SIGSTOP to it and its descendants (until no new one appears), then SIGKILL to all.
const KILL: &str = r#"t=" $1 "
kill -STOP "$1" 2>/dev/null || exit 0
more=1
while [ -n "$more" ]; do
  more=
  for f in /proc/[0-9]*/stat; do
    p=${f#/proc/}; p=${p%/stat}
    case $t in *" $p "*) continue;; esac
    IFS= read -r s < "$f" 2>/dev/null || continue
    s=${s##*) }
    set -- $s
    case $t in *" $2 "*) kill -STOP "$p" 2>/dev/null; t="$t$p "; more=1;; esac
  done
done
kill -KILL $t 2>/dev/null
exit 0
"#;

/// The argv that runs `argv` in `cwd` (workspace-relative, checked) with `env` exported.
pub fn start_argv(
    workspace: &str,
    cwd: &str,
    env: &[(String, String)],
    argv: &[String],
) -> Vec<String> {
    let mut out = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("{PRELUDE}{START}"),
        "kterm-exec".to_string(),
        workspace.to_string(),
        cwd.to_string(),
        env.len().to_string(),
    ];
    out.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    out.extend(argv.iter().cloned());
    out
}

/// The argv that ends process `pid` and all of its descendants.
pub fn kill_argv(pid: u32) -> Vec<String> {
    vec!["sh".into(), "-c".into(), KILL.into(), "kterm-kill".into(), pid.to_string()]
}
