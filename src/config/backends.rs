//! The sandbox backends' sections of the configuration: `[local]`, `[docker]`, `[pool]`,
//! and `[files]` (`[kubernetes]` is in `kubernetes.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ByteSize, HumanDuration, PoolSize};

/// The numeric `uid:gid` a sandbox runs as, for every backend (`docker.user`; a Kubernetes
/// `runAsUser`/`runAsGroup` takes the same). Parsed as numbers, so uid 0 (root) is refused
/// however it is written (`0`, `00`, `+0`...); names are refused too (they could resolve to
/// root inside an image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIds {
    pub uid: u32,
    pub gid: u32,
}

impl UserIds {
    pub fn parse(text: &str) -> Result<UserIds, String> {
        let number = |part: &str| -> Option<u32> {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse().ok())
                .flatten()
        };
        let bad = || format!("{text:?} must be a numeric non-root uid:gid such as \"1000:1000\"");
        let (uid, gid) = text.split_once(':').ok_or_else(bad)?;
        let (uid, gid) = (number(uid).ok_or_else(bad)?, number(gid).ok_or_else(bad)?);
        if uid == 0 {
            return Err(format!("{text:?} is uid 0 (root), which sandboxes never run as"));
        }
        Ok(UserIds { uid, gid })
    }
}

impl fmt::Display for UserIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

impl Serialize for UserIds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for UserIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        UserIds::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// Directory holding one working directory per user; empty: `workspaces/` beside the state file.
    pub root: PathBuf,
    /// The local backend isolates nothing: serve it on a non-loopback address only when true.
    pub allow_remote: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull when the image is not present.
    Missing,
    /// Pull before the first sandbox after start.
    Always,
    /// Never pull: a missing image is an error.
    Never,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// Daemon address (`unix:///var/run/docker.sock`, `tcp://…`); empty: `DOCKER_HOST` or the
    /// local socket.
    pub host: String,
    pub image: String,
    pub pull: PullPolicy,
    /// Numeric `uid:gid` the sandbox runs as (never uid 0).
    pub user: UserIds,
    pub memory: ByteSize,
    pub cpus: f64,
    pub pids_limit: i64,
    pub tmp_size: ByteSize,
    pub home_size: ByteSize,
    pub workspace_size: ByteSize,
    /// When set, each user's workspace is the named volume `<prefix><user>` instead of tmpfs.
    pub workspace_volume_prefix: String,
    /// `none`, or the name of a Docker network the sandboxes join.
    pub network: String,
    /// An OCI runtime such as `runsc` (gVisor); empty: the daemon's default.
    pub runtime: String,
    /// Extra labels on every container kterm makes.
    pub labels: BTreeMap<String, String>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            host: String::new(),
            image: DEFAULT_SANDBOX_IMAGE.into(),
            pull: PullPolicy::Missing,
            user: UserIds { uid: 1000, gid: 1000 },
            memory: ByteSize(1 << 30),
            cpus: 1.0,
            pids_limit: 256,
            tmp_size: ByteSize(64 << 20),
            home_size: ByteSize(64 << 20),
            workspace_size: ByteSize(1 << 30),
            workspace_volume_prefix: String::new(),
            network: "none".into(),
            runtime: String::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// The image `kterm image build` makes.
pub const DEFAULT_SANDBOX_IMAGE: &str = "kterm-sandbox:latest";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Warm sandboxes kept per (namespace, profile), unless the profile or namespace says else.
    pub min: u32,
    pub max: u32,
    /// Claims within this window raise the target above `min` (one per claim, up to `max`);
    /// with none in it the target falls back to `min`.
    pub window: HumanDuration,
    /// How often warm sandboxes and their stubs are checked (and dead ones replaced).
    pub health_interval: HumanDuration,
    /// Namespaces that get warm sandboxes besides the backend's default one, each with its
    /// size for every profile there: `{ ml = { min = 1, max = 4 } }`.
    pub namespaces: BTreeMap<String, PoolSize>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            min: 2,
            max: 10,
            window: HumanDuration::secs(120),
            health_interval: HumanDuration::secs(10),
            namespaces: BTreeMap::new(),
        }
    }
}

/// The files API (browse, read and write a session's workspace).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Larger files are refused (413) by `GET …/files/content`; use the archive to fetch them.
    pub max_read: ByteSize,
    /// Larger bodies are refused (413) by `PUT …/files/content`.
    pub max_write: ByteSize,
    /// Memory that uploads and directory listings in progress may hold together; beyond it,
    /// 503 with Retry-After.
    pub memory: ByteSize,
    /// Time limit of one file operation in the sandbox (downloads run as long as they stream).
    pub timeout: HumanDuration,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            max_read: ByteSize(10 << 20),
            max_write: ByteSize(10 << 20),
            memory: ByteSize(64 << 20),
            timeout: HumanDuration::secs(30),
        }
    }
}

/// The API for agents and scripts: `POST …/exec`, `…/input`, `GET …/screen`, `POST …/wait`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    /// Output kept per stream (stdout, stderr) in an exec's JSON answer; the rest is dropped
    /// and the answer says `truncated`.
    pub max_output: ByteSize,
    /// Time limit of an exec that names none.
    pub timeout: HumanDuration,
    /// The largest time limit an exec or a wait may ask for.
    pub max_timeout: HumanDuration,
    /// Execs and waits in progress at once per sandbox; beyond, 429.
    pub max_concurrent: u32,
    /// Calls of the agent API (exec, input, screen, wait) per user per minute; beyond, 429.
    pub per_minute: u32,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            max_output: ByteSize(1 << 20),
            timeout: HumanDuration::secs(30),
            max_timeout: HumanDuration::secs(3600),
            max_concurrent: 8,
            per_minute: 1200,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::UserIds;

    #[test]
    fn user_ids_are_numeric_and_never_root() {
        assert_eq!(UserIds::parse("1000:1000"), Ok(UserIds { uid: 1000, gid: 1000 }));
        assert_eq!(UserIds::parse("01000:0").map(|u| u.to_string()), Ok("1000:0".into()));
        for root in ["0:0", "00:0", "000:1000", "0:1000"] {
            let err = UserIds::parse(root).unwrap_err();
            assert!(err.contains("root"), "{root}: {err}");
        }
        for bad in [
            "root:root",
            "1000",
            "1000:",
            ":1000",
            "+1000:1000",
            "-1:1000",
            "1000:1000:1",
            " 1000:1000",
            "4294967296:1",
            "1e3:1",
        ] {
            assert!(UserIds::parse(bad).is_err(), "{bad}");
        }
    }
}
