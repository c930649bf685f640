//! The sandbox backends' sections of the configuration: `[local]`, `[docker]`, `[pool]`,
//! `[kubernetes]` and `[files]`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ByteSize, HumanDuration, PoolSize};

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
    /// `uid:gid` the sandbox runs as (never root).
    pub user: String,
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
            user: "1000:1000".into(),
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    pub kubeconfig: String,
    pub context: String,
    pub namespace: String,
    pub namespaces: Vec<String>,
    pub image: String,
    pub image_pull_policy: String,
    pub authorize_with_sar: bool,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            kubeconfig: String::new(),
            context: String::new(),
            namespace: "kterm".into(),
            namespaces: Vec::new(),
            image: String::new(),
            image_pull_policy: "IfNotPresent".into(),
            authorize_with_sar: false,
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
    /// Time limit of one file operation in the sandbox (downloads run as long as they stream).
    pub timeout: HumanDuration,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            max_read: ByteSize(10 << 20),
            max_write: ByteSize(10 << 20),
            timeout: HumanDuration::secs(30),
        }
    }
}
