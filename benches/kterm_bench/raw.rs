//! The raw-PTY baseline: the same programs in the same surroundings as kterm's local backend,
//! driven directly through `kterm::sandbox::pty` in this process.

use std::time::Duration;

use kterm::sandbox::pty;

/// What the local backend gives a shell (its base env plus the session variables that matter),
/// so that the raw baseline runs the same programs in the same surroundings.
pub fn raw_env() -> Vec<(String, String)> {
    let mut env = kterm::sandbox::local::base_env();
    env.push(("TERM".into(), "xterm-256color".into()));
    env.push(("COLORTERM".into(), "truecolor".into()));
    env
}

pub fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

pub fn sh_c(script: &str) -> Vec<String> {
    argv(&["sh", "-c", script])
}

/// Ends a raw PTY child's process group and waits for it.
pub async fn kill_raw(child: &pty::PtyChild) {
    if child.pid > 0 && child.exited.borrow().is_none() {
        // SAFETY: kill(2) on the child's process group (it called setsid).
        unsafe { libc::kill(-child.pid, libc::SIGKILL) };
    }
    let mut exited = child.exited.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), exited.wait_for(Option::is_some)).await;
}
