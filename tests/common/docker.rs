//! Docker for tests: a real daemon (skipped with a printed reason when none answers, unless
//! KTERM_REQUIRE_DOCKER=1), a sandbox image built FROM scratch out of the host's busybox, and a
//! guard that removes every container a test made (by a per-test label), even when it fails.

use std::process::Command;
use std::sync::OnceLock;

use kterm::config::{BackendKind, ByteSize, Config};

pub const IMAGE: &str = "kterm-test-busybox:latest";
pub const TEST_LABEL: &str = "kterm-test";

/// `true` when a Docker daemon answers; panics instead of skipping under KTERM_REQUIRE_DOCKER=1.
pub fn available() -> bool {
    let answers = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    let ok = matches!(&answers, Ok(out) if out.status.success());
    if !ok {
        let why = match answers {
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
            Err(e) => format!("cannot run the docker CLI: {e}"),
        };
        if std::env::var("KTERM_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("KTERM_REQUIRE_DOCKER=1 but no Docker daemon answers: {why}");
        }
        eprintln!(
            "SKIPPED: no Docker daemon answers ({why}); set KTERM_REQUIRE_DOCKER=1 to fail instead"
        );
    }
    ok
}

/// Builds (once per test binary) the sandbox image: /bin/busybox from the host and its applets.
pub fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let busybox = std::path::Path::new("/bin/busybox");
        assert!(busybox.exists(), "tests need a static busybox: apt-get install busybox-static");
        let ldd = Command::new("ldd").arg(busybox).output().expect("ldd");
        assert!(!ldd.status.success() || String::from_utf8_lossy(&ldd.stdout).contains("not a dynamic"),
            "/bin/busybox must be static (busybox-static)");
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(busybox, dir.path().join("busybox")).unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .unwrap();
        let out = Command::new("docker")
            .args(["build", "-q", "-t", IMAGE])
            .arg(dir.path())
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("docker build");
        assert!(out.status.success(), "building the test image failed: {}", String::from_utf8_lossy(&out.stderr));
    });
    IMAGE
}

/// Removes every container labelled with this guard's id when dropped.
pub struct Cleanup {
    pub id: String,
}

impl Cleanup {
    pub fn new() -> Cleanup {
        Cleanup { id: uuid::Uuid::new_v4().simple().to_string() }
    }

    pub fn label(&self) -> String {
        format!("{TEST_LABEL}={}", self.id)
    }

    /// IDs of the containers this test made (all states), as kterm names sandboxes.
    pub fn containers(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args(["ps", "-a", "--no-trunc", "--format", "{{.ID}}", "--filter"])
            .arg(format!("label={}", self.label()))
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }
}

impl Cleanup {
    fn remove_containers(&self) {
        let names = self.containers();
        if !names.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&names).output();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.remove_containers();
        // A failed test dropped its server without stopping it, so the pool may still have a
        // create under way (a stopped server waits for those): sweep once more after it.
        if std::thread::panicking() {
            std::thread::sleep(std::time::Duration::from_secs(3));
            self.remove_containers();
        }
        // Workspace volumes kterm made for this test carry its labels too.
        let volumes = Command::new("docker")
            .args(["volume", "ls", "-q", "--filter"])
            .arg(format!("label={}", self.label()))
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if !volumes.is_empty() {
            let _ = Command::new("docker").args(["volume", "rm", "-f"]).args(&volumes).output();
        }
    }
}

/// A Docker-backed test config: the busybox image, small limits, this test's label.
pub fn configure(config: &mut Config, cleanup: &Cleanup) {
    config.backend.kind = BackendKind::Docker;
    config.docker.image = image().to_string();
    config.docker.pull = kterm::config::PullPolicy::Never;
    config.docker.memory = ByteSize(128 << 20);
    config.docker.pids_limit = 64;
    config.docker.labels.insert(TEST_LABEL.into(), cleanup.id.clone());
    config.sessions.command = Vec::new();
    config.sessions.max_per_user = 20;
    // No warm pool unless a test asks for one: the others count their containers.
    config.pool.min = 0;
    config.pool.max = 0;
}

/// `docker inspect -f FORMAT NAME`.
pub fn inspect(name: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, name])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A container's name, as operators see it (without Docker's leading `/`).
pub fn name(id: &str) -> String {
    inspect(id, "{{.Name}}").trim_start_matches('/').to_string()
}

/// Whether a runtime is registered with the daemon.
pub fn has_runtime(name: &str) -> bool {
    let out = Command::new("docker").args(["info", "--format", "{{json .Runtimes}}"]).output();
    matches!(out, Ok(out) if String::from_utf8_lossy(&out.stdout).contains(&format!("\"{name}\"")))
}

/// The files under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

pub const TMUX_IMAGE: &str = "kterm-test-tmux:latest";

/// Builds (once per test binary) a sandbox image with tmux: FROM scratch, the host's tmux,
/// bash and static busybox, the libraries `ldd` names for them, the xterm-256color terminfo
/// entry and a passwd line for uid 1000. Panics when the host lacks tmux or bash.
pub fn tmux_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        let copy = |from: &std::path::Path| {
            let to = root.join(from.strip_prefix("/").unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            // Follow links: the image gets the files themselves.
            std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        };
        for binary in ["/usr/bin/tmux", "/usr/bin/bash"] {
            let path = std::path::Path::new(binary);
            assert!(path.exists(), "the tmux tests need {binary} on the host (apt-get install tmux bash)");
            copy(path);
            let ldd = Command::new("ldd").arg(path).output().expect("ldd");
            for line in String::from_utf8_lossy(&ldd.stdout).lines() {
                // "libx.so => /lib/.../libx.so (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
                let lib = line.split("=>").last().unwrap_or("").split_whitespace().next().unwrap_or("");
                if lib.starts_with('/') {
                    copy(std::path::Path::new(lib));
                }
            }
        }
        let terminfo = ["/lib/terminfo/x/xterm-256color", "/usr/share/terminfo/x/xterm-256color"]
            .into_iter()
            .map(std::path::Path::new)
            .find(|p| p.exists())
            .expect("an xterm-256color terminfo entry (ncurses-base)");
        copy(terminfo);
        // tmux needs a UTF-8 locale: glibc's C.UTF-8.
        let locale = std::path::Path::new("/usr/lib/locale/C.utf8");
        assert!(locale.is_dir(), "the tmux tests need /usr/lib/locale/C.utf8 (libc-bin)");
        for entry in walk(locale) {
            copy(&entry);
        }
        std::fs::copy("/bin/busybox", dir.path().join("busybox")).expect("a static busybox");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/usr/bin/bash\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY rootfs/ /\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .unwrap();
        let out = Command::new("docker")
            .args(["build", "-q", "-t", TMUX_IMAGE])
            .arg(dir.path())
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("docker build");
        assert!(out.status.success(), "building the tmux test image failed: {}", String::from_utf8_lossy(&out.stderr));
    });
    TMUX_IMAGE
}
