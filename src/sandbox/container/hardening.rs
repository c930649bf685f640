//! The vocabulary of a locked-down sandbox, shared by the engines that translate it: the
//! non-root user it runs as and the limits it gets. Docker turns it into a container's
//! `User`, tmpfs ownership and `HostConfig` limits; Kubernetes into a pod's security context
//! and resources.

use crate::sandbox::Profile;

/// The numeric user and group a sandbox runs as; never root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxUser {
    pub uid: u32,
    pub gid: u32,
}

impl SandboxUser {
    /// Parses `uid:gid` as numbers (so `00:0` is root too) and refuses uid 0.
    pub fn parse(text: &str) -> Result<SandboxUser, String> {
        let number = |part: &str| {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u32>().ok())
                .flatten()
        };
        let parsed = text.split_once(':').and_then(|(uid, gid)| Some((number(uid)?, number(gid)?)));
        match parsed {
            Some((0, _)) => Err(format!("{text:?} is root (uid 0); sandboxes never run as root")),
            Some((uid, gid)) => Ok(SandboxUser { uid, gid }),
            None => Err(format!("{text:?} must be a numeric uid:gid such as \"1000:1000\"")),
        }
    }

    /// As `uid:gid`, the way engines take it.
    pub fn spec(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }
}

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
    fn root_is_refused_however_it_is_written() {
        assert_eq!(SandboxUser::parse("1000:1000"), Ok(SandboxUser { uid: 1000, gid: 1000 }));
        for root in ["0:0", "00:0", "000:1000"] {
            assert!(SandboxUser::parse(root).unwrap_err().contains("root"), "{root}");
        }
        for bad in ["root:root", "1000", "-1:5", "1000:", ":1000", "99999999999:1", "+1:1"] {
            assert!(SandboxUser::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_profile_overrides_only_what_it_sets() {
        let defaults = Limits { memory: 1 << 30, cpus: 1.0, pids: 256 };
        let profile = Profile { cpus: Some(2.5), ..Profile::default() };
        let limits = Limits::for_profile(defaults, &profile);
        assert_eq!(limits, Limits { cpus: 2.5, ..defaults });
    }
}
