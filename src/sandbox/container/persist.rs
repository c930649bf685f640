//! Shells that survive kterm, for every exec-based backend: what [`PersistentShells`] needs
//! beyond the tmux scripts (`sandbox/tmux.rs`): which sessions' tmux servers still answer in a
//! sandbox, a new client for one of them, and ending what a previous run left except those.

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use super::exec::{control_argv, run_control, ExecProcess};
use super::{ContainerBackend, PipedRequest, TtyRequest};
use crate::error::{Error, Result};
use crate::sandbox::{tmux, PersistentShells, Sandbox, TtyProcess};

/// Kills every process recorded in run directory `$1` except those of the names after it.
const END_EXCEPT_SCRIPT: &str = r#"d="$1"; shift
for f in "$d"/*; do [ -f "$f" ] || continue; n="${f##*/}"; k=
for x in "$@"; do [ "$x" = "$n" ] && k=1; done; [ -n "$k" ] && continue
p=$(cat "$f"); kill -KILL -"$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; rm -f "$f"; done"#;

/// How long listing the surviving sessions may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

#[async_trait]
impl PersistentShells for ContainerBackend {
    async fn surviving(&self, sandbox: &Sandbox) -> Result<Vec<String>> {
        let platform = self.platform();
        let layout = platform.layout(sandbox);
        let argv = control_argv(tmux::SURVIVING_SCRIPT, &[&layout.run_dir]);
        let work = async {
            let mut command =
                platform.exec(sandbox, PipedRequest { argv: &argv, stdin: None }).await?;
            let mut out = Vec::new();
            command
                .stdout
                .read_to_end(&mut out)
                .await
                .map_err(|e| Error::io("reading the surviving sessions", e))?;
            let _ = command.exit.await;
            Ok(String::from_utf8_lossy(&out).lines().map(str::to_string).collect())
        };
        tokio::time::timeout(LIST_TIMEOUT, work).await.unwrap_or_else(|_| {
            Err(Error::BackendUnavailable(format!(
                "listing the shells in sandbox {} took over {LIST_TIMEOUT:?}",
                sandbox.id
            )))
        })
    }

    async fn reattach(
        &self,
        sandbox: &Sandbox,
        session_id: &str,
        cols: u16,
        rows: u16,
    ) -> Result<TtyProcess> {
        let platform = self.platform();
        let layout = platform.layout(sandbox);
        let base = [("HOME".to_string(), layout.home.clone())];
        let command = tmux::reattach(session_id, &base, &layout.run_dir);
        let started =
            platform.exec_tty(sandbox, TtyRequest { command: &command, cols, rows }).await?;
        Ok(ExecProcess::start(platform.clone(), sandbox, started, session_id))
    }

    async fn end_stray_except(&self, sandbox: &Sandbox, keep: &[String]) -> Result<()> {
        let platform = self.platform();
        let layout = platform.layout(sandbox);
        let mut args: Vec<&str> = vec![&layout.run_dir];
        args.extend(keep.iter().map(String::as_str));
        run_control(platform.as_ref(), sandbox, &control_argv(END_EXCEPT_SCRIPT, &args)).await
    }
}
