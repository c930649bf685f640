//! The vocabulary of a locked-down sandbox, shared by the engines that translate it: the
//! limits it gets (its non-root user is the config's [`crate::config::UserIds`]). Docker turns
//! them into a container's `HostConfig` limits; Kubernetes into a pod's resources.

use crate::sandbox::Profile;

/// The limits of one sandbox: a profile's own where it sets them, else the backend's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Bytes of memory (swap included).
    pub memory: u64,
    /// CPUs (may be fractional).
    pub cpus: f64,
    /// Processes and threads.
    pub pids: i64,
}

impl Limits {
    /// `profile`'s limits over the backend's `defaults`.
    pub fn for_profile(defaults: Limits, profile: &Profile) -> Limits {
        Limits {
            memory: profile.memory.map_or(defaults.memory, |m| m.0),
            cpus: profile.cpus.unwrap_or(defaults.cpus),
            pids: profile.pids_limit.unwrap_or(defaults.pids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_overrides_only_what_it_sets() {
        let defaults = Limits { memory: 1 << 30, cpus: 1.0, pids: 256 };
        let profile = Profile { cpus: Some(2.5), ..Profile::default() };
        let limits = Limits::for_profile(defaults, &profile);
        assert_eq!(limits, Limits { cpus: 2.5, ..defaults });
    }
}
