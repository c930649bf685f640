//! The raw-PTY baseline: the same programs in the same surroundings as kterm's local backend,
//! driven directly through `kterm::sandbox::pty` in this process.

use std::time::Duration;

use kterm::sandbox::pty;
use tokio::io::AsyncReadExt;

use crate::{Res, STALL};

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

/// Reads the master until `marker` has been seen; returns the output read.
pub async fn raw_read_until(master: &mut pty::PtyMaster, marker: &[u8]) -> Res<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(STALL, master.read(&mut buf)).await {
            Err(_) => fail!("raw pty: no output within {STALL:?}"),
            Ok(r) => r?,
        };
        if n == 0 {
            fail!("raw pty: end of file while waiting for {:?}", String::from_utf8_lossy(marker));
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(marker.len()).any(|w| w == marker) {
            return Ok(seen);
        }
    }
}
