//! The `docker` command for the docker part: is a daemon there, the sandbox image (built FROM
//! scratch out of the host's static busybox; nothing is pulled), timed baseline commands, and
//! a guard that removes every container of this run (by its `kterm-bench=<run id>` label).

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use crate::{ms_since, Res, STALL};

pub const IMAGE: &str = "kterm-bench-busybox:latest";
pub const LABEL: &str = "kterm-bench";

/// `docker ARGS`, with the bench's stall limit; stdout if it succeeded.
pub async fn docker(args: &[&str]) -> Res<String> {
    let mut command = tokio::process::Command::new("docker");
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(STALL, command.output()).await {
        Err(_) => fail!("`docker {}` took over {STALL:?}", args.join(" ")),
        Ok(Err(e)) => fail!("cannot run the docker CLI: {e}"),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        fail!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Wall time of `docker ARGS` in milliseconds (CLI start, daemon round trips, CLI exit).
pub async fn timed(args: &[&str]) -> Res<f64> {
    let started = Instant::now();
    docker(args).await?;
    Ok(ms_since(started))
}

/// The daemon's version, or why there is none to talk to.
pub async fn daemon_version() -> Result<String, String> {
    docker(&["info", "--format", "{{.ServerVersion}}"]).await.map_err(|e| e.to_string())
}

/// Why the host's /bin/busybox cannot make the image, if it cannot.
pub fn busybox_missing() -> Option<String> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        return Some("no /bin/busybox (apt-get install busybox-static)".into());
    }
    let ldd = std::process::Command::new("ldd").arg(busybox).output();
    match ldd {
        Ok(out)
            if out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("not a") =>
        {
            Some("/bin/busybox is dynamically linked (install busybox-static)".into())
        }
        _ => None,
    }
}

/// Builds [`IMAGE`] in `dir`: `FROM scratch`, busybox and its applets; the build's wall time.
pub async fn build_image(dir: &Path) -> Res<f64> {
    std::fs::create_dir_all(dir)?;
    std::fs::copy("/bin/busybox", dir.join("busybox"))?;
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \
         \"/bin\"]\n",
    )?;
    let started = Instant::now();
    let mut command = tokio::process::Command::new("docker");
    command
        .args(["build", "-q", "-t", IMAGE])
        .arg(dir)
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(STALL * 6, command.output()).await {
        Err(_) => fail!("`docker build` took over {:?}", STALL * 6),
        Ok(r) => r?,
    };
    if !out.status.success() {
        fail!("building {IMAGE} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(ms_since(started))
}

/// Removes every container labelled `kterm-bench=<run id>` when dropped (also on errors and
/// panics), unless [`Cleanup::remove_all`] already did.
pub struct Cleanup {
    pub run_id: String,
    done: bool,
}

impl Cleanup {
    pub fn new() -> Cleanup {
        Cleanup { run_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(), done: false }
    }

    /// `kterm-bench=<run id>`, for `--label` and `--filter label=`.
    pub fn label(&self) -> String {
        format!("{LABEL}={}", self.run_id)
    }

    fn ps_args(&self, kterm_only: bool) -> Vec<String> {
        // Full IDs: what kterm calls a Docker sandbox's id.
        let mut args = vec![
            "ps".into(),
            "-a".into(),
            "--no-trunc".into(),
            "--format".into(),
            "{{.ID}}".into(),
        ];
        args.extend(["--filter".into(), format!("label={}", self.label())]);
        if kterm_only {
            args.extend(["--filter".into(), "label=kterm.io/managed=true".into()]);
        }
        args
    }

    /// IDs of this run's containers in any state; only those kterm made when `kterm_only`.
    pub async fn containers(&self, kterm_only: bool) -> Res<Vec<String>> {
        let args = self.ps_args(kterm_only);
        let out = docker(&args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// Removes this run's containers now; how many there were.
    pub async fn remove_all(&mut self) -> Res<usize> {
        let names = self.containers(false).await?;
        if !names.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(names.iter().map(String::as_str));
            docker(&args).await?;
        }
        self.done = true;
        Ok(names.len())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Ok(out) = std::process::Command::new("docker").args(self.ps_args(false)).output()
        else {
            return;
        };
        let names: Vec<String> =
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        if !names.is_empty() {
            eprintln!("  removing {} container(s) labelled {}", names.len(), self.label());
            let _ =
                std::process::Command::new("docker").args(["rm", "-f", "-v"]).args(&names).output();
        }
    }
}
