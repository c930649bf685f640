//! `[[profiles]]`: the kinds of sandbox users may choose (a "data" and an "ops" terminal image
//! side by side), each with its image, resources, environment, init snippet, who may use it and
//! its warm pool size. With none listed there is one, `default`, made from the backend's keys;
//! a listed profile only states what differs from those keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{is_dns_label, ByteSize, ConfigError};

/// The name of the profile a session that names none gets (unless the user may not use it).
pub const DEFAULT_PROFILE: &str = "default";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// A DNS label, unique; `default` replaces the implicit default profile.
    pub name: String,
    /// One line shown in the UI's menu of profiles.
    pub description: String,
    /// The sandbox image; empty: the backend's (`docker.image`, `kubernetes.image`).
    pub image: String,
    /// Memory limit; unset: the backend's.
    pub memory: Option<ByteSize>,
    /// CPU limit; unset: the backend's.
    pub cpus: Option<f64>,
    /// Process limit; unset: the backend's.
    pub pids_limit: Option<i64>,
    /// Variables set in its sessions, over `sessions.env`.
    pub env: BTreeMap<String, String>,
    /// Replaces `sessions.init` for its sessions when set.
    pub init: Option<String>,
    /// Who may use it: these users, and members of `groups`; both empty (or `"*"` among the
    /// users): everyone.
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// Its warm pool size per namespace; unset: `pool.min` / `pool.max`.
    pub pool: Option<PoolSize>,
}

/// A warm pool's bounds for one (namespace, profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSize {
    pub min: u32,
    pub max: u32,
}

impl PoolSize {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.min > self.max {
            return Err(ConfigError::key(key, "min must not be larger than max"));
        }
        Ok(())
    }
}

/// Checks the listed profiles: names, limits, environment, pool sizes.
pub fn validate(profiles: &[ProfileConfig]) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for profile in profiles {
        let name = &profile.name;
        if !is_dns_label(name) {
            return Err(ConfigError::key(
                "profiles.name",
                format!("{name:?} must be a DNS label (lowercase letters, digits, '-')"),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(ConfigError::key("profiles.name", format!("{name:?} is listed twice")));
        }
        let key = |field: &str| format!("profiles.{name}.{field}");
        if profile.memory.is_some_and(|m| m.0 < 16 << 20) {
            return Err(ConfigError::key(&key("memory"), "must be at least 16m"));
        }
        if profile.cpus.is_some_and(|c| !(c > 0.0 && c <= 1024.0)) {
            return Err(ConfigError::key(&key("cpus"), "must be a number of CPUs above 0"));
        }
        if profile.pids_limit.is_some_and(|p| p < 8) {
            return Err(ConfigError::key(&key("pids_limit"), "must be at least 8"));
        }
        if profile.image.trim() != profile.image {
            return Err(ConfigError::key(&key("image"), "must not start or end with spaces"));
        }
        for env in profile.env.keys() {
            if !super::is_env_name(env) {
                return Err(ConfigError::key(
                    &key("env"),
                    format!("{env:?} is not a valid environment variable name"),
                ));
            }
        }
        if let Some(pool) = &profile.pool {
            pool.validate(&key("pool"))?;
        }
    }
    Ok(())
}
