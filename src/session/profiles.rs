//! The profiles sessions are made with (`[[profiles]]`, or the one `default` made from the
//! backend's keys): for each, the sandbox it asks for ([`Profile`]: image, resources), what its
//! sessions get (environment, init snippet), and who may use it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::Caller;
use crate::config::{Config, PoolSize, ProfileConfig, DEFAULT_PROFILE};
use crate::error::{Error, Result};
use crate::sandbox::Profile;

/// One profile as sessions use it.
#[derive(Debug, Clone)]
pub struct SessionProfile {
    pub sandbox: Arc<Profile>,
    pub description: String,
    /// `sessions.env` with the profile's variables over it.
    pub env: BTreeMap<String, String>,
    /// The profile's init snippet, else `sessions.init`.
    pub init: String,
    users: Vec<String>,
    groups: Vec<String>,
    /// Its own warm pool size, if it sets one.
    pub pool: Option<PoolSize>,
}

impl SessionProfile {
    pub fn name(&self) -> &str {
        &self.sandbox.name
    }

    /// Whether `caller` may make sessions with it: everyone when it names nobody.
    pub fn allows(&self, caller: &Caller) -> bool {
        (self.users.is_empty() && self.groups.is_empty())
            || self.users.iter().any(|u| u == "*" || *u == caller.user)
            || self.groups.iter().any(|g| caller.groups.contains(g))
    }
}

/// What `GET /api/v1/profiles` lists.
#[derive(Debug, Serialize)]
pub struct ProfileSummary {
    pub name: String,
    pub description: String,
}

/// Every profile, in the configured order (`default` first unless configured otherwise).
#[derive(Debug, Clone)]
pub struct Profiles {
    list: Vec<SessionProfile>,
}

impl Profiles {
    pub fn from_config(config: &Config) -> Profiles {
        let list = config.effective_profiles().into_iter().map(|p| resolve(config, p)).collect();
        Profiles { list }
    }

    pub fn all(&self) -> &[SessionProfile] {
        &self.list
    }

    /// The profiles `caller` may use.
    pub fn usable_by(&self, caller: &Caller) -> Vec<ProfileSummary> {
        self.list
            .iter()
            .filter(|p| p.allows(caller))
            .map(|p| ProfileSummary { name: p.name().into(), description: p.description.clone() })
            .collect()
    }

    /// The profile a session asks for (or the caller's default: `default` if they may use it,
    /// else their first): an unknown one is 400, one they may not use 403.
    pub fn choose(&self, caller: &Caller, requested: Option<&str>) -> Result<&SessionProfile> {
        let Some(name) = requested else {
            return self
                .list
                .iter()
                .filter(|p| p.allows(caller))
                .find(|p| p.name() == DEFAULT_PROFILE)
                .or_else(|| self.list.iter().find(|p| p.allows(caller)))
                .ok_or_else(|| {
                    Error::Forbidden(format!("user {} may use no profile", caller.user))
                });
        };
        let profile = self.list.iter().find(|p| p.name() == name).ok_or_else(|| {
            let names: Vec<&str> = self.list.iter().map(|p| p.name()).collect();
            Error::BadRequest(format!("there is no profile {name:?}; the profiles are {names:?}"))
        })?;
        if !profile.allows(caller) {
            return Err(Error::Forbidden(format!(
                "user {} may not use profile {name} (profiles.users, profiles.groups)",
                caller.user
            )));
        }
        Ok(profile)
    }
}

fn resolve(config: &Config, profile: ProfileConfig) -> SessionProfile {
    let mut env = config.sessions.env.clone();
    env.extend(profile.env);
    SessionProfile {
        sandbox: Arc::new(Profile {
            name: profile.name,
            image: Some(profile.image).filter(|i| !i.is_empty()),
            memory: profile.memory,
            cpus: profile.cpus,
            pids_limit: profile.pids_limit,
        }),
        description: profile.description,
        env,
        init: profile.init.unwrap_or_else(|| config.sessions.init.clone()),
        users: profile.users,
        groups: profile.groups,
        pool: profile.pool,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(user: &str, groups: &[&str]) -> Caller {
        Caller {
            user: user.into(),
            admin: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            namespaces: vec!["*".into()],
            login: None,
        }
    }

    fn config() -> Config {
        let mut config = Config::default();
        config.sessions.env.insert("A".into(), "base".into());
        config.sessions.init = "echo base".into();
        config.profiles = vec![
            ProfileConfig {
                name: "data".into(),
                image: "data:1".into(),
                env: BTreeMap::from([("A".into(), "data".into())]),
                groups: vec!["analysts".into()],
                ..ProfileConfig::default()
            },
            ProfileConfig { name: "ops".into(), users: vec!["bob".into()], ..Default::default() },
        ];
        config
    }

    #[test]
    fn the_default_comes_first_and_profiles_add_to_the_session_keys() {
        let profiles = Profiles::from_config(&config());
        let names: Vec<&str> = profiles.all().iter().map(|p| p.name()).collect();
        assert_eq!(names, ["default", "data", "ops"]);
        let data = &profiles.all()[1];
        assert_eq!(data.env["A"], "data");
        assert_eq!(data.init, "echo base");
        assert_eq!(data.sandbox.image.as_deref(), Some("data:1"));
        assert_eq!(profiles.all()[0].sandbox.image, None);
    }

    #[test]
    fn users_and_groups_decide_who_may_use_a_profile() {
        let profiles = Profiles::from_config(&config());
        let alice = caller("alice", &["analysts"]);
        let bob = caller("bob", &[]);
        let names = |c: &Caller| -> Vec<String> {
            profiles.usable_by(c).into_iter().map(|p| p.name).collect()
        };
        assert_eq!(names(&alice), ["default", "data"]);
        assert_eq!(names(&bob), ["default", "ops"]);
        assert_eq!(profiles.choose(&alice, None).unwrap().name(), "default");
        assert!(matches!(profiles.choose(&bob, Some("data")), Err(Error::Forbidden(_))));
        assert!(matches!(profiles.choose(&bob, Some("nope")), Err(Error::BadRequest(_))));
    }
}
