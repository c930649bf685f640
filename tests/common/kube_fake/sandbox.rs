//! A running pod on the fake node: its own directories bound over `/home/user`,
//! `/home/user/workspace` and `/tmp` (and other volume mounts under them) in a private mount
//! namespace, held by a `sleep` (the pod's "pause container"). Every exec enters that namespace
//! (`nsenter --mount`), becomes the container's user (`setpriv`: runAsUser, runAsGroup, fsGroup
//! and supplementalGroups, no_new_privs when allowPrivilegeEscalation is false) and starts in
//! its working directory (`env -C`). Each tool `exec`s the next, so the command keeps the PID
//! it was spawned with (a session leader, as in a container exec) and the host PID namespace
//! is shared, as kterm's PID files need. The host's filesystems are read-only inside a pod
//! (whatever readOnlyRootFilesystem says: there is no image layer to write to), `/dev/shm` is
//! the pod's own, and the fake's directory (every pod's files) is hidden.
//!
//! Invariants: every process of the pod lives in the holder's mount namespace (unless it
//! leaves it itself), so [`Sandbox::kill_all`] finds them all by that namespace; the holder
//! outlives them, so the namespace's identity is never reused while processes are in it.
//! emptyDir volumes, home and /tmp live under the pod's directory and go with the pod; a
//! persistentVolumeClaim's directory is per claim and outlives pods.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::options::ImageConfig;

/// How a container's execs run.
#[derive(Clone, Debug)]
pub struct ContainerExec {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub no_new_privs: bool,
    pub workdir: String,
    pub env: Vec<(String, String)>,
}

pub struct Sandbox {
    pub holder_pid: i32,
    namespace: (u64, u64),
    pub dir: PathBuf,
    /// `(host source, path in the pod, read-only)`.
    pub mounts: Vec<(PathBuf, String, bool)>,
    containers: Vec<(String, ContainerExec)>,
    holder: Mutex<Option<tokio::process::Child>>,
}

/// Everything needed to start a pod's sandbox, taken from the pod object.
pub struct SandboxPlan {
    pub dir: PathBuf,
    /// `(host source, path in the pod, read-only)`, parents before children.
    pub mounts: Vec<(PathBuf, String, bool)>,
    /// The fake's base directory (hidden inside the pod).
    pub base: PathBuf,
    pub owner: (u32, u32),
    pub containers: Vec<(String, ContainerExec)>,
}

/// Run by `sh` in the pod's new mount namespace with `$1` the fake's base directory, `$2` the
/// working directory, then `source target ro|rw` triples.
const SETUP: &str = r#"set -e
base=$1; workdir=$2; shift 2
host_mounts=$(awk '{print $5}' /proc/self/mountinfo)
mount -t tmpfs -o mode=0755 kube-fake-home /home
mkdir -p /home/user
while [ $# -ge 3 ]; do
  mkdir -p "$2"
  mount --bind "$1" "$2"
  if [ "$3" = ro ]; then mount -o remount,bind,ro "$2"; fi
  shift 3
done
mount -t tmpfs -o mode=1777 kube-fake-shm /dev/shm
# The host is read-only from inside a pod (it has no image layer to write to), and the fake's
# directory, where every pod's files live, is hidden.
for m in $host_mounts; do
  case "$m" in /proc|/proc/*|/dev|/dev/pts|/dev/shm|/home|/home/*|/tmp|/tmp/*|*\\*) continue ;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
mount -t tmpfs -o mode=0755,size=4k kube-fake-hidden "$base"
cd "$workdir" 2>/dev/null || cd /
echo ready
exec sleep infinity
"#;

/// Paths a pod's volume may be mounted at on the fake node (anything else would touch the host).
fn mountable(path: &str) -> bool {
    let under = |root: &str| path == root || path.starts_with(&format!("{root}/"));
    (under("/home/user") || under("/tmp")) && !path.split('/').any(|part| part == "..")
}

/// Works out the directories and mounts of `pod` (its first container's mounts).
pub fn plan(pod: &Value, base: &Path, image: &ImageConfig, pod_ip: &str) -> SandboxPlan {
    let meta = &pod["metadata"];
    let spec = &pod["spec"];
    let uid_text = meta["uid"].as_str().unwrap_or("unknown");
    let namespace = meta["namespace"].as_str().unwrap_or_default();
    let dir = base.join("pods").join(uid_text);
    let volume_dir = |name: &str| -> Option<PathBuf> {
        let volume = spec["volumes"].as_array()?.iter().find(|v| v["name"] == name)?;
        match volume["persistentVolumeClaim"]["claimName"].as_str() {
            Some(claim) => Some(base.join("pvcs").join(namespace).join(claim)),
            None => Some(dir.join("volumes").join(name)),
        }
    };
    let first = &spec["containers"][0];
    let mut mounts: Vec<(PathBuf, String, bool)> = Vec::new();
    for m in first["volumeMounts"].as_array().into_iter().flatten() {
        let path = m["mountPath"].as_str().unwrap_or_default().trim_end_matches('/').to_string();
        if !mountable(&path) {
            continue;
        }
        let Some(mut source) = volume_dir(m["name"].as_str().unwrap_or_default()) else { continue };
        if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty() && !s.contains("..")) {
            source = source.join(sub);
        }
        mounts.push((source, path, m["readOnly"].as_bool() == Some(true)));
    }
    // The image's own directories where no volume is mounted.
    for (path, own) in
        [("/home/user", "home"), ("/home/user/workspace", "workspace"), ("/tmp", "tmp")]
    {
        if !mounts.iter().any(|(_, p, _)| p == path) {
            mounts.push((dir.join(own), path.to_string(), false));
        }
    }
    mounts.sort_by_key(|(_, p, _)| (p.matches('/').count(), p.clone()));
    let containers = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                container_exec(pod, c, image, pod_ip),
            )
        })
        .collect::<Vec<_>>();
    let owner = containers.first().map(|(_, c)| (c.uid, c.gid)).unwrap_or((0, 0));
    SandboxPlan { dir, mounts, base: base.to_path_buf(), owner, containers }
}

fn container_exec(pod: &Value, c: &Value, image: &ImageConfig, pod_ip: &str) -> ContainerExec {
    let pod_sc = &pod["spec"]["securityContext"];
    let sc = &c["securityContext"];
    let pick = |key: &str| sc[key].as_u64().or(pod_sc[key].as_u64()).map(|v| v as u32);
    let uid = pick("runAsUser").unwrap_or(image.user);
    let gid = pick("runAsGroup").unwrap_or(if uid == image.user { image.user } else { 0 });
    let mut groups: Vec<u32> = Vec::new();
    if let Some(fs) = pod_sc["fsGroup"].as_u64() {
        groups.push(fs as u32);
    }
    groups.extend(
        pod_sc["supplementalGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .map(|g| g as u32),
    );
    groups.dedup();
    let mut env: Vec<(String, String)> = image.env.clone();
    let mut set = |k: &str, v: String| match env.iter_mut().find(|(ek, _)| ek == k) {
        Some(slot) => slot.1 = v,
        None => env.push((k.to_string(), v)),
    };
    set("HOSTNAME", pod["metadata"]["name"].as_str().unwrap_or_default().to_string());
    set("HOME", "/home/user".to_string());
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default();
        let value = match e["value"].as_str() {
            Some(v) => v.to_string(),
            None => match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => {
                    pod["metadata"]["name"].as_str().unwrap_or_default().to_string()
                }
                Some("metadata.namespace") => {
                    pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string()
                }
                Some("metadata.uid") => {
                    pod["metadata"]["uid"].as_str().unwrap_or_default().to_string()
                }
                Some("status.podIP") => pod_ip.to_string(),
                Some("spec.nodeName") => {
                    pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string()
                }
                _ if e["valueFrom"].is_object() => continue,
                _ => String::new(),
            },
        };
        set(name, value);
    }
    ContainerExec {
        uid,
        gid,
        groups,
        no_new_privs: sc["allowPrivilegeEscalation"].as_bool() == Some(false),
        workdir: c["workingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or(&image.workdir)
            .to_string(),
        env,
    }
}

impl Sandbox {
    /// Makes the directories and starts the holder; `Err` is a message for the container status.
    pub async fn start(plan: SandboxPlan) -> Result<Sandbox, String> {
        let (uid, gid) = plan.owner;
        for (source, path, _) in &plan.mounts {
            std::fs::create_dir_all(source)
                .map_err(|e| format!("creating {}: {e}", source.display()))?;
            // emptyDir volumes are world-writable on a real node; the image's home is the user's.
            let mode = if path == "/tmp" { 0o1777 } else { 0o777 };
            let _ = std::fs::set_permissions(source, std::fs::Permissions::from_mode(mode));
            if path == "/home/user" {
                let _ = std::os::unix::fs::chown(source, Some(uid), Some(gid));
            }
        }
        let workdir =
            plan.containers.first().map(|(_, c)| c.workdir.clone()).unwrap_or_else(|| "/".into());
        let mut command = tokio::process::Command::new("unshare");
        command.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            SETUP,
            "kube-fake-pod",
        ]);
        command.arg(&plan.base).arg(&workdir);
        for (source, path, ro) in &plan.mounts {
            command.arg(source).arg(path).arg(if *ro { "ro" } else { "rw" });
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child =
            command.spawn().map_err(|e| format!("starting the pod sandbox (unshare): {e}"))?;
        let holder_pid = child.id().map(|p| p as i32).ok_or("the pod sandbox exited at once")?;
        let stdout = child.stdout.take().ok_or("no stdout from the pod sandbox")?;
        let mut line = String::new();
        let ready = tokio::time::timeout(
            Duration::from_secs(10),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await;
        if !matches!(ready, Ok(Ok(_))) || line.trim() != "ready" {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), err.read_to_string(&mut stderr))
                        .await;
            }
            let _ = child.start_kill();
            return Err(format!("the pod sandbox did not start: {}", stderr.trim()));
        }
        let ns = std::fs::metadata(format!("/proc/{holder_pid}/ns/mnt"))
            .map_err(|e| format!("reading the sandbox namespace: {e}"))?;
        Ok(Sandbox {
            holder_pid,
            namespace: (ns.dev(), ns.ino()),
            dir: plan.dir,
            mounts: plan.mounts,
            containers: plan.containers,
            holder: Mutex::new(Some(child)),
        })
    }

    /// Where `path` (as the pod sees it) is on the host, through the deepest mount above it.
    pub fn host_path(&self, path: &str) -> Option<PathBuf> {
        let (source, mount, _) = self
            .mounts
            .iter()
            .filter(|(_, m, _)| path == m || path.starts_with(&format!("{m}/")))
            .max_by_key(|(_, m, _)| m.len())?;
        let rest = path[mount.len()..].trim_start_matches('/');
        Some(if rest.is_empty() { source.clone() } else { source.join(rest) })
    }

    pub fn container(&self, name: &str) -> Option<&ContainerExec> {
        self.containers.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// The argv that runs `command` in this sandbox as `container`.
    pub fn argv(&self, container: &ContainerExec, command: &[String]) -> Vec<String> {
        let mut argv = vec![
            "nsenter".to_string(),
            format!("--mount=/proc/{}/ns/mnt", self.holder_pid),
            "--".to_string(),
        ];
        if container.uid != 0 || container.gid != 0 {
            argv.push("setpriv".into());
            argv.push(format!("--reuid={}", container.uid));
            argv.push(format!("--regid={}", container.gid));
            if container.groups.is_empty() {
                argv.push("--clear-groups".into());
            } else {
                let list: Vec<String> = container.groups.iter().map(|g| g.to_string()).collect();
                argv.push(format!("--groups={}", list.join(",")));
            }
            if container.no_new_privs {
                argv.push("--no-new-privs".into());
            }
            argv.push("--".into());
        }
        argv.extend([
            "env".to_string(),
            "-C".to_string(),
            container.workdir.clone(),
            "--".to_string(),
        ]);
        argv.extend(command.iter().cloned());
        argv
    }

    /// The pod's processes other than the holder.
    pub fn processes(&self) -> Vec<i32> {
        processes_in(self.namespace).into_iter().filter(|p| *p != self.holder_pid).collect()
    }

    /// Kills every process of the pod, then the holder (blocking, a few milliseconds).
    pub fn kill_all(&self) {
        for _ in 0..200 {
            let pids = self.processes();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) with a PID read from /proc; at worst the process is gone.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let holder = self.holder.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut child) = holder {
            let _ = child.start_kill();
            // Reap it (tokio's orphan queue would otherwise keep a zombie until the next spawn).
            let _ = child.try_wait();
            for _ in 0..100 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// Kills everything and removes the pod's own directories (claims' directories stay).
    pub fn destroy(&self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PIDs whose mount namespace is `ns` (`(dev, inode)` of `/proc/PID/ns/mnt`).
fn processes_in(ns: (u64, u64)) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/mnt")).is_ok_and(|m| (m.dev(), m.ino()) == ns)
        })
        .collect()
}
