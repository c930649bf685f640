//! Build script: records the git commit kterm is built from, for `kterm --version`.
//!
//! The commit comes from `KTERM_GIT_COMMIT` when set (a Docker build or a source tarball has no
//! `.git`), else from `git rev-parse`, else it is `unknown`. Nothing here fails the build.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KTERM_GIT_COMMIT");
    let from_env = std::env::var("KTERM_GIT_COMMIT").ok().filter(|c| !c.trim().is_empty());
    let commit = from_env.or_else(git_commit).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KTERM_GIT_COMMIT={}", commit.trim());
    // Build again when HEAD moves (a commit, a checkout); paths work in worktrees too.
    // Only this checkout's HEAD and its branch: other branches moving changes nothing here.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(file) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={file}");
        }
    }
}

fn git_commit() -> Option<String> {
    git(&["rev-parse", "--short=12", "HEAD"])
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}
