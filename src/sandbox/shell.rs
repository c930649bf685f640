//! The one place a session's program becomes an argv and an environment, for every backend.
//!
//! Every session runs as `sh -c SESSION_SCRIPT kterm-session ARGV…`. The script records its
//! PID in the sandbox's run directory when the backend keeps one (an exec-based backend cannot
//! signal an exec, so it ends a session later by signalling that PID from another exec), runs
//! the init snippet (whose exports reach the program), then `exec`s the program, or the login
//! shell when there is none: `bash -l` where the sandbox has bash, else `sh -l`. The PID stays
//! the same through the `exec`s, and leads the session's process group.
//!
//! Invariant: no value (init snippet, context, argv) is ever pasted into script text; values
//! travel as environment variables and argv entries only.

use super::ProcessSpec;

/// Run by `sh` with the session's argv as `$@`.
pub const SESSION_SCRIPT: &str = concat!(
    "if [ -n \"$KTERM_RUN_DIR\" ]; then [ -d \"$KTERM_RUN_DIR\" ] || mkdir -p \"$KTERM_RUN_DIR\" 2>/dev/null; ",
    "echo $$ > \"$KTERM_RUN_DIR/$KTERM_SESSION_ID\"; fi; unset KTERM_RUN_DIR KTERM_TMUX_EXIT TMUX TMUX_PANE; ",
    "if [ -n \"$KTERM_INIT\" ]; then eval \"$KTERM_INIT\"; fi; unset KTERM_INIT; ",
    "if [ $# -eq 0 ]; then if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l; fi; ",
    "exec \"$@\""
);

/// A program to start: its argv and its whole environment.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellCommand {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The argv and environment of `spec`'s session: `base` (the sandbox's own variables, such as
/// `HOME` or the host's `PATH`) with the session's variables over it, and, when `run_dir` is
/// given, the PID recorded there under the session's id.
pub fn session_command(
    spec: &ProcessSpec,
    base: &[(String, String)],
    run_dir: Option<&str>,
) -> ShellCommand {
    let mut argv = vec![
        "sh".to_string(),
        "-c".to_string(),
        SESSION_SCRIPT.to_string(),
        "kterm-session".to_string(),
    ];
    argv.extend(spec.command.iter().cloned());
    let mut env: Vec<(String, String)> =
        base.iter().filter(|(k, _)| !spec.env.iter().any(|(s, _)| s == k)).cloned().collect();
    env.extend(spec.env.iter().cloned());
    if let Some(init) = spec.init.as_ref().filter(|s| !s.trim().is_empty()) {
        env.push(("KTERM_INIT".into(), init.clone()));
    }
    if let Some(dir) = run_dir {
        env.push(("KTERM_RUN_DIR".into(), dir.to_string()));
    }
    ShellCommand { argv, env }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &[&str], init: Option<&str>) -> ProcessSpec {
        ProcessSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            init: init.map(str::to_string),
            env: vec![
                ("KTERM_SESSION_ID".into(), "s-1".into()),
                ("HOME".into(), "/override".into()),
                ("V".into(), "a'b $(id)".into()),
            ],
            cols: 80,
            rows: 24,
        }
    }

    fn run(command: &ShellCommand) -> String {
        let (program, args) = command.argv.split_first().unwrap();
        let out = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn the_session_sees_its_variables_over_the_base_and_its_init_exports() {
        let base = [("HOME".to_string(), "/home/user".to_string())];
        let spec = spec(
            &["sh", "-c", "printf '%s|%s|%s|%s' \"$HOME\" \"$V\" \"$FROM_INIT\" \"$KTERM_INIT\""],
            Some("export FROM_INIT=\"init ran\""),
        );
        let command = session_command(&spec, &base, None);
        assert_eq!(run(&command), "/override|a'b $(id)|init ran|");
    }

    #[test]
    fn the_pid_is_recorded_under_the_session_id_when_there_is_a_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let spec = spec(&["sh", "-c", "echo $$"], None);
        let command = session_command(&spec, &[], Some(run_dir.to_str().unwrap()));
        let pid = run(&command);
        let recorded = std::fs::read_to_string(run_dir.join("s-1")).unwrap();
        assert_eq!(recorded.trim(), pid.trim(), "the recorded PID is the program's");
    }

    #[test]
    fn no_command_means_the_login_shell() {
        let spec = spec(&[], None);
        let command = session_command(&spec, &[], None);
        assert_eq!(command.argv.len(), 4, "{:?}", command.argv);
    }
}
